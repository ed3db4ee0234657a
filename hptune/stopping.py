"""Why a run stops: the trial budget, the failure limits, the deadline, an interruption.

Every rule reads the study, not one process's memory, so the workers of one machine and of
many stop together. ``StopRules.check`` returns the first rule that holds as a ``Stop``,
whose ``StopReason`` says what exit code it means; a new rule (a target score, patience) is
a new case here, not a check somewhere else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

from hptune.trials import (
    ATTR_GRID_POINT,
    ATTR_RETRY_OF,
    ATTR_RETRY_REASON,
    STUDY_EXTRA_BUDGET,
    finished,
    holds_budget,
    work_key,
)

#: Failure-rate limits are checked only once this many trials have finished.
MIN_TRIALS_FOR_FAILURE_RATE = 5


class StopReason(str, Enum):
    """Why the search stopped; ``run.json: stop_reason`` holds the value."""

    BUDGET = "budget"  # n_trials trials ran to an end
    TIMEOUT = "timeout"  # strategy.timeout / --timeout passed
    FAILURES = "failures"  # strategy.max_failures or max_failure_rate was exceeded
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM

    @property
    def exit_code(self) -> int:
        """0 done, 1 finished but failed, 130 interrupted (the README's exit-code table)."""
        return {StopReason.FAILURES: 1, StopReason.INTERRUPTED: 130}.get(self, 0)


@dataclass(frozen=True)
class Stop:
    reason: StopReason
    detail: str = ""  # for failures: which limit, with the counts


class Admission(Enum):
    """What a trial that has just started may do (see ``Budget.admit``)."""

    RUN = "run"
    DUPLICATE = "duplicate"  # its grid point or retry is already run by another trial
    SPENT = "spent"  # the budget was spent before it started


@dataclass
class Budget:
    """The study-wide trial budget, shared by every worker on every machine.

    Optuna cannot start a trial "only if under budget" atomically, so each trial checks once
    it exists: trial numbers are assigned in order by the storage, and a trial with
    ``n_trials`` budget-holding trials before it was asked for too late. It is marked skipped
    (it never runs and is not shown), and its worker stops. The budget is exact however many
    workers race. Trials that are the same work (``trials.work_key``) count once, and only
    one of them runs.

    In a grid, a trial that is neither a grid point nor a retry is a worker finding the queue
    empty: it never runs, and it holds no budget even for the moment before it is skipped.
    """

    n_trials: int
    grid: bool

    def target(self, study: Any, trials: list[Any] | None = None) -> int:
        """n_trials, plus one for each failed trial --retry-failed queued again.

        The retries are counted from the trials themselves, so machines that queue them at
        the same moment cannot lose an update; studies of 0.1.0 kept the count as a study
        attribute instead, and the larger of the two is theirs.
        """
        trials = study.get_trials(deepcopy=False) if trials is None else trials
        retries = len({t.user_attrs.get(ATTR_RETRY_OF) for t in trials if t.user_attrs.get(ATTR_RETRY_REASON) == "failed"})
        return self.n_trials + max(retries, int(study.user_attrs.get(STUDY_EXTRA_BUDGET, 0)))

    def is_work(self, attrs: dict[str, Any]) -> bool:
        """Whether a trial with these attributes is work the budget pays for."""
        return not self.grid or ATTR_GRID_POINT in attrs or ATTR_RETRY_OF in attrs

    def counts(self, trial: Any) -> bool:
        """Whether a recorded trial holds a share of the budget (queued, running or finished)."""
        return holds_budget(trial) and self.is_work(trial.user_attrs)

    def admit(self, trial: Any) -> Admission:
        """Whether ``trial`` (an Optuna Trial that has just started) may run."""
        from optuna.trial import TrialState

        if not self.is_work(trial.user_attrs):
            return Admission.SPENT  # the grid queue is empty: a sampled point would be a duplicate
        study = trial.study
        trials = study.get_trials(deepcopy=False)
        by_number = {t.number: t for t in trials}
        key = work_key(trial, by_number)
        for other in trials:
            if other.number == trial.number or other.state == TrialState.WAITING or not self.counts(other):
                continue
            # Of two that start together, the earlier trial runs.
            if work_key(other, by_number) == key and (other.state.is_finished() or other.number < trial.number):
                return Admission.DUPLICATE
        ahead = {work_key(t, by_number) for t in trials if t.number < trial.number and self.counts(t)}
        ahead.discard(key)
        return Admission.RUN if len(ahead) < self.target(study, trials) else Admission.SPENT

    def started(self, trials: list[Any]) -> int:
        """Distinct pieces of work that started (running or finished) and hold budget."""
        from optuna.trial import TrialState

        by_number = {t.number: t for t in trials}
        return len({work_key(t, by_number) for t in trials if t.state != TrialState.WAITING and self.counts(t)})

    def spent(self, study: Any, trials: list[Any] | None = None) -> bool:
        trials = study.get_trials(deepcopy=False) if trials is None else trials
        return self.started(trials) >= self.target(study, trials)


class StopRules:
    """Every reason to stop, checked in one place, in order of what the user must hear first."""

    def __init__(self, budget: Budget, strategy: Any, deadline: float | None = None) -> None:
        self.budget = budget
        self.strategy = strategy
        self.deadline = deadline  # time.monotonic() value, or None

    @classmethod
    def for_experiment(cls, exp: Any, timeout: float | None = None) -> StopRules:
        deadline = None if timeout is None else time.monotonic() + timeout
        return cls(Budget(exp.n_trials, grid=exp.grid is not None), exp.spec.strategy, deadline)

    def check(self, study: Any) -> Stop | None:
        trials = study.get_trials(deepcopy=False)
        failures = self.failure_limit(trials)
        if failures is not None:
            return Stop(StopReason.FAILURES, failures)
        if self.budget.spent(study, trials):
            return Stop(StopReason.BUDGET)
        if self.timed_out():
            return Stop(StopReason.TIMEOUT)
        return None

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def failure_limit(self, trials: list[Any]) -> str | None:
        """Which failure limit the study is over, with the counts; None when within them."""
        from optuna.trial import TrialState

        strategy = self.strategy
        if strategy.max_failures is None and strategy.max_failure_rate is None:
            return None
        ended = finished(trials)
        failed = sum(t.state == TrialState.FAIL for t in ended)
        if strategy.max_failures is not None and failed > strategy.max_failures:
            return f"{failed} trials failed, more than strategy.max_failures ({strategy.max_failures})"
        rate = strategy.max_failure_rate
        if rate is not None and len(ended) >= MIN_TRIALS_FOR_FAILURE_RATE and failed / len(ended) > rate:
            return f"{failed} of {len(ended)} trials failed, more than strategy.max_failure_rate ({rate:g})"
        return None
