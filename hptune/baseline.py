"""Baselines: ``run --baseline best.yaml`` scores a committed config on today's data and folds,
as a trial of the same study, and says whether the new best beats it beyond the noise of the folds.

- The baseline's trial runs first, in the process that writes the outputs, before any worker
  starts, and even when a resumed study has spent its budget. It is made directly (never
  queued: Optuna's queue would run whatever waits ahead of it, and any worker could pop it).
- It is outside the search: it costs none of the budget (the search runs its ``n_trials`` with
  or without a baseline), and the stop rules and failure limits do not see it (a committed
  config that reaches ``stop.target`` must not end the search before it starts; one that fails
  today is not one of the search's failures). It is never pruned (a pruned yardstick measures
  nothing). It can be the best: then nothing better was found.
- It runs once in the life of the study per set of parameters: a resumed run finds it. One cut
  short (Ctrl-C, a dead process) is not queued again; the next ``run --baseline`` runs it. One
  that failed runs again with --retry-failed.
- A parameter of today's space the best.yaml does not set runs with the model's default, as the
  committed config did (``warmstart.load_point``), never with a value the sampler picks.
- The improvement is the new best's mean CV score minus the baseline's, "greater is better"
  (a loss that went down is a positive improvement). Both trials scored on the same folds, so
  the difference is paired fold by fold, and its standard error is the one ``hptune compare``
  uses (Nadeau and Bengio's corrected variance, with the folds' own test/train size ratio).
- ``--require-improvement`` passes when that improvement is larger than one standard error
  (the issue's bar: a scheduled job proposes a change for a person to review, so a bar lower
  than compare's "two standard errors, beyond the noise" is the right trade). A baseline that
  fails on today's data is beaten by any best that works.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from hptune.gates import Verdict
from hptune.space import encode_params
from hptune.trials import ATTR_BASELINE, ATTR_CV, ATTR_ERROR, is_interrupted, is_skipped
from hptune.warmstart import StartPoint

REQUIRE_IMPROVEMENT = "require_improvement"  # the verdict's name (gates, run.json, exit 3)


@dataclass(frozen=True)
class Baseline:
    """The config given with --baseline, as today's space takes it."""

    point: StartPoint
    required: bool = False  # --require-improvement

    @property
    def key(self) -> str:
        """What the baseline's trial carries (``trials.ATTR_BASELINE``): one per set of parameters."""
        text = json.dumps(self.point.params, sort_keys=True, default=str)
        return "baseline:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def run(handle: Any, setup: Any, retry_failed: bool = False) -> None:
    """Run the baseline's trial in this process unless the study holds it: complete, or failed
    (then only again with --retry-failed). Ctrl-C reaches the caller as KeyboardInterrupt, the
    trial recorded as interrupted."""
    import optuna
    from optuna.trial import TrialState

    from hptune.objective import Objective
    from hptune.trials import OPTUNA_FIXED_PARAMS

    exp, study = handle.exp, handle.study
    baseline: Baseline | None = exp.baseline
    if baseline is None:
        return
    ran = [t for t in trials_of(study.get_trials(deepcopy=False), baseline.key) if t.state.is_finished()]
    if any(t.state == TrialState.COMPLETE for t in ran) or (ran and not retry_failed):
        return
    # A new trial with the parameters fixed, as Study.enqueue_trial would fix them, but made
    # running at once, so no other process can take it and nothing queued runs before it.
    storage = study._storage
    trial_id = storage.create_new_trial(study._study_id)
    storage.set_trial_system_attr(trial_id, OPTUNA_FIXED_PARAMS, encode_params(exp.spec.search_space, baseline.point.params))
    storage.set_trial_user_attr(trial_id, ATTR_BASELINE, baseline.key)
    trial = optuna.Trial(study, trial_id)
    objective = Objective(setup.ctx, exp.spec.search_space, handle.goal, grid=exp.grid is not None, rules=None, report_folds=False,
                          tell_constraints=exp.spec.strategy.kind != "cmaes")
    try:
        value = objective(trial)
    except KeyboardInterrupt:
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception:  # noqa: BLE001 - recorded on the trial (ATTR_ERROR), reported by compare
        study.tell(trial, state=TrialState.FAIL)
        return
    study.tell(trial, value)


def trials_of(trials: list[Any], key: str) -> list[Any]:
    """The baseline's trials that count: not skipped, not cut short."""
    return [t for t in trials if t.user_attrs.get(ATTR_BASELINE) == key and not is_skipped(t) and not is_interrupted(t)]


@dataclass
class Comparison:
    """The baseline against the new best, as run.json, the summary and the CI page show it."""

    source: str  # the best.yaml, as the user named it
    params: dict[str, Any]  # the baseline's parameters (today's active ones)
    trial: int | None = None  # None: its trial has not run (interrupted, out of time)
    state: str = "not run"  # complete | failed | pruned | running | not run
    error: str | None = None  # why it failed
    cv_score: float | None = None
    best_trial: int | None = None
    best_cv_score: float | None = None
    improvement: float | None = None  # best minus baseline, greater is better
    standard_error: float | None = None  # of the paired fold differences (corrected)
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)  # (parameter, baseline's, best's)
    required: bool = False

    @property
    def beyond_noise(self) -> bool | None:
        """The improvement is larger than one standard error (None: nothing to compare)."""
        if self.improvement is None or self.standard_error is None:
            return None
        return self.improvement > self.standard_error

    def verdict(self) -> Verdict | None:
        """--require-improvement's verdict (None when it was not asked for)."""
        if not self.required:
            return None
        if self.best_trial is None:
            return Verdict(REQUIRE_IMPROVEMENT, 0.0, None, False, "no best trial to compare with the baseline")
        if self.state == "failed":
            return Verdict(REQUIRE_IMPROVEMENT, 0.0, None, True, "the baseline failed on today's data; the best works")
        if self.improvement is None:
            return Verdict(REQUIRE_IMPROVEMENT, 0.0, None, False, f"the baseline did not run ({self.state})")
        se = self.standard_error or 0.0
        passed = bool(self.beyond_noise)
        return Verdict(REQUIRE_IMPROVEMENT, se, self.improvement, passed,
                       f"improvement {self.improvement:+.4f} {'>' if passed else '<='} one standard error {se:.4f}")

    def describe(self) -> str:
        """One line: what the baseline scored and by how much the best beats it."""
        if self.best_trial is None:
            return f"the baseline {self.source} ({self.state}) against no best trial"
        if self.state == "failed":
            return f"the baseline {self.source} failed on today's data: {self.error}"
        if self.cv_score is None or self.improvement is None:
            return f"the baseline {self.source} did not run ({self.state}): no improvement can be measured"
        if self.trial == self.best_trial:
            return f"the baseline {self.source} (trial {self.trial}, cv {self.cv_score:.4f}) is still the best"
        se = "?" if self.standard_error is None else f"{self.standard_error:.4f}"
        bar = {True: "more than", False: "not more than", None: "against"}[self.beyond_noise]
        return (f"the best (trial {self.best_trial}) beats the baseline {self.source} (trial {self.trial}, cv "
                f"{self.cv_score:.4f}) by {self.improvement:+.4f}, {bar} one standard error ({se})")

    def record(self) -> dict[str, Any]:
        """run.json's ``baseline``."""
        return {
            "file": self.source,
            "trial": self.trial,
            "state": self.state,
            "error": self.error,
            "cv_score": self.cv_score,
            "best_trial": self.best_trial,
            "best_cv_score": self.best_cv_score,
            "improvement": self.improvement,
            "standard_error": self.standard_error,
            "beyond_one_standard_error": self.beyond_noise,
            "required": self.required,
            "params": self.params,
            "changes": [{"param": name, "baseline": old, "best": new} for name, old, new in self.changes],
        }


def compare(
    baseline: Baseline, trials: list[Any], best: Any, best_params: dict[str, Any], metric: str, test_train_ratio: float
) -> Comparison:
    """The baseline's trial in ``trials`` against ``best`` (None: no best), on ``metric``;
    ``test_train_ratio``: the folds' mean test rows over train rows (``folds.test_train_ratio``)."""
    from optuna.trial import TrialState

    result = Comparison(baseline.point.source, dict(baseline.point.params), required=baseline.required)
    mine = trials_of(trials, baseline.key)
    ran = [t for t in mine if t.state.is_finished()]
    # The complete one if any (a failure run again by --retry-failed may have completed since).
    chosen = next((t for t in ran if t.state == TrialState.COMPLETE), ran[-1] if ran else None)
    if chosen is None and any(t.state == TrialState.RUNNING for t in mine):
        result.state = "running"
    if chosen is not None:
        result.trial, result.state = chosen.number, chosen.state.name.lower().replace("fail", "failed")
        result.error = chosen.user_attrs.get(ATTR_ERROR)
    if best is None:
        return result
    result.best_trial = best.number
    best_folds = best.user_attrs[ATTR_CV]["test"][metric]
    result.best_cv_score = _mean(best_folds)
    names = sorted(set(result.params) | set(best_params))
    result.changes = [(n, result.params.get(n), best_params.get(n)) for n in names
                      if result.params.get(n) != best_params.get(n)]
    if chosen is None or chosen.state != TrialState.COMPLETE:
        return result
    base_folds = chosen.user_attrs[ATTR_CV]["test"][metric]
    result.cv_score = _mean(base_folds)
    result.improvement = result.best_cv_score - result.cv_score
    differences = [b - a for a, b in zip(base_folds, best_folds, strict=True)]
    if len(differences) > 1:
        from hptune.compare import corrected_variance

        result.standard_error = math.sqrt(corrected_variance(differences, test_train_ratio))
    return result


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))
