"""Run an experiment, top to bottom: open the study, tidy it, search, refit, write the set.

Each step lives in its own module (``study``, ``housekeeping``, ``execution``, ``stopping``,
``finish``); this one only puts them in order and turns how the run ended into errors.
The library reports progress through a callback and never prints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from hptune import baseline, finish, housekeeping, nested, refine, tracking
from hptune import storage as storage_mod
from hptune.crossval import prepare
from hptune.errors import RunFailedError, RunInterruptedError, UsageError
from hptune.execution import Progress, Search, refine_after
from hptune.finish import RunResult
from hptune.nested import NestedProgress
from hptune.stopping import Stop, StopReason, StopRules
from hptune.study import open_study
from hptune.trials import count_states
from hptune.validate import ValidatedExperiment

__all__ = ["NestedProgress", "Progress", "RunOptions", "RunResult", "finalize_experiment", "run_experiment", "run_worker"]

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """How to treat a study that already exists, and what to do on stops."""

    resume: bool = True  # False: refuse to continue an existing study
    fresh: bool = False  # move an existing study and outputs aside, start over
    retry_failed: bool = False  # run the parameters of failed trials again
    refit_on_interrupt: bool = False  # refit the best model even after Ctrl-C
    worker_index: int | None = None  # this process's index among many machines (sampler seeds)


# -- entry points ------------------------------------------------------------------------

def run_experiment(
    exp: ValidatedExperiment,
    options: RunOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_nested: Callable[[NestedProgress], None] | None = None,
) -> RunResult:
    """Tune ``exp`` to its budget, then write every output (with ``evaluation``, after nested CV's
    estimate, whose outer folds are reported to ``on_nested`` as they end).

    Raises RunFailedError when every trial failed or a failure limit was hit, and
    RunInterruptedError after Ctrl-C/SIGTERM; in both cases the outputs that can be written
    from the completed trials are written first.
    """
    options = options or RunOptions()
    started_at = datetime.now(timezone.utc)
    clock = time.perf_counter()
    tracking.require(exp)
    setup = prepare(exp)
    handle = open_study(exp, resume=options.resume, fresh=options.fresh, machine_index=options.worker_index)
    tidied = housekeeping.tidy(handle, options.retry_failed)
    setup_seconds = time.perf_counter() - clock
    log.info(
        "study %s in %s: %d trial(s) had finished; %d of %d held out for the test; %d fold(s); %s",
        exp.spec.name, handle.where, tidied.resumed_from, 0 if setup.split.y_test is None else len(setup.split.y_test),
        exp.data.n_rows, len(setup.ctx.folds),
        "trials run in this process" if handle.workers == 1 else f"{handle.workers} worker processes",
    )

    rules = StopRules.for_experiment(exp, exp.spec.strategy.timeout)
    refining = exp.spec.refine is not None
    search = Search(handle, setup, rules, on_progress, tidied.resumed_from, tidied.requeued, refit_ahead=not refining)
    search_clock = time.perf_counter()
    interrupted = False
    try:
        baseline.run(handle, setup, options.retry_failed)  # first, outside the budget
        if not refine.started(handle.study):
            search.run()
        if refining:
            rules, search = refine_after(search, rules, on_progress, refit_ahead=True)
    except KeyboardInterrupt:
        interrupted = True
    timings = {"setup": setup_seconds, "search": time.perf_counter() - search_clock}
    storage_mod.sync_journals()  # every trial's end on disk before the outputs describe them
    stop = Stop(StopReason.INTERRUPTED) if interrupted else (rules.check(handle.study) or Stop(StopReason.BUDGET))

    resume_hint = "run the same command again to resume" + (" (without --fresh)" if options.fresh else "")
    summary = finish.summarise(exp, handle, setup)
    try:
        # Before anything is written: a crash in the refit leaves the previous set whole.
        fitted = finish.refit_best(exp, setup, summary, search.early_refit, refit=stop.reason is not StopReason.INTERRUPTED
                             or options.refit_on_interrupt)
    except KeyboardInterrupt:  # Ctrl-C during the refit: the set is written without it
        stop = Stop(StopReason.INTERRUPTED)
        fitted = finish.refit_best(exp, setup, summary, search.early_refit, refit=False)
    estimate, cut_short = None, False
    try:
        estimate = finish.evaluate_nested(exp, handle, setup, summary, stop, on_nested)
    except KeyboardInterrupt:  # the outer folds done are kept in the study; the set is written without them
        stop, cut_short = Stop(StopReason.INTERRUPTED), True
    try:
        result = finish.write_outputs(exp, handle, setup, summary, stop, rules, fitted, started_at, timings, estimate)
        tracking.log_run(exp, handle, result, fitted)
    except KeyboardInterrupt:  # and again while writing it: the study is whole, say so
        raise RunInterruptedError(
            f"interrupted while writing the outputs; every trial is kept in {handle.where}; {resume_hint}"
        ) from None
    result.resumed_from = tidied.resumed_from
    result.moved_aside = handle.moved_aside
    error: RunFailedError | RunInterruptedError | None = None
    if cut_short:
        assert exp.spec.evaluation is not None
        error = RunInterruptedError(
            f"interrupted during the nested evaluation: {nested.folds_stored(exp, handle.study)} of "
            f"{exp.spec.evaluation.nested_folds} outer folds are kept in {handle.where}, and the outputs were written "
            f"without the estimate; {resume_hint} (the search is done: only the other outer folds run)"
        )
    elif result.stop_reason == StopReason.INTERRUPTED.value:
        error = RunInterruptedError(
            f"interrupted: {result.counts['complete']} complete trials are kept in {handle.where}; {resume_hint}"
        )
    elif stop.reason is StopReason.FAILURES:
        error = RunFailedError(f"stopped early: {stop.detail}")
    elif result.best_trial is None:
        error = RunFailedError(finish.no_best_message(result))
    if error is not None:
        error.result = result
        raise error
    return result


def run_worker(
    exp: ValidatedExperiment,
    options: RunOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict[str, int]:
    """Only run trials of the shared study until its budget is spent; write no outputs."""
    options = options or RunOptions()
    if options.fresh:
        # Other workers may be running trials of this study: moving it would pull it from under them.
        raise UsageError("--fresh cannot be combined with --worker: start the study over with `run --fresh` first")
    setup = prepare(exp)
    handle = open_study(exp, resume=options.resume, worker=True, machine_index=options.worker_index)
    tidied = housekeeping.tidy(handle, options.retry_failed)
    rules = StopRules.for_experiment(exp, exp.spec.strategy.timeout)
    try:
        search = Search(handle, setup, rules, on_progress, tidied.resumed_from, tidied.requeued, wait_for_others=False)
        if not refine.started(handle.study):
            search.run()
        if exp.spec.refine is not None:
            rules, _ = refine_after(search, rules, on_progress, refit_ahead=False)
    except KeyboardInterrupt:
        raise RunInterruptedError(
            f"worker interrupted; its trial in flight is queued again in {handle.where}"
        ) from None
    stop = rules.check(handle.study)
    if stop is not None and stop.reason is StopReason.FAILURES:
        raise RunFailedError(f"stopped early: {stop.detail}")
    return count_states(handle.trials())


def finalize_experiment(
    exp: ValidatedExperiment, on_nested: Callable[[NestedProgress], None] | None = None
) -> RunResult:
    """Write trials.csv, best.yaml, model.joblib and run.json from an existing study (with
    ``evaluation``, nested CV's estimate too: read back from the study, or computed and stored)."""
    started_at = datetime.now(timezone.utc)
    tracking.require(exp)
    setup = prepare(exp)
    handle = open_study(exp, create=False)
    rules = StopRules.for_experiment(exp)
    summary = finish.summarise(exp, handle, setup)
    fitted = finish.refit_best(exp, setup, summary, None, refit=True)
    stop = rules.check(handle.study)
    estimate = finish.evaluate_nested(exp, handle, setup, summary, stop, on_nested)
    result = finish.write_outputs(exp, handle, setup, summary, stop, rules, fitted, started_at, {}, estimate)
    tracking.log_run(exp, handle, result, fitted)
    if result.best_trial is None:
        error = RunFailedError(finish.no_best_message(result))
        error.result = result
        raise error
    return result
