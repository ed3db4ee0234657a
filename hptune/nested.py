"""Nested cross-validation of the whole tuning procedure: what does *tuning* score on new data?

The best trial's CV score is optimistic: it is the highest of many noisy estimates, chosen on
the very folds that score it. Nested CV splits the training part into outer folds (drawn like
the held-out split: ``hptune.folds.outer_kind``). Each outer fold runs a search of its own on
its training rows alone, with the experiment's space, sampler kind, pruner, stop rules and inner
CV, ``evaluation.nested_trials`` trials in an in-memory study; then it refits its best on those
rows and scores it once on the outer test rows, which no part of its search saw. The mean of
those scores estimates what the procedure's model scores on new data.

Each outer fold's search samples with a seed derived from the experiment's seed and the fold's
index alone (``samplers.nested_seed``), so folds run in any order, here or in ``strategy.n_jobs``
processes, with the same results. Each fold's result is stored in the study as it ends, keyed by
a hash of everything it depends on: an interrupted evaluation resumes at the folds not done,
and a finished experiment run again reads its estimate back instead of computing another.

Left out of the inner searches: ``strategy.start_from`` (points chosen by a search on every
training row, the outer test rows included: running them would leak those rows into the
estimate) and the timeout (a wall-clock limit would make the estimate depend on the machine).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hptune.crossval import CVContext, Setup, cache_bytes_per_process, worker_count
from hptune.data import Split
from hptune.fingerprint import digest, fingerprint_parts
from hptune.folds import Folds, build_outer_folds, cv_folds, outer_kind, outer_part
from hptune.samplers import make_pruner, make_sampler, nested_seed, pruner_name
from hptune.trials import STUDY_NESTED_FOLD
from hptune.validate import ValidatedExperiment

log = logging.getLogger(__name__)

#: Part of every stored fold's key: raised when an outer fold is computed differently, so a
#: study's stored folds are computed again rather than mixed with new ones.
VERSION = 1


@dataclass
class OuterFold:
    """One outer fold: its search's best, refitted on the fold's training rows, scored on its test rows."""

    index: int
    score: float | None  # the main metric on the outer test rows (None: the fold failed)
    inner_cv_score: float | None  # the inner best's own CV score: what its search believed
    params: dict[str, Any]  # the inner best's parameters
    trials: int  # inner trials that ran to an end
    seconds: float
    error: str | None = None
    reused: bool = field(default=False, compare=False)  # read back from the study, not computed now


@dataclass
class NestedProgress:
    """Sent as each outer fold ends (or is read back from the study)."""

    fold: OuterFold
    done: int
    total: int


@dataclass
class NestedEstimate:
    """The outer folds' scores, and what run.json and the summary say of them."""

    metric: str
    outer_split: str  # stratified, kfold, group or timeseries
    trials_per_fold: int  # each inner search's budget (a grid's points)
    refine_trials_per_fold: int  # and its refine stage's (0: no refine)
    folds: list[OuterFold]
    seconds: float

    @property
    def error(self) -> str | None:
        failed = [f for f in self.folds if f.error is not None]
        return None if not failed else f"outer fold {failed[0].index}: {failed[0].error}"

    @property
    def scores(self) -> list[float]:
        return [f.score for f in self.folds if f.score is not None]

    @property
    def mean(self) -> float | None:
        import numpy as np

        return None if self.error is not None else float(np.mean(self.scores))

    @property
    def std(self) -> float | None:
        import numpy as np

        return None if self.error is not None else float(np.std(self.scores))

    def record(self, tuned_cv_score: float | None) -> dict[str, Any]:
        """run.json's ``nested``: the estimate beside the tuned CV score, and their difference."""
        mean = self.mean
        record: dict[str, Any] = {
            "folds": len(self.folds),
            "outer_split": self.outer_split,
            "trials_per_fold": self.trials_per_fold,
            "metric": self.metric,
            "scores": [f.score for f in self.folds],
            "mean": mean,
            "std": self.std,
            "tuned_cv_score": tuned_cv_score,
            "optimism": None if mean is None or tuned_cv_score is None else tuned_cv_score - mean,
            "inner_cv_scores": [f.inner_cv_score for f in self.folds],
            "inner_trials": [f.trials for f in self.folds],
            "params": [f.params for f in self.folds],
            "reused_folds": sum(f.reused for f in self.folds),
            "error": self.error,
        }
        if self.refine_trials_per_fold:
            record["refine_trials_per_fold"] = self.refine_trials_per_fold
        return record


def inner_budget(exp: ValidatedExperiment) -> tuple[int, int]:
    """Each inner search's trials and its refine stage's: ``nested_trials`` (a grid runs the
    main search's points instead), and ``refine.n_trials`` scaled as ``nested_trials`` scales
    ``n_trials`` (at least one), so the inner procedure keeps the main one's proportions."""
    assert exp.spec.evaluation is not None
    if exp.grid is not None:
        return exp.n_trials, 0
    trials, refine = exp.spec.evaluation.nested_trials, exp.spec.refine
    return trials, 0 if refine is None else max(1, round(refine.n_trials * trials / exp.n_trials))


def result_key(exp: ValidatedExperiment) -> str:
    """A hash of everything an outer fold's result depends on; not n_jobs, threads or the timeout."""
    spec = exp.spec
    assert spec.evaluation is not None
    strategy = spec.strategy
    return digest({
        "version": VERSION,
        "experiment": fingerprint_parts(exp),  # data, task, model, space, metrics, cv, seed, kind, refine
        "pruner": [pruner_name(strategy), strategy.pruner_percentile],
        "stop": spec.stop.model_dump(),
        "failures": [strategy.max_failures, strategy.max_failure_rate],
        "outer_folds": spec.evaluation.nested_folds,
        "budget": inner_budget(exp),
    })[:16]


def evaluate_nested(
    exp: ValidatedExperiment, study: Any, setup: Setup, on_fold: Callable[[NestedProgress], None] | None = None
) -> NestedEstimate:
    """Run (or read back from ``study``) every outer fold of ``exp``'s nested CV.

    Folds run in ``strategy.n_jobs`` processes (one fold each at a time) or, at n_jobs 1, in
    this process; each result is stored in ``study`` as it ends. A fold whose search completed
    no trial, or whose refit failed, carries its error, and the estimate says so (``error``).
    """
    spec = exp.spec
    clock = time.perf_counter()
    key = result_key(exp)
    outer = build_outer_folds(spec, exp.task, setup.split)
    done: dict[int, OuterFold] = {}

    def finished(fold: OuterFold) -> None:
        if fold.error is None and not fold.reused:
            study.set_user_attr(f"{STUDY_NESTED_FOLD}{fold.index}", {"key": key, **asdict(fold, dict_factory=_stored)})
        done[fold.index] = fold
        log.info("nested cv: outer fold %d done (%d of %d): %s", fold.index, len(done), len(outer),
                 fold.error or f"{exp.metric} {fold.score:.6g}")
        if on_fold is not None:
            on_fold(NestedProgress(fold, len(done), len(outer)))

    stored = study.user_attrs
    for index in range(len(outer)):
        found = stored.get(f"{STUDY_NESTED_FOLD}{index}")
        if isinstance(found, dict) and found.get("key") == key:
            finished(OuterFold(**{k: v for k, v in found.items() if k != "key"}, reused=True))
    todo = [index for index in range(len(outer)) if index not in done]
    workers = min(worker_count(spec.strategy.n_jobs), len(todo))
    job = _Job(
        # The data reaches a worker once, as the training part; the experiment goes without it.
        exp=replace(exp, data=None, split=None, folds=None, start_points=[], baseline=None),  # type: ignore[arg-type]
        pipeline=setup.ctx.pipeline,
        split=Split(setup.split.X_train, setup.split.y_train, setup.split.groups_train, None, None),
        outer=outer,
        cache_bytes=cache_bytes_per_process(spec.strategy.cache_mb, max(1, workers)),
    )
    if workers > 1:
        _in_processes(job, todo, workers, finished)
    else:
        for index in todo:
            finished(run_outer_fold(job, index))
    trials, refine_trials = inner_budget(exp)
    kind = outer_kind(spec, exp.task, setup.split.groups_train is not None)
    return NestedEstimate(exp.metric, kind, trials, refine_trials, [done[i] for i in range(len(outer))],
                          time.perf_counter() - clock)


def folds_stored(exp: ValidatedExperiment, study: Any) -> int:
    """How many outer folds of ``exp``'s nested CV the study holds (after an interruption, say)."""
    assert exp.spec.evaluation is not None
    key, stored = result_key(exp), study.user_attrs
    return sum(
        isinstance(found, dict) and found.get("key") == key
        for found in (stored.get(f"{STUDY_NESTED_FOLD}{i}") for i in range(exp.spec.evaluation.nested_folds))
    )


def _stored(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {name: value for name, value in items if name != "reused"}


@dataclass
class _Job:
    """What every outer fold needs, sent once to each worker process."""

    exp: ValidatedExperiment  # without its data (the training part travels as ``split``)
    pipeline: Any  # the template pipeline (unfitted)
    split: Split  # the training part, which the outer folds index
    outer: Folds
    cache_bytes: int
    threads: int | None = None  # per worker process; None: in this process, unlimited


def run_outer_fold(job: _Job, index: int) -> OuterFold:
    """Outer fold ``index``: search its training rows in memory, refit the best there, score it
    on the fold's test rows."""
    import optuna

    from hptune.execution import optimize_here
    from hptune.ranking import Goal
    from hptune.refit import refit_trial
    from hptune.results import group_failures
    from hptune.stopping import Budget, StopReason, StopRules
    from hptune.trials import finished as ran_to_an_end

    clock = time.perf_counter()
    exp, spec = job.exp, job.exp.spec
    part = outer_part(job.split, *job.outer[index])
    # What the main search's trials measure, so objectives and constraints judge alike; train
    # scores only when a constraint reads them (they cost a second scoring per fold).
    limits = spec.constraints
    ctx = CVContext(pipeline=job.pipeline, X=part.X_train, y=part.y_train, folds=cv_folds(spec, exp.task, part),
                    metrics=exp.metrics, train_scores=limits is not None and limits.max_overfit_gap is not None,
                    positive_class=spec.data.positive_class, cache_bytes=job.cache_bytes,
                    measure_size="model_mb" in exp.objectives or (limits is not None and limits.max_model_mb is not None),
                    measure_predict="predict_time" in exp.objectives)
    setup, goal, seed = Setup(part, ctx), Goal.for_experiment(exp), nested_seed(spec.seed, index)
    study = optuna.create_study(sampler=make_sampler(spec.strategy.kind, seed),
                                pruner=make_pruner(spec.strategy, len(ctx.folds)), directions=goal.directions)
    trials, refine_trials = inner_budget(exp)
    if exp.grid is not None:
        _enqueue_grid(study, exp, trials)
    rules = StopRules(Budget(trials, grid=exp.grid is not None), spec.strategy, goal, None, spec.stop)
    optimize_here(study, exp, setup, goal, rules, job.threads, [])
    stop = rules.check(study)
    if refine_trials and (stop is None or stop.reason is not StopReason.FAILURES):
        _refine(study, exp, setup, goal, rules, refine_trials, seed, job.threads)
    ended = study.get_trials(deepcopy=False)
    best = goal.best_trial(ended)
    counted = len(ran_to_an_end(ended))
    error = None
    if stop is not None and stop.reason is StopReason.FAILURES:
        error = f"its search stopped early: {stop.detail}"
    elif best is None:
        failures = group_failures(ended)
        error = "no inner trial completed" + (
            f"; most common error ({failures[0][1]} of {sum(n for _, n, _ in failures)}): {failures[0][0]}" if failures else "")
    if error is not None:
        return OuterFold(index, None, None, {}, counted, time.perf_counter() - clock, error)
    from hptune.space import decode_params

    params = decode_params(spec.search_space, best.params)
    try:
        fitted = refit_trial(exp, setup, best, threads=job.threads)
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        return OuterFold(index, None, goal.score(best), params, counted, time.perf_counter() - clock,
                         f"refitting its best failed: {type(exc).__name__}: {message}")
    return OuterFold(index, fitted.test_scores[exp.metric], goal.score(best), params, counted,
                     time.perf_counter() - clock)


def _enqueue_grid(study: Any, exp: ValidatedExperiment, points: int) -> None:
    """The main search's grid points, in its order (``housekeeping.enqueue_grid`` for a study in memory)."""
    from hptune.space import encode_params
    from hptune.trials import ATTR_GRID_POINT

    assert exp.grid is not None
    for index, point in enumerate(exp.grid[:points]):
        study.enqueue_trial(encode_params(exp.spec.search_space, point), user_attrs={ATTR_GRID_POINT: index})


def _refine(study: Any, exp: ValidatedExperiment, setup: Setup, goal: Any, rules: Any, trials: int, seed: int,
            threads: int | None) -> None:
    """The inner search's refine stage, as ``refine.refine_stage`` plans the main one's."""
    from hptune.execution import optimize_here
    from hptune.refine import AllowedChoices, Stage, around_best, stage_rules

    narrowed = around_best(exp.spec, goal, study.get_trials(deepcopy=False))
    if narrowed is None:
        return
    space, allowed = narrowed
    if allowed:
        study.sampler = AllowedChoices(study.sampler, allowed, seed=seed)
    refine_rules = stage_rules(exp.spec, goal, rules.ledger(study).started() + trials)
    optimize_here(study, exp, setup, goal, refine_rules, threads, [], Stage("refine", space, allowed))


# -- outer folds in worker processes ---------------------------------------------------------

_WORKER_JOB: _Job | None = None  # set in each worker process by _start_worker


def _in_processes(job: _Job, todo: list[int], workers: int, finished: Callable[[OuterFold], None]) -> None:
    """Run the ``todo`` folds in ``workers`` processes, passing each result on as it arrives."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    import optuna

    from hptune.study import available_cores

    # Not fork: the refit may have started an OpenMP pool in this process, which a forked child
    # cannot use (it hangs). A fork server is a clean process that forks the workers quickly.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":  # imported once by the server (when it starts), not by every worker
        context.set_forkserver_preload(["pandas", "sklearn.pipeline", "optuna", "hptune.execution", __name__])
    threads = job.exp.spec.strategy.threads_per_worker or max(1, available_cores() // workers)
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                   initargs=(replace(job, threads=threads), optuna.logging.get_verbosity()))
    log.info("nested cv: %d outer folds in %d worker processes (%s), %d thread(s) each", len(todo), workers, method,
             threads)
    pending = {executor.submit(_run_in_worker, index): index for index in todo}
    try:
        for future in as_completed(pending):
            try:
                finished(future.result())
            except BrokenProcessPool:
                finished(OuterFold(pending[future], None, None, {}, 0, 0.0,
                                   "the process running it stopped (killed, out of memory, or it could not start)"))
    except BaseException:  # Ctrl-C or SIGTERM: stop the workers now, not when their fold ends
        _terminate(executor)
        raise
    executor.shutdown()


def _start_worker(job: _Job, verbosity: int) -> None:
    import signal

    import optuna

    from hptune.estimators import cap_n_jobs

    global _WORKER_JOB
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    optuna.logging.set_verbosity(verbosity)
    assert job.threads is not None
    cap_n_jobs(job.pipeline, job.threads)  # this worker's share of the cores
    _WORKER_JOB = job


def _run_in_worker(index: int) -> OuterFold:
    assert _WORKER_JOB is not None
    return run_outer_fold(_WORKER_JOB, index)


def _terminate(executor: Any) -> None:
    """Stop the worker processes at once (Python 3.14 has a method for it; before, only the
    executor's own table of processes names them)."""
    if hasattr(executor, "terminate_workers"):
        executor.terminate_workers()
        return
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)
