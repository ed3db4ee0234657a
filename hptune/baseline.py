"""Baselines: ``run --baseline best.yaml`` scores a committed config on today's data and folds,
as a trial of the same study, and says whether the new best beats it beyond the noise of the folds.

- The baseline's trial runs first, in the process that writes the outputs, before any worker
  starts, and even when a resumed study has spent its budget: it is what the search is judged
  against. It costs none of the budget (the search runs its ``n_trials`` with or without a
  baseline), is never pruned (a pruned yardstick measures nothing), and runs once in the life of
  the study per set of parameters: a resumed run finds it and does not run it again. It can be
  the best: then nothing better was found.
- The improvement is the new best's mean CV score minus the baseline's, "greater is better"
  (a loss that went down is a positive improvement). Both trials scored on the same folds, so
  the difference is paired fold by fold, and its standard error is the one ``hptune compare``
  uses (Nadeau and Bengio's corrected variance: folds share training rows).
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
from hptune.space import Space, encode_params
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


def queue(study: Any, space: Space, baseline: Baseline) -> bool:
    """Queue the baseline's trial unless the study holds it already (queued, running, or run
    to an end); True when it was queued now. A trial cut short was queued again as it was
    (``trials.requeue`` keeps the attribute), so it is found too."""
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(ATTR_BASELINE) == baseline.key and not is_skipped(trial) and not is_interrupted(trial):
            return False
    study.enqueue_trial(encode_params(space, baseline.point.params), user_attrs={ATTR_BASELINE: baseline.key})
    return True


def waiting(study: Any, key: str) -> bool:
    from optuna.trial import TrialState

    return any(t.user_attrs.get(ATTR_BASELINE) == key for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def runs_elsewhere(trial: Any) -> bool:
    """Whether another trial does this baseline trial's work: one that ran to an end, or one
    running that started before it (two processes can pop copies queued at the same moment)."""
    from optuna.trial import TrialState

    key = trial.user_attrs.get(ATTR_BASELINE)
    for other in trial.study.get_trials(deepcopy=False):
        if other.number == trial.number or other.user_attrs.get(ATTR_BASELINE) != key:
            continue
        if is_skipped(other) or is_interrupted(other):
            continue
        if other.state.is_finished() or (other.state == TrialState.RUNNING and other.number < trial.number):
            return True
    return False


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


def compare(baseline: Baseline, trials: list[Any], best: Any, best_params: dict[str, Any], metric: str) -> Comparison:
    """The baseline's trial in ``trials`` against ``best`` (None: no best), on ``metric``."""
    from optuna.trial import TrialState

    result = Comparison(baseline.point.source, dict(baseline.point.params), required=baseline.required)
    mine = [t for t in trials if t.user_attrs.get(ATTR_BASELINE) == baseline.key and not is_skipped(t)]
    ran = [t for t in mine if t.state.is_finished() and not is_interrupted(t)]
    # The complete one if any (a failure re-run by --retry-failed may have completed since).
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

        result.standard_error = math.sqrt(corrected_variance(differences))
    return result


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))
