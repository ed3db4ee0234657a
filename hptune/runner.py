"""Run an experiment: open (or resume) the study, run the trials, refit the best, write outputs.

The study lives in Optuna storage: a journal file in the output folder by default, or a
database (``output.storage``) that workers on many machines share. ``strategy.n_jobs``
worker *processes* share the study through that storage; the parent creates the study once,
forks the workers (which inherit the loaded data), shows progress, and writes the outputs.
The library reports progress through a callback and never prints.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hptune import __version__, results
from hptune import storage as storage_mod
from hptune.errors import RunFailedError, RunInterruptedError, StudyMismatchError
from hptune.trials import (
    ATTR_ERROR,
    ATTR_GRID_POINT,
    ATTR_INTERRUPTED,
    ATTR_WORKER,
    STUDY_EXTRA_BUDGET,
    STUDY_FINGERPRINT,
    STUDY_FINGERPRINT_PARTS,
    STUDY_GRID_QUEUED,
    STUDY_RETRIED_FAILURES,
    best_trial,
    count_states,
    finished,
    is_interrupted,
    requeue,
    requeue_dead,
)
from hptune.validate import ValidatedExperiment

log = logging.getLogger(__name__)

#: Failure-rate limits are checked only once this many trials have finished.
MIN_TRIALS_FOR_FAILURE_RATE = 5
#: A RUNNING trial with no worker recorded is taken as dead only after this long (seconds):
#: a live worker records itself a moment after Optuna creates the trial.
_UNCLAIMED_TRIAL_AGE = 30
#: How long to wait for another worker to enqueue the grid before giving up (seconds).
_GRID_WAIT = 120


@dataclass
class RunOptions:
    """How to treat a study that already exists, and what to do on stops."""

    resume: bool = True  # False: refuse to continue an existing study
    fresh: bool = False  # move an existing study and outputs aside, start over
    retry_failed: bool = False  # run the parameters of failed trials again
    refit_on_interrupt: bool = False  # refit the best model even after Ctrl-C
    worker_index: int | None = None  # this process's index among many machines (sampler seeds)


@dataclass
class Progress:
    """Sent to the progress callback at the start and as trials finish."""

    done: int
    total: int
    best_score: float | None
    started: bool = True
    resumed_from: int = 0
    requeued: int = 0


@dataclass
class RunResult:
    """What a run produced, for the CLI (or a notebook) to show."""

    output_dir: Path
    status: str
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


def fingerprint_parts(exp: ValidatedExperiment) -> dict[str, str]:
    """A short hash of each part of the experiment that changes results.

    The budget (n_trials, timeout), n_jobs, failure limits and where things are stored are
    left out: changing them continues the same study.
    """
    spec = exp.spec.model_dump(mode="json")
    parts = {
        "data": {"spec": spec["data"], "sha256": exp.data.sha256},
        "task": exp.task,
        "model": {"estimator": exp.estimator_path, **spec["model"]},
        "search_space": spec["search_space"],
        "metric": [exp.metric, *spec["extra_metrics"]],
        "cv": spec["cv"],
        "seed": spec["seed"],
        "strategy": spec["strategy"]["kind"],
    }
    return {name: _digest(value)[:16] for name, value in parts.items()}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def make_sampler(kind: str, seed: int, parallel: bool = False) -> Any:
    import optuna

    if kind == "bayesian":
        # constant_liar keeps parallel workers from all proposing the same promising point.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=parallel)
    if kind == "cmaes":
        # Categorical parameters are outside CMA-ES; they fall back to random sampling.
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if kind == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    # random, and grid: every grid trial is enqueued, so the sampler never draws a value.
    return optuna.samplers.RandomSampler(seed=seed)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(n_jobs: int) -> int:
    return available_cores() if n_jobs == -1 else n_jobs


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
    session = open_study(exp, options)
    session.refit_ahead = True
    setup_seconds = time.perf_counter() - clock

    search_clock = time.perf_counter()
    interrupted = False
    try:
        session.run_trials(setup, on_progress)
        # With a shared database, other machines' trials may still run; one that dies is failed
        # by the heartbeat and queued again, so keep working until the budget is really spent.
        while session.wait_for_other_workers() and session.more_to_do():
            session.run_trials(setup, on_progress)
    except KeyboardInterrupt:
        interrupted = True
    search_seconds = time.perf_counter() - search_clock

    tripped = session.failure_limit_tripped()
    status = "interrupted" if interrupted else "stopped" if tripped else "complete"
    result = write_outputs(
        exp,
        session,
        setup,
        status=status,
        refit=status == "complete" or (interrupted and options.refit_on_interrupt),
        started_at=started_at,
        timings={"setup": setup_seconds, "search": search_seconds},
    )
    result.resumed_from = session.done_before
    result.moved_aside = session.moved_aside
    error: RunFailedError | RunInterruptedError | None = None
    if interrupted:
        error = RunInterruptedError(
            f"interrupted: {result.counts['complete']} complete trials are kept in {session.where}; "
            f"run the same command again to resume"
        )
    elif tripped:
        error = RunFailedError(f"stopped early: {tripped}")
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
    setup = prepare(exp)
    session = open_study(exp, options)
    try:
        session.run_trials(setup, on_progress)
    except KeyboardInterrupt:
        raise RunInterruptedError(
            f"worker interrupted; its trial in flight is queued again in {session.where}"
        ) from None
    tripped = session.failure_limit_tripped()
    if tripped:
        raise RunFailedError(f"stopped early: {tripped}")
    return count_states(session.study.get_trials(deepcopy=False))


def finalize_experiment(exp: ValidatedExperiment) -> RunResult:
    """Write trials.csv, best.yaml, model.joblib and run.json from an existing study."""
    started_at = datetime.now(timezone.utc)
    setup = prepare(exp)
    session = open_study(exp, RunOptions(), create=False)
    status = "complete" if session.budget.spent(session.study) else "partial"
    result = write_outputs(exp, session, setup, status=status, refit=True, started_at=started_at, timings={})
    if result.best_trial is None:
        error = RunFailedError(_all_failed_message(result.failures))
        error.result = result
        raise error
    return result


# -- setup -------------------------------------------------------------------------------

@dataclass
class Setup:
    """Everything trials share, built once: the split, folds and template pipeline."""

    split: Any
    ctx: Any


def prepare(exp: ValidatedExperiment) -> Setup:
    from hptune.cv import make_folds, make_splitter
    from hptune.data import split_holdout
    from hptune.estimators import build_pipeline
    from hptune.objective import CVContext

    spec = exp.spec
    split = split_holdout(exp.data, spec.data.test_size, spec.seed, exp.task, ordered=spec.cv.kind == "timeseries")
    splitter = make_splitter(spec.cv, exp.task, spec.seed, has_groups=split.groups_train is not None)
    ctx = CVContext(
        pipeline=build_pipeline(exp.estimator_class, exp.fixed_params, spec.model.preprocessing, split.X_train),
        X=split.X_train,
        y=split.y_train,
        folds=make_folds(splitter, split.X_train, split.y_train, split.groups_train),
        metrics=[exp.metric, *spec.extra_metrics],
        train_scores=spec.cv.train_scores,
        positive_class=spec.data.positive_class,
    )
    return Setup(split, ctx)


@dataclass
class Refit:
    """The best trial's parameters fitted on all training data, and its held-out scores."""

    trial: int
    model: Any
    test_scores: dict[str, float]
    seconds: float
    warnings: list[str] = field(default_factory=list)  # distinct, one line each
    during_search: bool = False  # made on a freed core while the last trials ran


def refit_trial(exp: ValidatedExperiment, setup: Setup, trial: Any, threads: int | None = None) -> Refit:
    """Fit ``trial``'s parameters on the whole training split and score the held-out split."""
    import warnings

    from hptune.objective import distinct_warnings, fit_pipeline
    from hptune.space import decode_params

    clock = time.perf_counter()
    split = setup.split
    params = decode_params(exp.spec.search_space, trial.params)
    # Kept for run.json and the summary, as a trial's are, instead of raw on stderr.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fit_pipeline(setup.ctx, params, split.X_train, split.y_train, threads=threads)
        test_scores: dict[str, float] = {}
        if split.X_test is not None:
            test_scores = {m: float(v) for m, v in setup.ctx.scorer(model, split.X_test, split.y_test).items()}
    return Refit(trial.number, model, test_scores, time.perf_counter() - clock, distinct_warnings(caught))


def open_storage(exp: ValidatedExperiment) -> Any:
    url = exp.spec.output.storage
    if url:
        return storage_mod.database_storage(url, on_stale_trial=requeue_dead)
    exp.output_dir.mkdir(parents=True, exist_ok=True)
    return storage_mod.journal_storage(exp.output_dir / results.STUDY_FILE)


def describe_storage(exp: ValidatedExperiment) -> str:
    url = exp.spec.output.storage
    return storage_mod.mask_url(url) if url else str(exp.output_dir / results.STUDY_FILE)


def open_study(exp: ValidatedExperiment, options: RunOptions, create: bool = True) -> _Session:
    """Open (creating if needed) the study, check it is this experiment's, tidy it up."""
    import optuna

    spec = exp.spec
    moved = None
    if options.fresh:
        moved = _move_aside(exp)
    storage = open_storage(exp)
    workers = worker_count(spec.strategy.n_jobs)
    distributed = bool(spec.output.storage)
    index = options.worker_index
    if index is None:
        # Many machines must not share sampler seeds; one machine keeps runs reproducible.
        index = (hash((socket.gethostname(), os.getpid())) % 997) + 1 if distributed else 0
    base_seed = spec.seed + 1000 * index
    sampler = make_sampler(spec.strategy.kind, base_seed, parallel=workers > 1 or distributed)
    names = optuna.get_all_study_names(storage)
    existed = spec.name in names
    if not existed and not create:
        raise StudyMismatchError(f"{describe_storage(exp)} holds no study named {spec.name!r}; run the experiment first")
    study = optuna.create_study(
        study_name=spec.name, storage=storage, sampler=sampler, direction="maximize", load_if_exists=True
    )
    parts = fingerprint_parts(exp)
    stored = study.user_attrs.get(STUDY_FINGERPRINT_PARTS)
    if existed and not options.resume and study.get_trials(deepcopy=False):
        raise StudyMismatchError(
            f"{describe_storage(exp)} already holds a study with {len(study.get_trials(deepcopy=False))} trials "
            f"and --no-resume was given; use --fresh to start over (the old study is moved aside) "
            f"or choose another --out"
        )
    if stored is None:
        study.set_user_attr(STUDY_FINGERPRINT_PARTS, parts)
        study.set_user_attr(STUDY_FINGERPRINT, _digest(parts))
    elif stored != parts:
        changed = [name for name in parts if stored.get(name) != parts[name]]
        raise StudyMismatchError(
            f"{describe_storage(exp)} holds a study of a different experiment (changed: {', '.join(changed)}); "
            f"use --fresh to start over (the old study is moved aside) or choose another --out"
        )
    session = _Session(exp, study, storage, workers, base_seed, moved)
    if create:
        session.tidy(options)
    return session


def _move_aside(exp: ValidatedExperiment) -> str | None:
    """--fresh: keep the old study and outputs under another name; never delete them."""
    import optuna

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = exp.output_dir
    moved: str | None = None
    url = exp.spec.output.storage
    if url:
        storage = storage_mod.database_storage(url)
        names = optuna.get_all_study_names(storage)
        if exp.spec.name in names:
            moved = f"{exp.spec.name}.old-{stamp}"
            optuna.copy_study(from_study_name=exp.spec.name, from_storage=storage, to_storage=storage, to_study_name=moved)
            for name in names:
                if name == exp.spec.name or name.startswith(_grid_claim_prefix(exp.spec.name)):
                    optuna.delete_study(study_name=name, storage=storage)
            moved = f"study {moved} in {storage_mod.mask_url(url)}"
    present = [out / name for name in results.OWNED_FILES if (out / name).exists()]
    if present:
        target = out.parent / f"{out.resolve().name}.old-{stamp}"
        suffix = 1
        while target.exists():
            suffix += 1
            target = out.parent / f"{out.resolve().name}.old-{stamp}-{suffix}"
        target.mkdir(parents=True)
        for path in present:
            path.rename(target / path.name)
        moved = str(target) if moved is None else f"{moved} and {target}"
    return moved


def _grid_claim_prefix(name: str) -> str:
    return f"{name}.hptune-grid-claim-"


def _grid_claim_name(name: str, points: int) -> str:
    """The claim for enqueuing the grid up to ``points`` points (raising n_trials extends it)."""
    return f"{_grid_claim_prefix(name)}{points}"


# -- the session: one study, opened by this process ------------------------------------------

class _Session:
    def __init__(
        self, exp: ValidatedExperiment, study: Any, storage: Any, workers: int, seed: int, moved: str | None
    ) -> None:
        from hptune.objective import Budget

        self.exp, self.study, self.storage = exp, study, storage
        self.workers, self.seed = workers, seed
        self.moved_aside = moved
        self.where = describe_storage(exp)
        self.budget = Budget(exp.n_trials, grid=exp.grid is not None)
        self.requeued = 0
        self.done_before = 0
        self.deadline: float | None = None
        # Refit the best so far on a core freed by a worker that ran out of budget (set by
        # run_experiment, which refits; a --worker does not).
        self.refit_ahead = False
        self.early_refit: Refit | None = None

    @property
    def journal(self) -> bool:
        return not self.exp.spec.output.storage

    # -- tidying, once when a process opens the study
    def tidy(self, options: RunOptions) -> None:
        """Fail trials whose process died (re-running them once), queue failed trials again on
        --retry-failed, and enqueue the grid the first time."""
        self.requeued = self.fail_dead_trials()
        if self.requeued:
            log.info("failed %d trial(s) left running by dead processes; queued them again", self.requeued)
        if options.retry_failed:
            self._retry_failures()
        if self.exp.grid is not None:
            self._enqueue_grid()
        self.done_before = len(finished(self.study.get_trials(deepcopy=False)))

    def fail_dead_trials(self) -> int:
        """Journal storage: a RUNNING trial whose process on this machine is gone is failed as
        interrupted and queued to run again. (Databases do this with Optuna's heartbeat.)"""
        if not self.journal:
            storage_mod.fail_stale_trials(self.study)
            return 0
        import optuna
        from optuna.trial import TrialState

        host = socket.gethostname()
        now = datetime.now()
        count = 0
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get(ATTR_WORKER)
            if worker is None:
                started = trial.datetime_start or now
                if now - started < timedelta(seconds=_UNCLAIMED_TRIAL_AGE):
                    continue
            else:
                worker_host, _, pid = str(worker).partition(":")
                if worker_host != host or _alive(int(pid)):
                    continue
            try:
                self.storage.set_trial_user_attr(trial._trial_id, ATTR_INTERRUPTED, True)
                self.storage.set_trial_user_attr(
                    trial._trial_id, ATTR_ERROR, "interrupted: the process running this trial stopped (killed or crashed)"
                )
                self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another process got there first, and re-queued it
            requeue_dead(self.study, trial)
            count += 1
        return count

    def _retry_failures(self) -> None:
        from optuna.trial import TrialState

        done = set(self.study.user_attrs.get(STUDY_RETRIED_FAILURES, []))
        retried = 0
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if trial.number in done or is_interrupted(trial):
                continue
            requeue(self.study, trial, "failed")
            done.add(trial.number)
            retried += 1
        if retried:
            self.study.set_user_attr(STUDY_RETRIED_FAILURES, sorted(done))
            extra = int(self.study.user_attrs.get(STUDY_EXTRA_BUDGET, 0))
            self.study.set_user_attr(STUDY_EXTRA_BUDGET, extra + retried)

    def _enqueue_grid(self) -> None:
        """Queue the grid's first n_trials points, once in total, in ParameterGrid order: each
        point runs exactly once however many workers pop the queue, and ties break as in
        GridSearchCV. Raising n_trials later queues the points not yet queued."""
        from hptune.space import encode_params

        exp = self.exp
        assert exp.grid is not None
        wanted = min(exp.n_trials, len(exp.grid))
        if int(self.study.user_attrs.get(STUDY_GRID_QUEUED, 0)) >= wanted:
            return
        # Whichever process wins the claim enqueues; the others wait until it is done.
        if storage_mod.claim(self.storage, _grid_claim_name(exp.spec.name, wanted)):
            queued = {
                t.user_attrs[ATTR_GRID_POINT] for t in self.study.get_trials(deepcopy=False)
                if ATTR_GRID_POINT in t.user_attrs
            }
            for index in range(wanted):
                if index not in queued:
                    self.study.enqueue_trial(
                        encode_params(exp.spec.search_space, exp.grid[index]), user_attrs={ATTR_GRID_POINT: index}
                    )
            self.study.set_user_attr(STUDY_GRID_QUEUED, wanted)
            return
        deadline = time.monotonic() + _GRID_WAIT
        while int(self.study.user_attrs.get(STUDY_GRID_QUEUED, 0)) < wanted:
            if time.monotonic() > deadline:
                raise StudyMismatchError(
                    f"another worker claimed {self.where} to enqueue the grid but did not finish; "
                    f"start over with --fresh"
                )
            time.sleep(0.2)

    # -- running
    def run_trials(self, setup: Setup, on_progress: Callable[[Progress], None] | None) -> None:
        timeout = self.exp.spec.strategy.timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        progress = _ProgressReporter(self, on_progress)
        progress.send(started=False)
        if self.workers == 1:
            self._trials_in_process(setup, threads=None, callbacks=[progress.callback])
        else:
            self._trials_in_workers(setup, progress)
            # A worker that died leaves budget unspent (its trial was queued again): finish here.
            if self.more_to_do():
                self.fail_dead_trials()
                self._trials_in_process(setup, threads=None, callbacks=[progress.callback])
        progress.send()

    def _timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _trials_in_process(self, setup: Setup, threads: int | None, callbacks: list[Any]) -> None:
        from hptune.objective import Objective

        if self.budget.spent(self.study) or self._timed_out():
            return
        limits: Any = nullcontext()
        if threads is not None:
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(limits=threads)
        remaining = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        with limits, _interrupts_as_keyboard_interrupt():
            self.study.optimize(
                Objective(setup.ctx, self.exp.spec.search_space, grid=self.exp.grid is not None, budget=self.budget),
                n_trials=None,
                timeout=remaining,
                catch=(Exception,),
                callbacks=[self._stop_when_done, *callbacks],
            )

    def _stop_when_done(self, study: Any, trial: Any) -> None:
        if self.budget.spent(study) or self.failure_limit_tripped():
            study.stop()

    def _trials_in_workers(self, setup: Setup, progress: _ProgressReporter) -> None:
        import multiprocessing
        from multiprocessing.connection import wait

        # fork: workers inherit the loaded data and imported libraries, so they start at once
        # (no OpenMP pool has run in this process yet, which is what makes fork unsafe).
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        threads = self.exp.spec.strategy.threads_per_worker or max(1, available_cores() // self.workers)
        processes = [
            context.Process(
                target=_worker_main,
                args=(self.exp, setup, self.seed + index, threads, self.deadline),
                name=f"hptune-worker-{index}",
            )
            for index in range(self.workers)
        ]
        log.info("starting %d worker processes (%s), %d thread(s) each", self.workers, method, threads)
        for process in processes:
            process.start()
        try:
            last_tidy = time.monotonic()
            live = list(processes)
            while live:
                ended = wait([p.sentinel for p in live], timeout=0.5)
                # is_alive() reaps an ended worker: until then its pid is a zombie and looks alive.
                live = [p for p in live if p.is_alive()]
                progress.send()
                # A worker that ended (killed, perhaps) may leave its trial RUNNING: fail it and
                # queue it again at once, so the workers still running pick it up.
                if self.journal and (ended or time.monotonic() - last_tidy > 5):
                    self.fail_dead_trials()
                    last_tidy = time.monotonic()
                if self.refit_ahead and self.early_refit is None and 0 < len(live) < len(processes):
                    self._refit_while_the_last_trials_run(setup, threads)
        except KeyboardInterrupt:
            _stop(processes)
            raise
        finally:
            for process in processes:
                process.join(timeout=5)

    def _refit_while_the_last_trials_run(self, setup: Setup, threads: int) -> None:
        """A worker stopped because every trial of the budget has started: while the others
        finish theirs, refit the best trial so far on the core it freed. If that trial is still
        the best at the end, the refit is done already (the usual case); if not, it is redone."""
        if not self.budget.spent(self.study):
            return
        best = best_trial(self.study.get_trials(deepcopy=False))
        if best is None:
            return
        try:
            refit = refit_trial(self.exp, setup, best, threads=threads)
        except Exception:  # the refit after the search reports it, if it fails again
            log.debug("refit during the search failed", exc_info=True)
            return
        refit.during_search = True
        self.early_refit = refit

    def wait_for_other_workers(self) -> bool:
        """With a shared database, wait for the trials other machines still run (bounded by
        Optuna's heartbeat: a dead worker's trial fails after the grace period). True if any
        was waited for."""
        if self.journal:
            return False
        from optuna.trial import TrialState

        waited = False
        while self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            waited = True
            storage_mod.fail_stale_trials(self.study)
            time.sleep(1)
        return waited

    def more_to_do(self) -> bool:
        return not self.budget.spent(self.study) and not self.failure_limit_tripped() and not self._timed_out()

    def failure_limit_tripped(self) -> str | None:
        strategy = self.exp.spec.strategy
        if strategy.max_failures is None and strategy.max_failure_rate is None:
            return None
        return _failure_limit(self.exp, self.study.get_trials(deepcopy=False))


def _worker_main(exp: ValidatedExperiment, setup: Setup, seed: int, threads: int, deadline: float | None) -> None:
    """A worker process: its own storage connection and sampler seed, limited threads."""
    import signal

    import optuna

    from hptune.estimators import cap_n_jobs

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(exp)
    study = optuna.load_study(
        study_name=exp.spec.name, storage=storage, sampler=make_sampler(exp.spec.strategy.kind, seed, parallel=True)
    )
    cap_n_jobs(setup.ctx.pipeline, threads)  # this worker's share of the cores
    session = _Session(exp, study, storage, workers=1, seed=seed, moved=None)
    session.deadline = deadline
    try:
        session._trials_in_process(setup, threads=threads, callbacks=[])
    except KeyboardInterrupt:
        sys.exit(130)


@contextmanager
def _interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """Let an interrupt that Optuna garbled reach the callers as the KeyboardInterrupt it is."""
    try:
        yield
    except Exception as exc:
        if _caused_by_interrupt(exc):
            raise KeyboardInterrupt from exc
        raise


def _caused_by_interrupt(exc: BaseException) -> bool:
    """True when ``exc`` was raised while a KeyboardInterrupt was being handled.

    A second Ctrl-C that lands inside Optuna's ``tell`` surfaces as an UnboundLocalError from
    its ``finally`` (``updated_state`` is never set), with the KeyboardInterrupt as context.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop(processes: list[Any]) -> None:
    """Ctrl-C reaches every worker from the terminal; SIGTERM reached only us: pass it on."""
    import signal

    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(p.is_alive() for p in processes):
        time.sleep(0.05)
    for process in processes:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGINT)
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _failure_limit(exp: ValidatedExperiment, trials: list[Any]) -> str | None:
    from optuna.trial import TrialState

    strategy = exp.spec.strategy
    ended = finished(trials)
    failed = sum(t.state == TrialState.FAIL for t in ended)
    if strategy.max_failures is not None and failed > strategy.max_failures:
        return f"{failed} trials failed, more than strategy.max_failures ({strategy.max_failures})"
    rate = strategy.max_failure_rate
    if rate is not None and len(ended) >= MIN_TRIALS_FOR_FAILURE_RATE and failed / len(ended) > rate:
        return f"{failed} of {len(ended)} trials failed, more than strategy.max_failure_rate ({rate:g})"
    return None


class _ProgressReporter:
    """Counts finished trials of the whole study (all workers) and forwards them."""

    def __init__(self, session: _Session, sink: Callable[[Progress], None] | None) -> None:
        self.session, self.sink = session, sink
        self.last: tuple[int, float | None] | None = None

    def send(self, started: bool = True) -> None:
        if self.sink is None:
            return
        session = self.session
        trials = session.study.get_trials(deepcopy=False)
        done = len(finished(trials))
        best = best_trial(trials)
        state = (done, None if best is None else best.value)
        if started and state == self.last:
            return
        self.last = state
        self.sink(
            Progress(
                done=done,
                total=max(done, session.budget.target(session.study)),
                best_score=state[1],
                started=started,
                resumed_from=session.done_before,
                requeued=session.requeued,
            )
        )

    def callback(self, study: Any, trial: Any) -> None:
        self.send()


# -- outputs -----------------------------------------------------------------------------

def write_outputs(
    exp: ValidatedExperiment,
    session: _Session,
    setup: Setup,
    status: str,
    refit: bool,
    started_at: datetime,
    timings: dict[str, float],
) -> RunResult:
    """Write trials.csv, run.json and (when a trial completed) best.yaml and model.joblib."""
    import numpy as np

    spec = exp.spec
    out = exp.output_dir
    metric = exp.metric
    trials = session.study.get_trials(deepcopy=False)
    table = results.trials_table(trials, list(spec.search_space), setup.ctx.metrics, spec.cv.train_scores)
    files = {"trials": out / results.TRIALS_FILE}
    if session.journal:
        files["study"] = out / results.STUDY_FILE
    results.write_trials_csv(files["trials"], table)
    counts = count_states(trials)
    failures = results.group_failures(trials)
    best = best_trial(trials)
    if best is None and status == "complete":
        status = "failed"
    metadata = _metadata(exp, session, setup, started_at, status)

    best_params: dict[str, Any] = {}
    refit_warnings: list[str] = []
    cv_score = cv_std = train_score = test_score = None
    if best is not None:
        from hptune.space import decode_params

        best_params = decode_params(spec.search_space, best.params)
        cv = best.user_attrs[results.ATTR_CV]
        cv_score = float(np.mean(cv["test"][metric]))
        cv_std = float(np.std(cv["test"][metric]))
        train_score = float(np.mean(cv["train"][metric])) if spec.cv.train_scores else None
        test_scores: dict[str, float] = {}
        if refit:
            # A refit made while the last trials ran is used when its trial is still the best.
            early = session.early_refit
            fitted = early if early is not None and early.trial == best.number else refit_trial(exp, setup, best)
            test_scores = fitted.test_scores
            import joblib

            buffer = io.BytesIO()
            joblib.dump(fitted.model, buffer)
            files["model"] = out / results.MODEL_FILE
            results.write_atomic(files["model"], buffer.getvalue())
            timings = {**timings, "refit": fitted.seconds}
            metadata["refit_during_search"] = fitted.during_search
            metadata["refit_warnings"] = refit_warnings = fitted.warnings
        test_score = test_scores.get(metric)
        document = results.best_document(
            name=spec.name,
            estimator=exp.estimator_path,
            preprocessing=spec.model.preprocessing,
            metric=metric,
            trial_number=best.number,
            cv_score=cv_score,
            cv_std=cv_std,
            train_score=train_score,
            test_score=test_score,
            params={**exp.fixed_params, **best_params},
        )
        files["best"] = out / results.BEST_FILE
        results.write_atomic(files["best"], results.best_yaml_text(document))
        metadata.update(
            best_trial=best.number,
            cv_score=cv_score,
            cv_std=cv_std,
            train_score=train_score,
            test_score=test_score,
            test_scores=test_scores,
            model_refitted=bool(refit),
        )
    finished_at = datetime.now(timezone.utc)
    metadata["finished_at"] = finished_at.isoformat(timespec="seconds")
    metadata["duration_seconds"] = round((finished_at - started_at).total_seconds(), 3)
    metadata["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
    metadata["trials"] = counts
    files["run"] = out / results.RUN_FILE
    results.write_atomic(files["run"], results.json_text(metadata))
    return RunResult(
        output_dir=out,
        status=status,
        metric=metric,
        best_trial=None if best is None else best.number,
        best_params=best_params,
        cv_score=cv_score,
        cv_std=cv_std,
        train_score=train_score,
        test_score=test_score,
        table=table,
        counts=counts,
        files=files,
        failures=failures,
        refit_warnings=refit_warnings,
    )


def _metadata(
    exp: ValidatedExperiment, session: _Session, setup: Setup, started_at: datetime, status: str
) -> dict[str, Any]:
    spec = exp.spec
    parts = fingerprint_parts(exp)
    return {
        "status": status,
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
            "file_sha256": hashlib.sha256(exp.path.read_bytes()).hexdigest(),
            "fingerprint": _digest(parts),
        },
        "data": {
            "source": exp.data.source,
            "sha256": exp.data.sha256,
            "rows": exp.data.n_rows,
            "features": int(exp.data.X.shape[1]),
            "train_rows": len(setup.split.y_train),
            "test_rows": 0 if setup.split.y_test is None else len(setup.split.y_test),
        },
        "study": {
            "name": spec.name,
            "storage": session.where,  # a database URL with its password masked
            "sampler": spec.strategy.kind,
            "workers": session.workers,
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
