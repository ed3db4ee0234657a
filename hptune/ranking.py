"""What the study optimises and which trial is best: decided here and nowhere else.

One objective: the main metric, maximised (every scikit-learn scorer is "greater is better";
losses are negated). Several (``objectives:``): scorers maximised, costs minimised, and the
best is the Pareto trial ``select`` names. Either way only trials that keep the limits of
``constraints:`` (feasible ones) may be the best. Here: the study's directions, the values a
trial returns, the best trial, the Pareto front, the ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hptune.constraints import Limits


class TrialScoreError(ValueError):
    """A trial produced a score that cannot be ranked (NaN or infinite)."""


#: Objectives that are not scorers: what a trial costs, minimised (hptune.constraints.measures).
MEASURES = ("fit_time", "predict_time", "model_mb")
#: ``select: knee``: the Pareto trial nearest the ideal point.
KNEE = "knee"


@dataclass(frozen=True)
class Goal:
    """What the study optimises and which trial is best.

    One objective (``objectives`` empty): ``metric``, maximised, among feasible trials; the
    earliest trial wins a tie, as in GridSearchCV. Several: scorers maximised, measures
    minimised; the best is the Pareto trial ``select`` names (an objective: the best on it;
    ``knee``: the one nearest the ideal point), among feasible trials.
    """

    metric: str
    limits: Limits | None = None  # constraints: (None: every complete trial is feasible)
    objectives: tuple[str, ...] = ()
    select: str | None = None  # default: the first objective

    @classmethod
    def for_experiment(cls, exp: Any) -> Goal:
        from hptune.constraints import Limits

        spec = exp.spec
        objectives = tuple(spec.objectives or ())
        return cls(exp.metric, Limits.for_experiment(spec, exp.metric), objectives,
                   (spec.select or objectives[0]) if objectives else None)

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[str]:
        """What Optuna's study is created with."""
        if not self.multi:
            return ["maximize"]
        return ["minimize" if name in MEASURES else "maximize" for name in self.objectives]

    def trial_value(self, mean_scores: dict[str, float], measured: dict[str, float | None] | None = None) -> Any:
        """What the objective returns to Optuna: the mean CV score, or with several objectives
        one value per objective (``measured``: hptune.constraints.measures)."""
        values = {**(measured or {}), **mean_scores}
        names = self.objectives if self.multi else (self.metric,)
        for name in names:
            value = values.get(name)
            if value is None or not math.isfinite(value):
                raise TrialScoreError(f"{name} is {value} (not a finite number)")
        return [float(values[name]) for name in names] if self.multi else float(values[self.metric])

    def ranked(self, trial: Any) -> bool:
        """Whether ``trial`` may be the best: complete, and keeping every limit."""
        from optuna.trial import TrialState

        return trial.state == TrialState.COMPLETE and (self.limits is None or self.limits.feasible(trial))

    def score(self, trial: Any) -> float:
        """The main metric's mean CV score of a complete trial."""
        if not self.multi:
            return float(trial.value)
        return float(trial.values[self.objectives.index(self.metric)])

    def gains(self, trial: Any) -> list[float]:
        """A complete trial's objective values, each turned "greater is better"."""
        if not self.multi:
            return [float(trial.value)]
        return [-v if d == "minimize" else v for v, d in zip(trial.values, self.directions, strict=True)]

    def best_trial(self, trials: list[Any]) -> Any | None:
        """The best feasible complete trial (see the class); the earliest one wins a tie."""
        eligible = [t for t in trials if self.ranked(t)]
        if not eligible:
            return None
        if self.multi and self.select == KNEE:
            return knee(self.pareto_front(eligible), self.gains)
        return max(eligible, key=self.rank_key)

    def rank_key(self, trial: Any) -> tuple[float, ...]:
        """Orders complete trials: the highest key is the best (the earliest wins a tie). With
        several objectives: by the selected one, then the others (so the best on it is a
        Pareto trial); for knee, by the main metric (the progress's "best so far")."""
        if not self.multi:
            return (trial.value, -trial.number)
        gains = self.gains(trial)
        first = self.objectives.index(self.metric if self.select == KNEE else self.select)
        return (gains[first], *gains[:first], *gains[first + 1:], -trial.number)

    def pareto_front(self, trials: list[Any]) -> list[Any]:
        """The feasible complete trials no other one dominates (at least as good on every
        objective, better on one), by number."""
        import numpy as np

        eligible = sorted((t for t in trials if self.ranked(t)), key=lambda t: t.number)
        if not eligible:
            return []
        gains = np.array([self.gains(t) for t in eligible])
        keep = []
        for index, row in enumerate(gains):
            dominated = np.any(np.all(gains >= row, axis=1) & np.any(gains > row, axis=1))
            if not dominated:
                keep.append(eligible[index])
        return keep

    def record(self, best: Any, trials: list[Any]) -> dict[str, Any]:
        """run.json's ``objectives``: each one and its direction, the rule that chose the best,
        the Pareto trials, and the best's values."""
        return {
            "names": list(self.objectives),
            "directions": self.directions,
            "select": self.select,
            "pareto_trials": [t.number for t in self.pareto_front(trials)],
            "best_values": None if best is None else dict(zip(self.objectives, best.values, strict=True)),
        }

    def best_score(self, trials: list[Any]) -> float | None:
        best = self.best_trial(trials)
        return None if best is None else self.score(best)


#: An objective whose values on the front differ by less than this share of their size is
#: flat for the knee: a 1-byte difference in model size must not decide it (scaled to 0..1,
#: the smallest spread would weigh as much as the largest).
KNEE_FLAT = 1e-3


def knee(front: list[Any], gains: Any) -> Any:
    """The front's trial nearest the ideal point (the best value of every objective), each
    objective scaled to 0..1 over the front (one that is flat over it, see KNEE_FLAT, left
    out); the earliest wins a tie."""
    import numpy as np

    values = np.array([gains(t) for t in front], dtype=float)
    low, high = values.min(axis=0), values.max(axis=0)
    size = np.maximum(np.abs(low), np.abs(high))
    flat = (high - low) <= KNEE_FLAT * np.where(size > 0, size, 1.0)
    spread = np.where(flat, np.inf, high - low)
    distance = np.sqrt((((high - values) / spread) ** 2).sum(axis=1))
    return front[int(np.argmin(distance))]  # argmin keeps the first of equals; front is by number


def rank_greater_is_better(scores: Any, eligible: Any) -> Any:
    """``rank_test_<metric>`` as ``cv_results_`` has it: 1 for the highest score, ties share
    the lowest rank, and trials that are not ``eligible`` (failed, unfinished) rank last."""
    ranks = scores[eligible].rank(method="min", ascending=False)
    return ranks.reindex(scores.index).fillna(int(eligible.sum()) + 1).astype(int)
