"""The refine stage: after the main search, narrow the space around the best and search again.

Each numeric range narrows to ``shrink`` times its width around the best trial's value (in log
space for a log range), clipped to the original bounds; int ranges stay int and a ``step`` is
kept. A categorical narrows to the choices seen in the ``top`` complete trials. The refine
trials go into the same study, marked ``hptune_stage: refine``.

Optuna refuses a categorical whose choices change within a study, so a narrowed categorical
keeps its full choices in the distribution and a thin sampler wrapper draws only the allowed
ones. Numeric ranges may narrow freely (Optuna only asks the kind and the log flag to stay).

The narrowed space is computed once, when the stage starts, and stored in the study with the
number of search trials it followed, so every worker and every resume refines the same space
with the same budget.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

from hptune.space import Space
from hptune.spec import CategoricalParam, FloatParam, IntParam

#: Study attribute: {"after": search trials that finished, "space": {name: narrowing}}.
STUDY_REFINE = "hptune_refine"


@dataclass(frozen=True)
class Stage:
    """What the objective samples from: the file's space, or the refine stage's."""

    name: str  # "search" or "refine"
    space: Space
    #: Categorical parameters narrowed to these (Optuna-stored) values.
    allowed: dict[str, list[Any]]


def narrow(space: Space, best: Any, top: list[Any], shrink: float) -> tuple[Space, dict[str, list[Any]]]:
    """The refine space around ``best`` (a complete trial), with the categorical choices of
    ``top`` (the best complete trials, best first)."""
    narrowed: dict[str, Any] = {}
    allowed: dict[str, list[Any]] = {}
    for name, param in space.items():
        if isinstance(param, CategoricalParam):
            seen = {json.dumps(t.params[name], sort_keys=True) for t in top if name in t.params}
            stored = [c for c in _stored_choices(param) if json.dumps(c, sort_keys=True) in seen]
            if stored and len(stored) < len(param.choices):
                allowed[name] = stored
            narrowed[name] = param
        elif name in best.params:
            narrowed[name] = _narrow_range(param, float(best.params[name]), shrink)
        else:
            narrowed[name] = param  # conditional and absent from the best: nothing to centre on
    return narrowed, allowed


def _stored_choices(param: CategoricalParam) -> list[Any]:
    from hptune.space import encode_params

    return [encode_params({"x": param}, {"x": c})["x"] for c in param.choices]


def _narrow_range(param: FloatParam | IntParam, centre: float, shrink: float) -> FloatParam | IntParam:
    low, high = float(param.low), float(param.high)
    if param.log:
        a, b, c = math.log(low), math.log(high), math.log(centre)
        half = (b - a) * shrink / 2
        new_low, new_high = math.exp(max(a, c - half)), math.exp(min(b, c + half))
    else:
        half = (high - low) * shrink / 2
        new_low, new_high = max(low, centre - half), min(high, centre + half)
    step = param.step if param.step is not None else (1 if isinstance(param, IntParam) else None)
    if step is not None:  # stay on the original grid of values, the centre included
        new_low = low + math.floor((new_low - low) / step + 1e-9) * step
        new_high = low + math.ceil((new_high - low) / step - 1e-9) * step
        new_low, new_high = min(new_low, centre), max(new_high, centre)
    if isinstance(param, IntParam):
        return param.model_copy(update={"low": int(round(new_low)), "high": int(round(new_high))})
    new_low, new_high = min(max(new_low, low), centre), max(min(new_high, high), centre)
    return param.model_copy(update={"low": new_low, "high": new_high})


def to_attr(after: int, space: Space, allowed: dict[str, list[Any]]) -> dict[str, Any]:
    """What the study stores: the ranges (the rest of each parameter is the file's)."""
    ranges = {
        name: {"low": p.low, "high": p.high}
        for name, p in space.items()
        if not isinstance(p, CategoricalParam)
    }
    return {"after": after, "ranges": ranges, "allowed": allowed}


def from_attr(stored: dict[str, Any], space: Space) -> tuple[int, Stage]:
    narrowed: dict[str, Any] = {}
    for name, param in space.items():
        bounds = stored["ranges"].get(name)
        narrowed[name] = param if bounds is None else param.model_copy(update=bounds)
    return int(stored["after"]), Stage("refine", narrowed, {k: list(v) for k, v in stored["allowed"].items()})


class AllowedChoices:
    """Optuna sampler wrapper: the base sampler's proposals, with narrowed categoricals drawn
    only from their allowed values (a proposal outside them is replaced by a seeded draw)."""

    def __init__(self, base: Any, allowed: dict[str, list[Any]], seed: int) -> None:
        self.base, self.allowed = base, allowed
        self._rng = random.Random(seed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        space = self.base.infer_relative_search_space(study, trial)
        return {k: v for k, v in space.items() if k not in self.allowed}

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        return self.base.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        value = self.base.sample_independent(study, trial, name, distribution)
        if name in self.allowed and value not in self.allowed[name]:
            value = self._rng.choice(self.allowed[name])
        return value

    def before_trial(self, study: Any, trial: Any) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.base.after_trial(study, trial, state, values)


def started(study: Any) -> bool:
    """Whether the study's refine stage has begun (its main search is over, for good)."""
    return STUDY_REFINE in study.user_attrs


def refine_stage(handle: Any, rules: Any) -> tuple[Stage, Any] | None:
    """The refine stage and the rules it runs under: computed from the study when the main
    search ends, stored, then read back by every process and every resume. Its budget is
    ``refine.n_trials`` past the search trials it followed; no deadline (the timeout bounds the
    main search); a target score still stops it. None when no trial completed."""
    spec, study = handle.exp.spec, handle.study
    stored = _wait_for_the_claimant(handle)
    if stored is None:
        narrowed = around_best(spec, handle.goal, handle.trials())
        if narrowed is None:
            return None
        study.set_user_attr(STUDY_REFINE, to_attr(rules.ledger(study).started(), *narrowed))
        stored = study.user_attrs[STUDY_REFINE]
    after, stage = from_attr(stored, spec.search_space)
    return stage, stage_rules(spec, rules.goal, after + spec.refine.n_trials)


def around_best(spec: Any, goal: Any, trials: list[Any]) -> tuple[Space, dict[str, list[Any]]] | None:
    """The space narrowed around the best of ``trials`` (see ``narrow``); None when none completed."""
    best = goal.best_trial(trials)
    if best is None:
        return None
    complete = sorted((t for t in trials if goal.ranked(t)), key=goal.rank_key, reverse=True)
    return narrow(spec.search_space, best, complete[: spec.refine.top], spec.refine.shrink)


def stage_rules(spec: Any, goal: Any, n_trials: int) -> Any:
    """The refine stage's rules: a budget of ``n_trials`` in all (the search's trials included);
    no deadline (the timeout bounds the main search); a target score still stops it."""
    from hptune.spec import StopSpec
    from hptune.stopping import Budget, StopRules

    return StopRules(Budget(n_trials, grid=False), spec.strategy, goal, None, StopSpec(target=spec.stop.target))


def _wait_for_the_claimant(handle: Any, patience: float = 60.0) -> dict[str, Any] | None:
    """The stored refine stage; None when this process is to compute it. Of the processes that
    reach the stage together one claims it (as the grid queue is claimed); the others wait for
    what it stores (or, if it died first, compute it themselves after ``patience`` seconds)."""
    import time

    from hptune.storage import claim
    from hptune.study import claim_prefix

    study = handle.study
    if STUDY_REFINE in study.user_attrs or claim(handle.storage, f"{claim_prefix(handle.exp.spec.name)}refine"):
        return study.user_attrs.get(STUDY_REFINE)
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        time.sleep(0.2)
        stored = study.user_attrs.get(STUDY_REFINE)
        if stored is not None:
            return stored
    return None
