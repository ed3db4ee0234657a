"""What a study's trials add up to, for the checks made on every trial: the budget, the
failure limits, the best trial, the progress.

Those checks used to walk every trial of the study several times per trial, so a study's
cost grew with the square of its length. Optuna's storages never change a finished trial
(they refuse to), so a ledger folds each finished trial in once and afterwards looks only at
trials that are new or were unfinished at its last look. A check then costs the same at trial
2,000 as at trial 100, apart from Optuna's own listing of the trials.

A ledger belongs to one process and one study; it holds facts, not decisions: the budget's
rules live in ``stopping.Budget``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hptune.trials import ATTR_BASELINE, ATTR_RETRY_OF, ATTR_RETRY_REASON, holds_budget, work_key


@dataclass(frozen=True)
class OpenTrial:
    """An unfinished trial as the last look saw it (its facts may still change)."""

    number: int
    key: str  # trials.work_key
    counts: bool  # holds a share of the budget
    waiting: bool  # queued, not started


class _ByNumber:
    """A study's trials by number, for ``work_key``, without building a dict: Optuna numbers
    a study's trials 0, 1, 2, ... and lists them in that order."""

    def __init__(self, trials: list[Any]) -> None:
        self.trials = trials

    def __contains__(self, number: object) -> bool:
        return isinstance(number, int) and 0 <= number < len(self.trials)

    def __getitem__(self, number: int) -> Any:
        return self.trials[number]


def _numbered_in_order(trials: list[Any]) -> bool:
    return not trials or (trials[0].number == 0 and trials[-1].number == len(trials) - 1)


class Ledger:
    """The running totals of one study's trials, brought up to date by ``update``."""

    def __init__(
        self,
        is_work: Callable[[dict[str, Any]], bool],
        rank_key: Callable[[Any], Any],
        min_delta: float = 0.0,
        ranked: Callable[[Any], bool] | None = None,
    ) -> None:
        self._is_work = is_work  # stopping.Budget.is_work
        self._rank_key = rank_key  # ranking.Goal.rank_key: the highest is the best
        self._ranked = ranked  # ranking.Goal.ranked: which complete trials may be the best (None: all)
        self._min_delta = min_delta  # what beating the best must beat it by, to count as progress
        self.seen = 0  # trials 0 .. seen-1 have been looked at
        self.open: dict[int, OpenTrial] = {}
        #: Trials that ran to an end and hold budget (``trials.finished``), and the failed ones.
        self.finished = 0
        self.failed = 0
        self.best: Any | None = None  # the best complete (and feasible) trial
        # For patience: the finished trials' numbers, sorted; every complete trial's (number,
        # value); and the lowest-numbered complete trial within min_delta of the best.
        self._finished_numbers: list[int] = []
        self._complete: list[tuple[int, float]] = []
        self._near_best: int | None = None
        #: Failed trials that --retry-failed queued again (each adds one to the budget).
        self.retried_failures: set[Any] = set()
        # Work key -> the lowest number of a finished trial holding budget with it, and those
        # numbers sorted, so "how many pieces of work are ahead of trial n" is a bisection.
        self._first_finished: dict[str, int] = {}
        self._first_sorted: list[int] = []

    def update(self, trials: list[Any]) -> Ledger:
        """Fold in what changed since the last update; ``trials`` is the study's full list, in
        number order, as ``Study.get_trials`` gives it. A new ledger also takes any selection
        of trials (one look, nothing to keep up to date)."""
        if _numbered_in_order(trials):
            by_number: Any = _ByNumber(trials)
            looks = [trials[n] for n in sorted(self.open)] + trials[self.seen:]
        elif self.seen == 0:
            by_number, looks = {t.number: t for t in trials}, trials
        else:
            raise ValueError("a ledger is kept up to date from a study's full list of trials")
        for trial in looks:
            if ATTR_BASELINE in trial.user_attrs:
                continue  # outside the search: no budget, no stop rule, no failure limit (hptune.baseline)
            number = trial.number
            if number not in self.open:  # a new trial: its attributes were set when it was created
                attrs = trial.user_attrs
                if attrs.get(ATTR_RETRY_REASON) == "failed":
                    self.retried_failures.add(attrs.get(ATTR_RETRY_OF))
            if trial.state.is_finished():
                self.open.pop(number, None)
                self._finish(trial, by_number)
            else:
                self.open[number] = OpenTrial(
                    number, work_key(trial, by_number), self.counts(trial), trial.state.name == "WAITING"
                )
        self.seen = len(trials)
        return self

    def counts(self, trial: Any) -> bool:
        """Whether a recorded trial holds a share of the budget (queued, running or finished)."""
        return holds_budget(trial) and self._is_work(trial.user_attrs)

    def _finish(self, trial: Any, by_number: Any) -> None:
        if holds_budget(trial):
            self.finished += 1
            self.failed += trial.state.name == "FAIL"
            insort(self._finished_numbers, trial.number)
        if self.counts(trial):
            key, number = work_key(trial, by_number), trial.number
            first = self._first_finished.get(key)
            if first is None or number < first:
                if first is not None:
                    self._first_sorted.pop(bisect_left(self._first_sorted, first))
                self._first_finished[key] = number
                insort(self._first_sorted, number)
        if trial.state.name != "COMPLETE" or (self._ranked is not None and not self._ranked(trial)):
            return  # patience counts what improves the best: a trial that cannot be it does not
        value = self._rank_key(trial)[0]  # the score (with several objectives, the selected one's)
        self._complete.append((trial.number, value))
        if self.best is None or self._rank_key(trial) > self._rank_key(self.best):
            self.best = trial
            bar = value - self._min_delta
            self._near_best = min(number for number, score in self._complete if score >= bar)
        elif value >= self._rank_key(self.best)[0] - self._min_delta and trial.number < (self._near_best or 0):
            self._near_best = trial.number

    @property
    def since_improvement(self) -> int:
        """For patience: finished trials numbered after the first trial that came within
        min_delta of the best (none of them improved on it by more than min_delta); before any
        complete trial, every finished one. It depends on which trials finished, not on the
        order a process saw them finish, so every process and every later run agree."""
        if self._near_best is None:
            return len(self._finished_numbers)
        return len(self._finished_numbers) - bisect_right(self._finished_numbers, self._near_best)

    # -- what the budget asks ------------------------------------------------------------------

    def started(self) -> int:
        """Distinct pieces of work that started (running or finished) and hold budget."""
        running = {o.key for o in self.open.values() if o.counts and not o.waiting and o.key not in self._first_finished}
        return len(self._first_finished) + len(running)

    def done_elsewhere(self, number: int, key: str) -> bool:
        """Whether another trial does trial ``number``'s work: a finished one, or one that
        started before it (of two that start together, the earlier trial runs)."""
        if key in self._first_finished:
            return True
        return any(
            o.key == key and o.counts and not o.waiting and o.number < number for o in self.open.values()
        )

    def work_ahead(self, number: int, key: str) -> int:
        """Distinct pieces of work, other than ``key``, held by trials numbered below ``number``
        (queued ones too: they were asked for first)."""
        below = bisect_left(self._first_sorted, number)
        first = self._first_finished
        only_open = {
            o.key for o in self.open.values()
            if o.counts and o.number < number and (o.key not in first or first[o.key] >= number)
        }
        mine = (key in first and first[key] < number) or key in only_open
        return below + len(only_open) - mine
