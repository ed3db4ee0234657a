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

from hptune.ledger import Ledger
from hptune.ranking import Goal
from hptune.trials import ATTR_GRID_POINT, ATTR_RETRY_OF, STUDY_EXTRA_BUDGET

#: Failure-rate limits are checked only once this many trials have finished.
MIN_TRIALS_FOR_FAILURE_RATE = 5


class StopReason(str, Enum):
    """Why the search stopped; ``run.json: stop_reason`` holds the value."""

    BUDGET = "budget"  # n_trials trials ran to an end
    TIMEOUT = "timeout"  # strategy.timeout / --timeout passed
    TARGET = "target"  # the best score reached stop.target
    PATIENCE = "patience"  # stop.patience finished trials in a row did not improve the best
    FAILURES = "failures"  # strategy.max_failures or max_failure_rate was exceeded
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM

    @property
    def exit_code(self) -> int:
        """0 done, 1 finished but failed, 130 interrupted (the README's exit-code table)."""
        return {StopReason.FAILURES: 1, StopReason.INTERRUPTED: 130}.get(self, 0)


@dataclass(frozen=True)
class Stop:
    reason: StopReason
    detail: str = ""  # what held, with the figures: "best 0.9833 >= target 0.98"


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

    The counts come from a ``Ledger`` of the study's trials (see ``hptune.ledger``).
    """

    n_trials: int
    grid: bool
    #: Trials --retry-failed added to the budget in hptune 0.1.0, which kept the count as a
    #: study attribute (read once: only 0.1.0 wrote it).
    extra_0_1_0: int = 0

    def is_work(self, attrs: dict[str, Any]) -> bool:
        """Whether a trial with these attributes is work the budget pays for."""
        return not self.grid or ATTR_GRID_POINT in attrs or ATTR_RETRY_OF in attrs

    def target(self, ledger: Ledger) -> int:
        """n_trials, plus one for each failed trial --retry-failed queued again.

        The retries are counted from the trials themselves, so machines that queue them at
        the same moment cannot lose an update.
        """
        return self.n_trials + max(len(ledger.retried_failures), self.extra_0_1_0)

    def admit(self, trial: Any, ledger: Ledger) -> Admission:
        """Whether ``trial`` (an Optuna Trial that has just started) may run; ``ledger`` is
        up to date with the study, this trial included."""
        if not self.is_work(trial.user_attrs):
            return Admission.SPENT  # the grid queue is empty: a sampled point would be a duplicate
        key = ledger.open[trial.number].key
        if ledger.done_elsewhere(trial.number, key):
            return Admission.DUPLICATE
        return Admission.RUN if ledger.work_ahead(trial.number, key) < self.target(ledger) else Admission.SPENT

    def spent(self, ledger: Ledger) -> bool:
        return ledger.started() >= self.target(ledger)


class StopRules:
    """Every reason to stop, checked in one place, in order of what the user must hear first.

    The rules read the study through a ledger per study and process, brought up to date at
    each check from the trials that are new or unfinished (see ``hptune.ledger``).
    """

    def __init__(
        self, budget: Budget, strategy: Any, goal: Goal, deadline: float | None = None, stop: Any = None
    ) -> None:
        self.budget = budget
        self.strategy = strategy
        self.goal = goal
        self.stop = stop  # spec.StopSpec: target and patience (None: neither)
        self.deadline = deadline  # time.monotonic() value, or None
        self._ledgers: dict[tuple[int, int], Ledger] = {}
        self._read_0_1_0 = False

    @classmethod
    def for_experiment(cls, exp: Any, timeout: float | None = None) -> StopRules:
        deadline = None if timeout is None else time.monotonic() + timeout
        budget = Budget(exp.n_trials, grid=exp.grid is not None)
        return cls(budget, exp.spec.strategy, Goal.for_experiment(exp), deadline, exp.spec.stop)

    def ledger(self, study: Any, trials: list[Any] | None = None) -> Ledger:
        """The study's ledger, up to date. With ``trials`` (a selection, such as the trials
        whose process lives), a ledger of those alone, kept nowhere."""
        if trials is not None:
            return self._new_ledger(study).update(trials)
        # A worker process opens the study through a storage of its own: a ledger of its own.
        where = (id(study._storage), study._study_id)
        ledger = self._ledgers.get(where)
        if ledger is None:
            ledger = self._ledgers[where] = self._new_ledger(study)
        return ledger.update(study.get_trials(deepcopy=False))

    def _new_ledger(self, study: Any) -> Ledger:
        if not self._read_0_1_0:
            self.budget.extra_0_1_0 = int(study.user_attrs.get(STUDY_EXTRA_BUDGET, 0))
            self._read_0_1_0 = True
        return Ledger(
            self.budget.is_work, self.goal.rank_key, self.stop.min_delta if self.stop else 0.0, self.goal.ranked
        )

    def admit(self, trial: Any) -> Admission:
        """Whether ``trial``, which has just started, may run (see ``Budget``)."""
        return self.budget.admit(trial, self.ledger(trial.study))

    def spent(self, study: Any) -> bool:
        return self.budget.spent(self.ledger(study))

    def nothing_to_run(self, study: Any) -> bool:
        """The budget is spent, the time is up, or a stop rule holds: no trial may start.
        (Failure limits are checked as trials end: a run started over the limit runs one.)"""
        ledger = self.ledger(study)
        return self.budget.spent(ledger) or self.timed_out() or self.stopped_early(ledger) is not None

    def check(self, study: Any, ledger: Ledger | None = None) -> Stop | None:
        ledger = ledger or self.ledger(study)
        failures = self.failure_limit(ledger)
        if failures is not None:
            return Stop(StopReason.FAILURES, failures)
        early = self.stopped_early(ledger)
        if early is not None:
            return early
        if self.budget.spent(ledger):
            return Stop(StopReason.BUDGET, f"{ledger.finished} trials ran to an end")
        if self.timed_out():
            return Stop(StopReason.TIMEOUT, f"{ledger.finished} trials ran to an end in the time allowed")
        return None

    def stopped_early(self, ledger: Ledger) -> Stop | None:
        """The stop rules that end a search that goes well (target) or stalls (patience)."""
        stop = self.stop
        if stop is None:
            return None
        best = ledger.best
        if stop.target is not None and best is not None and self.goal.score(best) >= stop.target:
            return Stop(StopReason.TARGET, f"trial {best.number}'s {best.value:.6g} reached stop.target {stop.target:g}")
        if stop.patience is not None and ledger.since_improvement >= stop.patience:
            by = f" by more than {stop.min_delta:g}" if stop.min_delta else ""
            return Stop(
                StopReason.PATIENCE,
                f"{ledger.since_improvement} finished trials in a row did not improve the best{by}; "
                f"stop.patience is {stop.patience}",
            )
        return None

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def failure_limit(self, ledger: Ledger) -> str | None:
        """Which failure limit the study is over, with the counts; None when within them."""
        strategy = self.strategy
        failed, ended = ledger.failed, ledger.finished
        if strategy.max_failures is not None and failed > strategy.max_failures:
            return f"{failed} trials failed, more than strategy.max_failures ({strategy.max_failures})"
        rate = strategy.max_failure_rate
        if rate is not None and ended >= MIN_TRIALS_FOR_FAILURE_RATE and failed / ended > rate:
            return f"{failed} of {ended} trials failed, more than strategy.max_failure_rate ({rate:g})"
        return None
