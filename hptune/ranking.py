"""What the study optimises and which trial is best: decided here and nowhere else.

Today there is one objective, the main metric, maximised (every scikit-learn scorer is
"greater is better"; losses are negated). Constraints and several objectives change what
the study is told and which trial wins, so they plug in here: the study's directions, the
value a trial returns, the best trial, the table's ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class TrialScoreError(ValueError):
    """A trial produced a score that cannot be ranked (NaN or infinite)."""


@dataclass(frozen=True)
class Goal:
    """One metric, maximised; the earliest trial wins a tie, as in GridSearchCV."""

    metric: str

    @classmethod
    def for_experiment(cls, exp: Any) -> Goal:
        return cls(exp.metric)

    @property
    def directions(self) -> list[str]:
        """What Optuna's study is created with."""
        return ["maximize"]

    def trial_value(self, mean_scores: dict[str, float]) -> float:
        """What the objective returns to Optuna, from the mean CV score of each metric."""
        score = mean_scores[self.metric]
        if not math.isfinite(score):
            raise TrialScoreError(f"{self.metric} is {score} (not a finite number)")
        return score

    def best_trial(self, trials: list[Any]) -> Any | None:
        """The complete trial with the highest score; the earliest one wins a tie."""
        from optuna.trial import TrialState

        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            return None
        return max(complete, key=self.rank_key)

    def rank_key(self, trial: Any) -> tuple[float, int]:
        """Orders complete trials: the highest key is the best (the earliest wins a tie)."""
        return (trial.value, -trial.number)

    def best_score(self, trials: list[Any]) -> float | None:
        best = self.best_trial(trials)
        return None if best is None else float(best.value)


def rank_greater_is_better(scores: Any, eligible: Any) -> Any:
    """``rank_test_<metric>`` as ``cv_results_`` has it: 1 for the highest score, ties share
    the lowest rank, and trials that are not ``eligible`` (failed, unfinished) rank last."""
    ranks = scores[eligible].rank(method="min", ascending=False)
    return ranks.reindex(scores.index).fillna(int(eligible.sum()) + 1).astype(int)
