"""Warm starts: the parameters of earlier best configs (``best.yaml``), run first, each once.

A team that keeps ``best.yaml`` in git starts tomorrow's search from today's best with
``strategy.start_from: [runs/old/best.yaml]`` (or ``--start-from FILE``). Each file is checked
against today's search space when the experiment is validated, with the usual file:line
errors, naming both files; the points are queued in the study when it opens, each once in the
life of the study however often it is resumed, and however many machines open it at once (a
point queued twice is the same work: one runs).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hptune.errors import SpecError, SpecIssue
from hptune.space import Space, dependency_order, encode_params, grid_values, is_active
from hptune.spec import CategoricalParam, FloatParam
from hptune.yamlio import LoadedYaml, load_yaml


@dataclass(frozen=True)
class StartPoint:
    """One earlier best config, as today's space takes it."""

    source: str  # the file, as the user named it
    params: dict[str, Any]  # only parameters of today's space that are active

    @property
    def key(self) -> str:
        """What makes two queued points the same work (``trials.ATTR_WORK``)."""
        text = json.dumps(self.params, sort_keys=True, default=str)
        return "start:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def load_start_points(
    strategy: Any, from_cli: list[str], base_dir: Path, space: Space, fixed: dict[str, Any], space_where: LoadedYaml
) -> tuple[list[StartPoint], list[SpecIssue], list[SpecIssue]]:
    """Read ``strategy.start_from`` (relative to the experiment file's folder) and the files
    given with --start-from (relative to the current folder) against today's ``space``.

    Returns the points, the errors and the warnings. ``fixed`` is today's fixed parameters
    (model.params and the seeded random_state): a best.yaml lists those too, and they are not
    tuned; one that differs from today's runs with today's value, with a warning.
    """
    points: list[StartPoint] = []
    errors: list[SpecIssue] = []
    warnings: list[SpecIssue] = []
    files = [(name, base_dir / name) for name in strategy.start_from]
    files += [(name, Path(name)) for name in from_cli]  # the CLI checked that they exist
    if files and strategy.kind == "grid":
        message = "a grid runs every point already: start_from is for the other kinds"
        return [], [space_where.issue(("strategy", "start_from"), message)], []
    for index, (name, path) in enumerate(files):
        if not path.is_file():
            where = ("strategy", "start_from", index)
            errors.append(space_where.issue(where, f"no such file: {name} (a best.yaml, relative to this file's folder)"))
            continue
        point = load_point(name, path, space, fixed, space_where, errors, warnings)
        if point is not None:
            points.append(point)
    return points, errors, warnings


def load_point(
    name: str, path: Path, space: Space, fixed: dict[str, Any], space_where: LoadedYaml,
    errors: list[SpecIssue], warnings: list[SpecIssue], defaults: dict[str, Any] | None = None, grid: bool = False,
) -> StartPoint | None:
    """One best.yaml at ``path`` as today's space takes it (None when it cannot be taken: the
    reasons are added to ``errors``, each at its line in that file).

    A parameter of today's space the file does not set is left to the sampler (a warm start
    is a hint); with ``defaults`` (the estimator's, for a --baseline, which must run as the
    config ran) it takes the model's default, or is an error when today's space cannot hold it.
    With ``grid``, each value must be one of the grid's: a grid study's parameters are
    categorical over those values, and Optuna stores no other value in them."""
    try:
        loaded = load_yaml(path, display_name=name)
    except SpecError as exc:
        errors += exc.issues
        return None
    params = loaded.data.get("params") if isinstance(loaded.data, dict) else None
    if not isinstance(params, dict):
        errors.append(loaded.issue(("params",), "expected a best.yaml with a `params:` mapping"))
        return None
    chosen: dict[str, Any] = {}
    before = len(errors)
    for key, value in params.items():
        where = ("params", key)
        if key in space:
            problem = _outside(space[key], value, grid)
            if problem is None:
                chosen[key] = value
            else:
                errors.append(loaded.issue(where, f"{problem} of today's {_at(space_where, key)}"))
        elif key in fixed:
            if fixed[key] != value:
                warnings.append(loaded.issue(
                    where, f"{value!r} is fixed to {fixed[key]!r} today (not tuned): the point runs with {fixed[key]!r}"
                ))
        else:
            errors.append(loaded.issue(
                where, f"{key!r} is not in today's search_space ({space_where.file}) nor a fixed parameter"
            ))
    if len(errors) > before:
        return None
    active: dict[str, Any] = {}
    for key in dependency_order(space):  # a parameter whose condition does not hold is dropped
        if not is_active(space[key], active):
            continue
        if key in chosen:
            active[key] = chosen[key]
        elif defaults is not None:
            default = defaults.get(key)
            problem = _outside(space[key], default, grid)
            if problem is None:
                active[key] = default
                warnings.append(loaded.issue(("params",), f"does not set {key!r}, which today's space tunes: it runs "
                                                          f"with the model's default {default!r}, as the config did"))
            else:
                errors.append(loaded.issue(("params",), f"does not set {key!r}, which today's {_at(space_where, key)} "
                                                        f"tunes, and the model's default cannot run there ({problem}): "
                                                        f"add {key} to {name}"))
    if len(errors) > before:
        return None
    return StartPoint(name, {key: active[key] for key in space if key in active})


def _at(space_where: LoadedYaml, name: str) -> str:
    _, (line, column) = space_where.locate(("search_space", name))
    return f"search_space.{name} ({space_where.file}:{line}:{column})"


def _outside(param: Any, value: Any, grid: bool = False) -> str | None:
    """Why ``value`` is not a value today's ``param`` can take (in a grid: one of its points'), or None."""
    if grid and not isinstance(param, CategoricalParam):
        values = grid_values(param)
        return None if value in values else f"{value!r} is not one of the grid's values {values!r}"
    if isinstance(param, CategoricalParam):
        return None if value in param.choices else f"{value!r} is not one of the choices {param.choices!r}"
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or (isinstance(value, float) and not math.isfinite(value)):
        return f"expected a number, found {value!r}"
    if not isinstance(param, FloatParam) and value != int(value):
        return f"expected a whole number, found {value!r}"
    if not param.low <= value <= param.high:
        return f"{value!r} is outside the range {param.low:g} .. {param.high:g}"
    return None


def queue_start_points(study: Any, space: Space, points: list[StartPoint]) -> int:
    """Queue each point the study has never queued; returns how many were queued now."""
    from hptune.trials import ATTR_START, ATTR_WORK

    queued = {t.user_attrs.get(ATTR_START) for t in study.get_trials(deepcopy=False)}
    added = 0
    for point in points:
        if point.key in queued:
            continue
        study.enqueue_trial(
            encode_params(space, point.params), user_attrs={ATTR_START: point.key, ATTR_WORK: point.key}
        )
        queued.add(point.key)
        added += 1
    return added
