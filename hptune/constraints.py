"""What a trial measures besides its scores, and the limits a trial must keep to be chosen.

Each trial stores its CV result (``trials.ATTR_CV``); from it come the measures: how far the
train score runs ahead of the CV score (``overfit_gap``), the mean fit time per fold
(``fit_time``), and, when asked for, the seconds per row to predict and score a fold's test
rows (``predict_time``) and the fitted pipeline's pickled size (``model_mb``).

``constraints:`` in the file sets limits on them. A trial that breaks one is infeasible: it
stays in trials.csv (``feasible: false``) but is never the best. Feasibility is computed from
what the trial stored and today's limits, so tightening a limit and running again re-judges
the trials already run. Each trial also hands its excess over each limit to Optuna
(``Trial.set_constraint``: a value <= 0 keeps the limit), so the samplers that read
constraints (TPE, the default) learn to avoid the regions that break a limit instead of only
having their trials filtered afterwards.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from typing import Any

from hptune.trials import ATTR_CV

#: The summary warns when the best trial's gap is above this, on a score with a 0-1 scale
#: (accuracy, ROC AUC, F1, R²...): 5 points of accuracy between the rows a model was fitted
#: on and rows it never saw is a gap users act on, and well above what fold noise gives.
OVERFIT_WARNING_GAP = 0.05
#: For error metrics (``neg_*``), whose scale is the target's: a training error this share
#: below the CV error (a train RMSE of 7.5 against a CV RMSE of 10).
OVERFIT_WARNING_ERROR_SHARE = 0.25

#: A measure this close to its limit keeps it: means of fold scores carry rounding errors of
#: about 1e-16, so a train score of 1.0 against a CV score of 0.95 must not break a 0.05 gap.
LIMIT_TOLERANCE = 1e-9

#: Each limit of ``constraints:`` and the measure it bounds.
MEASURE_OF = {"max_overfit_gap": "overfit_gap", "max_fit_time": "fit_time", "max_model_mb": "model_mb"}
#: How each measure is written in messages.
UNITS = {"overfit_gap": "", "fit_time": " s", "model_mb": " MB"}


def overfit_gap(cv: dict[str, Any] | None, metric: str) -> float | None:
    """Mean train score minus mean CV score of ``metric`` ("greater is better", so a positive
    gap is overfitting); None without train scores."""
    if not cv:
        return None
    train, test = (cv.get("train") or {}).get(metric), (cv.get("test") or {}).get(metric)
    if not train or not test:
        return None
    return sum(train) / len(train) - sum(test) / len(test)


def measures(cv: dict[str, Any] | None, metric: str) -> dict[str, float | None]:
    """The measures of a trial from its stored CV result (None where it was not measured)."""
    cv = cv or {}

    def mean(key: str) -> float | None:
        values = cv.get(key) or []
        return sum(values) / len(values) if values else None

    return {"overfit_gap": overfit_gap(cv, metric), "fit_time": mean("fit_time"), "predict_time": mean("predict_time"),
            "model_mb": mean("model_mb")}


def overfit_warning_threshold(metric: str, cv_score: float, limit: float | None) -> float:
    """The gap above which the summary warns: the file's ``max_overfit_gap`` when set, else
    OVERFIT_WARNING_GAP, or for an error metric OVERFIT_WARNING_ERROR_SHARE of the CV error."""
    if limit is not None:
        return limit
    if metric.startswith("neg_"):
        return OVERFIT_WARNING_ERROR_SHARE * abs(cv_score)
    return OVERFIT_WARNING_GAP


def pickled_mb(obj: Any) -> float:
    """The size of ``obj`` pickled (as model.joblib stores it, near enough), counted without
    keeping the bytes."""

    class _Counter:
        size = 0

        def write(self, chunk: Any) -> None:
            self.size += len(memoryview(chunk).cast("B"))

    counter = _Counter()
    pickle.dump(obj, counter, protocol=pickle.HIGHEST_PROTOCOL)
    return counter.size / 2**20


@dataclass(frozen=True)
class Limits:
    """The limits ``constraints:`` sets (None: not set), on the trials of ``metric``."""

    metric: str
    max_overfit_gap: float | None = None
    max_fit_time: float | None = None
    max_model_mb: float | None = None

    @classmethod
    def for_experiment(cls, spec: Any, metric: str) -> Limits | None:
        if spec.constraints is None:
            return None
        return cls(metric, **spec.constraints.model_dump())

    @property
    def given(self) -> dict[str, float]:
        """The limits set, by key, in the file's order."""
        return {key: getattr(self, key) for key in MEASURE_OF if getattr(self, key) is not None}

    @property
    def measures_size(self) -> bool:
        """Whether trials must measure their model's size (pickling each fold's model)."""
        return self.max_model_mb is not None

    def excess(self, cv: dict[str, Any] | None) -> dict[str, float]:
        """By how much each limit is broken (<= 0: kept); infinite for a measure the trial did
        not store (run before the limit was set, or without train scores)."""
        values = measures(cv, self.metric)
        excess = {}
        for key, limit in self.given.items():
            value = values[MEASURE_OF[key]]
            if value is None:
                excess[key] = math.inf
            elif math.isclose(value, limit, rel_tol=LIMIT_TOLERANCE, abs_tol=LIMIT_TOLERANCE):
                excess[key] = 0.0  # at the limit: a gap of 1.0 - 0.95 is 0.05 whatever the rounding
            else:
                excess[key] = value - limit
        return excess

    def feasible(self, trial: Any) -> bool:
        return all(value <= 0 for value in self.excess(trial.user_attrs.get(ATTR_CV)).values())

    def broken(self, trials: list[Any]) -> list[str]:
        """One line per limit: how many of ``trials`` (complete ones) broke it, and the trial
        closest to keeping it. For the message of a run where no trial kept every limit."""
        lines = []
        for key, limit in self.given.items():
            measure, unit = MEASURE_OF[key], UNITS[MEASURE_OF[key]]
            values = [(measures(t.user_attrs.get(ATTR_CV), self.metric)[measure], t.number) for t in trials]
            known = [(value, number) for value, number in values if value is not None]
            over = [(value, number) for value, number in known if value > limit]
            line = f"{key} {limit:g}{unit}: broken by {len(over) + len(values) - len(known)} of {len(values)} trials"
            if len(known) < len(values):
                line += f" ({len(values) - len(known)} without a {measure} measure)"
            if over:
                value, number = min(over)
                line += f"; closest: trial {number} at {value:.4g}{unit}"
            lines.append(line)
        return lines
