"""The Optuna objective: check the trial may run, suggest its parameters, cross-validate,
record what happened on the trial, and return the value the study optimises."""

from __future__ import annotations

import traceback
import warnings
from typing import Any

from hptune import processes
from hptune.constraints import measures
from hptune.crossval import CVContext, CVResult, cross_validate_folds
from hptune.errors import HptuneError
from hptune.ranking import Goal
from hptune.space import Space, suggest
from hptune.stopping import Admission, StopRules
from hptune.trials import (
    ATTR_CV,
    ATTR_ERROR,
    ATTR_INTERRUPTED,
    ATTR_SKIPPED,
    ATTR_STAGE,
    ATTR_TRACEBACK,
    ATTR_WARNINGS,
    ATTR_WORKER,
    INTERRUPTED_BY_SIGNAL,
    requeue,
)


class TrialSkipped(HptuneError):
    """A trial that must not run: the budget was spent before it started, or another trial
    does its work (a grid point queued twice). It is recorded as skipped and never shown.
    Not Optuna's TrialPruned: pruning stops a trial that ran badly, this one never ran."""


class Objective:
    """The Optuna objective: suggest parameters, cross-validate, record, return the mean score."""

    def __init__(
        self,
        ctx: CVContext,
        space: Space,
        goal: Goal,
        grid: bool,
        rules: StopRules | None = None,
        report_folds: bool = False,
        stage: str = "search",
        tell_constraints: bool = True,
    ) -> None:
        self.ctx = ctx
        self.stage = stage  # "refine" trials say so (hptune.refine)
        self.space = space
        self.goal = goal
        self.grid = grid
        self.rules = rules  # admits each trial against the study's budget
        # Each report is a write to the study: made only when a pruner will read them.
        self.report_folds = report_folds
        #: Hand each trial's excess over the limits to Optuna (not for CMA-ES, whose sampler
        #: ignores them and warns so on every trial).
        self.tell_constraints = tell_constraints
        #: An error no trial can get past (the budget could not be checked): raised by the
        #: caller once Optuna's loop, which catches every trial's exception, has stopped.
        self.fatal: Exception | None = None

    def __call__(self, trial: Any) -> float | list[float]:
        # Asked per trial, not at import: forked workers import this module in their parent.
        trial.set_user_attr(ATTR_WORKER, processes.current())
        if self.stage != "search":
            trial.set_user_attr(ATTR_STAGE, self.stage)
        if self.rules is not None:
            try:
                admission = self.rules.admit(trial)
            except Exception as exc:
                # Not this trial's fault, and the next trial would fail the same way: the trial
                # never ran (skipped, holding no budget) and the search stops with the error.
                trial.set_user_attr(ATTR_SKIPPED, True)
                trial.set_user_attr(ATTR_TRACEBACK, traceback.format_exc())
                self.fatal = exc
                trial.study.stop()
                raise
            if admission is not Admission.RUN:
                trial.set_user_attr(ATTR_SKIPPED, True)
                if admission is Admission.SPENT:
                    trial.study.stop()  # this worker's work is done
                raise TrialSkipped(f"skipped: {admission.value}")
        main, folds = self.ctx.metrics[0], len(self.ctx.folds)

        def report_and_ask(index: int, partial: CVResult) -> bool:
            """Report the running mean (greater is better, as the study maximises) at step
            "folds done", and whether the pruner stops the trial there. Never on the last fold:
            a finished result is never thrown away."""
            done = index + 1
            trial.report(partial.mean_test(main), done)
            return done < folds and trial.should_prune()

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                params = suggest(trial, self.space, grid=self.grid)
                result = cross_validate_folds(self.ctx, params, report_and_ask if self.report_folds else None)
                pruned = len(result.fit_time) < folds
                if not pruned:
                    scores = {metric: result.mean_test(metric) for metric in self.ctx.metrics}
                    measured = measures(result.to_attr(), main) if self.goal.multi else None
                    value = self.goal.trial_value(scores, measured)
            except KeyboardInterrupt:
                _record_interruption(trial)
                raise
            except Exception as exc:
                if caused_by_interrupt(exc):
                    # Ctrl-C while Optuna's journal waited for its file lock comes out as the
                    # lock's RuntimeError: an interruption, not this trial's failure.
                    _record_interruption(trial)
                    raise KeyboardInterrupt from exc
                message = " ".join(str(exc).split()) or type(exc).__name__
                trial.set_user_attr(ATTR_ERROR, f"{type(exc).__name__}: {message}")
                trial.set_user_attr(ATTR_TRACEBACK, traceback.format_exc())
                if caught:
                    trial.set_user_attr(ATTR_WARNINGS, distinct_warnings(caught))
                raise
        # A pruned trial's folds done, too. The warnings ride along: one write to the study
        # instead of two (each is a locked append to the journal, a statement on a database).
        cv = result.to_attr()
        trial.set_user_attr(ATTR_CV, cv | ({ATTR_WARNINGS: distinct_warnings(caught)} if caught else {}))
        if self.goal.limits is not None and self.tell_constraints:
            # Optuna's own constraints (<= 0: kept), which TPE reads to steer away from
            # infeasible regions; the outputs judge feasibility from the stored scores.
            for key, excess in self.goal.limits.excess(cv).items():
                trial.set_constraint(key, excess)
        if pruned:
            import optuna

            raise optuna.TrialPruned(f"pruned after {len(result.fit_time)} of {folds} folds")
        return value


def _record_interruption(trial: Any) -> None:
    trial.set_user_attr(ATTR_INTERRUPTED, True)
    trial.set_user_attr(ATTR_ERROR, INTERRUPTED_BY_SIGNAL)
    # This process saw the interruption, so it alone puts the parameters back. They are read
    # back from the study: the interruption may have struck between Optuna storing a parameter
    # and caching it on ``trial``.
    stored = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    requeue(trial.study, stored, "interrupted")


def caused_by_interrupt(exc: BaseException) -> bool:
    """True when ``exc`` was raised while a KeyboardInterrupt was being handled.

    A second Ctrl-C that lands inside Optuna's ``tell`` surfaces as an UnboundLocalError from
    its ``finally`` (``updated_state`` is never set), and one that lands while the journal
    waits for its lock as a RuntimeError ("did not possess lock"), each with the
    KeyboardInterrupt as context.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


def distinct_warnings(caught: list[warnings.WarningMessage], limit: int = 5) -> list[str]:
    """The first ``limit`` distinct warnings, each on one line: ``Category: message``."""
    distinct: list[str] = []
    for item in caught:
        text = f"{item.category.__name__}: {' '.join(str(item.message).split())}"
        if text not in distinct:
            distinct.append(text)
    return distinct[:limit]
