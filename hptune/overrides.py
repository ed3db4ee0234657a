"""Settings given on the command line, which take precedence over the experiment file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hptune.spec import Experiment


@dataclass
class Overrides:
    """Command-line settings that take precedence over the file (already type-checked)."""

    n_trials: int | None = None
    timeout: float | None = None
    n_jobs: int | None = None
    seed: int | None = None
    out: str | None = None
    storage: str | None = None
    #: --start-from files, relative to the current directory; added to strategy.start_from.
    start_from: list[str] = field(default_factory=list)
    #: --fail-under: the least CV score the best may have (gate.min_cv_score).
    fail_under: float | None = None
    #: --set dotted.key=value, as given: put into the file's data before it is validated.
    sets: list[str] = field(default_factory=list)
    #: --baseline: a best.yaml (relative to the current directory) run first and compared with
    #: (hptune.baseline); --require-improvement: the best must beat it beyond one standard error.
    baseline: str | None = None
    require_improvement: bool = False


def apply_overrides(spec: Experiment, o: Overrides) -> Experiment:
    """``spec`` with the settings ``o`` gives in place of the file's."""
    strategy = spec.strategy.model_copy(
        update={k: v for k, v in (("n_trials", o.n_trials), ("timeout", o.timeout), ("n_jobs", o.n_jobs)) if v is not None}
    )
    update: dict[str, Any] = {"strategy": strategy}
    if o.seed is not None:
        update["seed"] = o.seed
    output = {k: v for k, v in (("dir", o.out), ("storage", o.storage)) if v is not None}
    if output:
        update["output"] = spec.output.model_copy(update=output)
    if o.fail_under is not None:
        from hptune.spec import GateSpec

        gate = spec.gate.model_dump() if spec.gate is not None else {}
        update["gate"] = GateSpec(**{**gate, "min_cv_score": o.fail_under})
    return spec.model_copy(update=update)
