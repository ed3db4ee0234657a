"""The search space: sampling a trial's parameters through Optuna, and enumerating a grid.

Parameters are suggested in dependency order so that a ``when:`` condition can look at the
values already chosen; an inactive parameter is never suggested, so it is absent from the
trial (and from the results table) rather than set to a dummy value.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from hptune.spec import CategoricalParam, FloatParam, IntParam

Param = FloatParam | IntParam | CategoricalParam
Space = dict[str, Param]

#: Most combinations we enumerate for a grid (guards against an accidental huge grid).
MAX_GRID_POINTS = 100_000


def dependency_order(space: Space) -> list[str]:
    """Names ordered so every ``when:`` parent comes before its child; ties keep file order.

    Raises ValueError naming the cycle if the conditions form one.
    """
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = trail[trail.index(name):] + [name]
            raise ValueError(" -> ".join(cycle))
        state[name] = "visiting"
        for parent in (space[name].when or {}):
            if parent in space:
                visit(parent, [*trail, name])
        state[name] = "done"
        order.append(name)

    for name in space:
        visit(name, [])
    return order


def is_active(param: Param, chosen: dict[str, Any]) -> bool:
    """True when every ``when:`` parent was chosen with one of the listed values."""
    for parent, allowed in (param.when or {}).items():
        if parent not in chosen or chosen[parent] not in allowed:
            return False
    return True


def _needs_encoding(choices: list[Any]) -> bool:
    # Optuna stores only None/bool/int/float/str choices; lists (e.g. hidden_layer_sizes)
    # travel through the study as their JSON text and are decoded for the estimator.
    return any(isinstance(c, (list, dict)) for c in choices)


def suggest(trial: Any, space: Space, grid: bool = False) -> dict[str, Any]:
    """Sample (or, for enqueued grid trials, read back) the active parameters of one trial."""
    chosen: dict[str, Any] = {}
    for name in dependency_order(space):
        param = space[name]
        if not is_active(param, chosen):
            continue
        if grid:
            chosen[name] = _suggest_categorical(trial, name, grid_values(param))
        elif isinstance(param, CategoricalParam):
            chosen[name] = _suggest_categorical(trial, name, param.choices)
        elif isinstance(param, FloatParam):
            chosen[name] = trial.suggest_float(name, param.low, param.high, log=param.log, step=param.step)
        else:
            chosen[name] = trial.suggest_int(name, param.low, param.high, log=param.log, step=param.step or 1)
    return {name: chosen[name] for name in space if name in chosen}


def _suggest_categorical(trial: Any, name: str, choices: list[Any]) -> Any:
    if not _needs_encoding(choices):
        return trial.suggest_categorical(name, choices)
    return json.loads(trial.suggest_categorical(name, [json.dumps(c) for c in choices]))


def decode_params(space: Space, stored: dict[str, Any]) -> dict[str, Any]:
    """Turn the values Optuna stored for a trial back into the estimator's values."""
    decoded = {}
    for name, value in stored.items():
        param = space.get(name)
        if isinstance(param, CategoricalParam) and _needs_encoding(param.choices) and isinstance(value, str):
            value = json.loads(value)
        decoded[name] = value
    return decoded


def encode_params(space: Space, params: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`decode_params`, for enqueuing grid points."""
    return {
        name: json.dumps(value)
        if isinstance(space[name], CategoricalParam) and _needs_encoding(space[name].choices)  # type: ignore[union-attr]
        else value
        for name, value in params.items()
    }


def grid_values(param: Param) -> list[Any]:
    """The finite list of values a parameter takes in grid search.

    Raises ValueError when the parameter has no finite set (a float range with no step).
    """
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    if param.grid is not None:
        return list(param.grid)
    if isinstance(param, IntParam):
        return list(range(param.low, param.high + 1, param.step or 1))
    if param.step is None:
        raise ValueError("a float range is not finite: give `step` or `grid: [values]` for grid search")
    count = math.floor((param.high - param.low) / param.step + 1e-9) + 1
    # Rounding away representation noise (0.1 * 3 = 0.30000000000000004) keeps values exact.
    return [round(param.low + k * param.step, 12) for k in range(count)]


def grid_points(space: Space) -> list[dict[str, Any]]:
    """Every distinct combination of the grid, in scikit-learn's ``ParameterGrid`` order.

    Names are sorted and the last varies fastest, as ``ParameterGrid`` does, so ties are
    broken the same way as GridSearchCV. A conditional parameter takes part only in the
    combinations where its ``when:`` holds; elsewhere it is absent.
    """
    absent = object()
    names = sorted(space)
    axes = [grid_values(space[name]) + [absent] for name in names]
    if math.prod(len(axis) for axis in axes) > MAX_GRID_POINTS * 10:
        raise ValueError(f"the grid has more than {MAX_GRID_POINTS} combinations")
    points: list[dict[str, Any]] = []
    for combo in itertools.product(*axes):
        point = {n: v for n, v in zip(names, combo, strict=True) if v is not absent}
        consistent = all(
            (name in point) == is_active(space[name], point) for name in names
        )
        if consistent:
            points.append(point)
            if len(points) > MAX_GRID_POINTS:
                raise ValueError(f"the grid has more than {MAX_GRID_POINTS} combinations")
    return points


def _value_count(param: Param) -> int | None:
    """How many values a parameter takes in grid search (None: not finite), without listing them."""
    if isinstance(param, CategoricalParam):
        return len(param.choices)
    if param.grid is not None:
        return len(param.grid)
    if isinstance(param, IntParam):
        return (param.high - param.low) // (param.step or 1) + 1
    if param.step is None:
        return None
    return math.floor((param.high - param.low) / param.step + 1e-9) + 1


def auto_strategy(space: Space, n_trials: int) -> tuple[str, str]:
    """``strategy.kind: auto``: grid when the space is finite and has at most ``n_trials``
    points, else bayesian; with the reason, for the summary and run.json."""
    counts = [_value_count(param) for param in space.values()]
    if any(count is None for count in counts):
        infinite = next(name for name, count in zip(space, counts, strict=True) if count is None)
        return "bayesian", f"the space is not finite ({infinite} is a float range without step or grid)"
    # Each conditional parameter may also be absent: this bounds the grid from above.
    bound = math.prod(count + (1 if param.when else 0) for count, param in zip(counts, space.values(), strict=True))
    if bound > MAX_GRID_POINTS * 10:  # too many to list, conditions or not (an int range of a billion)
        return "bayesian", f"the space has more than {MAX_GRID_POINTS} points > n_trials {n_trials}"
    if bound > n_trials and not any(param.when for param in space.values()):
        size = bound  # without conditions the bound is the size: no need to list the points
    else:
        try:
            size = len(grid_points(space))
        except ValueError:  # more than grid_points lists
            return "bayesian", f"the space has more than {MAX_GRID_POINTS} points > n_trials {n_trials}"
    if size <= n_trials:
        return "grid", f"the space is finite, with {size} points <= n_trials {n_trials}"
    return "bayesian", f"the space has {size} points > n_trials {n_trials}"
