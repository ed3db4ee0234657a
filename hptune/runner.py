"""Run an experiment, top to bottom: open the study, tidy it, search, refit, write the set.

Each step lives in its own module (``study``, ``housekeeping``, ``execution``, ``stopping``,
``refit``, ``outputs``); this one only puts them in order and says how the run ended.
The library reports progress through a callback and never prints.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hptune import __version__, housekeeping, outputs, refine, results
from hptune import storage as storage_mod
from hptune.crossval import Setup, prepare
from hptune.errors import RunFailedError, RunInterruptedError, UsageError
from hptune.execution import Progress, Search, refine_after
from hptune.fingerprint import digest, fingerprint_parts
from hptune.refit import Refit, refit_trial
from hptune.samplers import pruner_name
from hptune.stopping import Stop, StopReason, StopRules
from hptune.study import StudyHandle, open_study
from hptune.trials import ATTR_STAGE, count_states
from hptune.validate import ValidatedExperiment

__all__ = ["Progress", "RunOptions", "RunResult", "finalize_experiment", "run_experiment", "run_worker"]

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """How to treat a study that already exists, and what to do on stops."""

    resume: bool = True  # False: refuse to continue an existing study
    fresh: bool = False  # move an existing study and outputs aside, start over
    retry_failed: bool = False  # run the parameters of failed trials again
    refit_on_interrupt: bool = False  # refit the best model even after Ctrl-C
    worker_index: int | None = None  # this process's index among many machines (sampler seeds)


@dataclass
class RunResult:
    """What a run produced, for the CLI (or a notebook) to show."""

    output_dir: Path
    status: str
    stop_reason: str | None
    metric: str
    best_trial: int | None
    best_params: dict[str, Any]
    cv_score: float | None
    cv_std: float | None
    train_score: float | None
    test_score: float | None
    table: Any
    counts: dict[str, int]
    files: dict[str, Path]
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    refit_warnings: list[str] = field(default_factory=list)
    resumed_from: int = 0
    moved_aside: str | None = None
    model_trial: int | None = None  # the trial model.joblib holds (an earlier best after Ctrl-C)
    partial_reason: str | None = None  # why status is "partial": budget not spent, trials running
    stop_detail: str = ""  # what made the search stop, with the figures
    strategy: str = ""  # the kind that ran (what auto chose, when it was auto)
    auto_strategy: str | None = None  # why auto chose it


# -- entry points ------------------------------------------------------------------------

def run_experiment(
    exp: ValidatedExperiment,
    options: RunOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    """Tune ``exp`` to its budget, then write every output.

    Raises RunFailedError when every trial failed or a failure limit was hit, and
    RunInterruptedError after Ctrl-C/SIGTERM; in both cases the outputs that can be written
    from the completed trials are written first.
    """
    options = options or RunOptions()
    started_at = datetime.now(timezone.utc)
    clock = time.perf_counter()
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
    summary = _summarise(exp, handle, setup)
    try:
        # Before anything is written: a crash in the refit leaves the previous set whole.
        fitted = _refit_best(exp, setup, summary, search.early_refit, refit=stop.reason is not StopReason.INTERRUPTED
                             or options.refit_on_interrupt)
    except KeyboardInterrupt:  # Ctrl-C during the refit: the set is written without it
        stop = Stop(StopReason.INTERRUPTED)
        fitted = _refit_best(exp, setup, summary, search.early_refit, refit=False)
    try:
        result = _write(exp, handle, setup, summary, stop, rules, fitted, started_at, timings)
    except KeyboardInterrupt:  # and again while writing it: the study is whole, say so
        raise RunInterruptedError(
            f"interrupted while writing the outputs; every trial is kept in {handle.where}; {resume_hint}"
        ) from None
    result.resumed_from = tidied.resumed_from
    result.moved_aside = handle.moved_aside
    error: RunFailedError | RunInterruptedError | None = None
    if result.stop_reason == StopReason.INTERRUPTED.value:
        error = RunInterruptedError(
            f"interrupted: {result.counts['complete']} complete trials are kept in {handle.where}; {resume_hint}"
        )
    elif stop.reason is StopReason.FAILURES:
        error = RunFailedError(f"stopped early: {stop.detail}")
    elif result.best_trial is None:
        error = RunFailedError(_all_failed_message(result.failures))
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


def finalize_experiment(exp: ValidatedExperiment) -> RunResult:
    """Write trials.csv, best.yaml, model.joblib and run.json from an existing study."""
    started_at = datetime.now(timezone.utc)
    setup = prepare(exp)
    handle = open_study(exp, create=False)
    rules = StopRules.for_experiment(exp)
    summary = _summarise(exp, handle, setup)
    fitted = _refit_best(exp, setup, summary, None, refit=True)
    result = _write(exp, handle, setup, summary, rules.check(handle.study), rules, fitted, started_at, {})
    if result.best_trial is None:
        error = RunFailedError(_all_failed_message(result.failures))
        error.result = result
        raise error
    return result


# -- the end of a run ----------------------------------------------------------------------

def _summarise(exp: ValidatedExperiment, handle: StudyHandle, setup: Setup) -> outputs.Summary:
    spec = exp.spec
    return outputs.summarise(
        handle.trials(), handle.goal, list(spec.search_space), setup.ctx.metrics, spec.cv.train_scores, spec.search_space,
        stages=spec.refine is not None,
    )


def _refit_best(
    exp: ValidatedExperiment, setup: Setup, summary: outputs.Summary, early: Refit | None, refit: bool
) -> Refit | None:
    """The best trial refitted: the refit made while the last trials ran when it is of the
    best trial (even when no refit was asked for: it is done already), else a new one."""
    best = summary.best
    if best is None:
        return None
    if early is not None and early.trial == best.number:
        return early
    return refit_trial(exp, setup, best) if refit else None


def _status(stop: Stop | None, summary: outputs.Summary, handle: StudyHandle, rules: StopRules) -> tuple[str, str | None]:
    """The run's status, and why it is partial when it is: complete means the budget is
    spent and no trial still runs (one may yet become the best)."""
    from optuna.trial import TrialState

    if stop is not None and stop.reason is StopReason.INTERRUPTED:
        return "interrupted", None
    if stop is not None and stop.reason is StopReason.FAILURES:
        return "stopped", None
    if summary.best is None:
        return "failed", None
    trials = handle.trials()
    running = [t for t in trials if t.state == TrialState.RUNNING]
    live = [t for t in running if _may_still_run(t, handle)]
    if live:
        return "partial", f"{len(live)} trial(s) of the study are still running (one may yet be the best)"
    if stop is not None and stop.reason in (StopReason.TIMEOUT, StopReason.TARGET, StopReason.PATIENCE):
        return "complete", None  # a rule the user set ended the search before the budget
    # A dead process's trial (failed when the study is next opened) did not spend its share.
    gone = {t.number for t in running} - {t.number for t in live}
    counted = [t for t in trials if t.number not in gone]
    target = rules.budget.target(rules.ledger(handle.study))
    if rules.ledger(handle.study, counted).started() < target:
        return "partial", f"the study has not spent its budget of {target} trials ({summary.counts['complete']} complete)"
    return "complete", None


def _may_still_run(trial: Any, handle: StudyHandle) -> bool:
    """A RUNNING trial of a journal whose process is gone will never finish (the next run
    fails it); on a database only the heartbeat can tell, so it may."""
    from hptune.processes import is_alive
    from hptune.trials import ATTR_WORKER

    worker = trial.user_attrs.get(ATTR_WORKER)
    return not handle.journal or worker is None or is_alive(str(worker), trial.datetime_start)


def _write(
    exp: ValidatedExperiment,
    handle: StudyHandle,
    setup: Setup,
    summary: outputs.Summary,
    stop: Stop | None,
    rules: StopRules,
    fitted: Refit | None,
    started_at: datetime,
    timings: dict[str, float],
) -> RunResult:
    """Write the set of outputs (see hptune.outputs for the rule that keeps it coherent)."""
    spec = exp.spec
    goal = handle.goal
    best = summary.best
    status, partial_reason = _status(stop, summary, handle, rules)
    if fitted is not None:
        timings = {**timings, "refit": fitted.seconds}
    test_scores = fitted.test_scores if fitted is not None else {}
    test_score = test_scores.get(goal.metric)
    metadata = _metadata(exp, handle, setup, started_at, status, stop)
    document = None
    if best is not None:
        assert summary.cv_score is not None and summary.cv_std is not None
        document = results.best_document(
            name=spec.name,
            estimator=exp.estimator_path,
            preprocessing=spec.model.preprocessing,
            metric=goal.metric,
            trial_number=best.number,
            cv_score=summary.cv_score,
            cv_std=summary.cv_std,
            train_score=summary.train_score,
            test_score=test_score,
            params={**exp.fixed_params, **summary.best_params},
            stage=None if spec.refine is None else best.user_attrs.get(ATTR_STAGE, "search"),
        )
        metadata.update(
            best_trial=best.number,
            cv_score=summary.cv_score,
            cv_std=summary.cv_std,
            train_score=summary.train_score,
            test_score=test_score,
            test_scores=test_scores,
            model_refitted=fitted is not None,
        )
        if fitted is not None:
            metadata["refit_during_search"] = fitted.during_search
            metadata["refit_warnings"] = fitted.warnings
    if partial_reason is not None:
        metadata["partial_because"] = partial_reason
    finished_at = datetime.now(timezone.utc)
    metadata["finished_at"] = finished_at.isoformat(timespec="seconds")
    metadata["duration_seconds"] = round((finished_at - started_at).total_seconds(), 3)
    metadata["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
    metadata["trials"] = summary.counts
    files = outputs.write_set(exp.output_dir, summary, document, fitted, metadata)
    if handle.journal:
        files["study"] = exp.output_dir / results.STUDY_FILE
    return RunResult(
        output_dir=exp.output_dir,
        status=status,
        stop_reason=None if stop is None else stop.reason.value,
        stop_detail="" if stop is None else stop.detail,
        strategy=exp.spec.strategy.kind,
        auto_strategy=exp.auto_strategy,
        metric=goal.metric,
        best_trial=None if best is None else best.number,
        best_params=summary.best_params,
        cv_score=summary.cv_score,
        cv_std=summary.cv_std,
        train_score=summary.train_score,
        test_score=test_score,
        table=summary.table,
        counts=summary.counts,
        files=files,
        failures=summary.failures,
        refit_warnings=fitted.warnings if fitted is not None else [],
        model_trial=metadata.get("model_trial"),
        partial_reason=partial_reason,
    )


def _metadata(
    exp: ValidatedExperiment, handle: StudyHandle, setup: Setup, started_at: datetime, status: str, stop: Stop | None
) -> dict[str, Any]:
    spec = exp.spec
    return {
        "status": status,
        "stop_reason": None if stop is None else stop.reason.value,
        "stop_detail": None if stop is None else stop.detail,
        "hptune": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {
            name: _version(name)
            for name in ("scikit-learn", "optuna", "numpy", "pandas", "scipy", "pydantic", "joblib")
        },
        "experiment": {
            "name": spec.name,
            "file": str(exp.path),
            "file_sha256": exp.file_sha256,
            "fingerprint": digest(fingerprint_parts(exp)),
        },
        "data": {
            "source": exp.data.source,
            "sha256": exp.data.sha256,
            "rows": exp.data.n_rows,
            "features": int(exp.data.X.shape[1]),
            "train_rows": len(setup.split.y_train),
            "test_rows": 0 if setup.split.y_test is None else len(setup.split.y_test),
            # What each process could keep of the folds between trials (strategy.cache_mb).
            "fold_cache_mb_per_process": round(setup.ctx.cache_bytes / 2**20, 1),
        },
        "study": {
            "name": spec.name,
            "storage": handle.where,  # a database URL with its password masked
            "sampler": spec.strategy.kind,
            "chosen_by_auto": exp.auto_strategy,  # why strategy.kind: auto chose it (null: not auto)
            "pruner": pruner_name(spec.strategy),
            "start_from": [point.source for point in exp.start_points],
            "workers": handle.workers,
        },
        "command": [_mask_argument(a) for a in sys.argv],
        "started_at": started_at.isoformat(timespec="seconds"),
    }


def _mask_argument(argument: str) -> str:
    return storage_mod.mask_url(argument) if storage_mod.is_database_url(argument) else argument


def _all_failed_message(failures: list[tuple[str, int, str]]) -> str:
    total = sum(count for _, count, _ in failures)
    if not failures:
        return "no trial completed (the time budget may have run out before the first one finished)"
    message, count, _ = failures[0]
    lines = [
        f"all {total} trials failed; the model is likely misconfigured. "
        f"Most common error ({count} of {total}): {message}"
    ]
    for other, other_count, _ in failures[1:3]:
        lines.append(f"  also ({other_count}x): {other}")
    return "\n".join(lines)


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
