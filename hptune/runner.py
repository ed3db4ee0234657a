"""Run an experiment: open (or resume) the study, run the trials, refit the best, write outputs.

The study lives in Optuna storage (a journal file in the output folder by default), so a run
can be resumed and other tools (a dashboard, later ``hptune`` commands) can read it. The
library reports progress through a callback and never prints.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hptune import __version__, results
from hptune.errors import RunFailedError, RunInterruptedError, StudyMismatchError
from hptune.objective import ATTR_ERROR, ATTR_INTERRUPTED, ATTR_WORKER
from hptune.validate import ValidatedExperiment

log = logging.getLogger(__name__)

#: Study attributes.
ATTR_FINGERPRINT = "hptune_fingerprint"
ATTR_FINGERPRINT_PARTS = "hptune_fingerprint_parts"
ATTR_GRID_QUEUED = "hptune_grid_queued"
#: Study attribute: numbers of the trials whose parameters were put back in the queue
#: (a finished trial's own attributes can no longer be changed).
ATTR_REQUEUED = "hptune_requeued"
#: Trial attribute: this trial re-runs the parameters of trial N.
ATTR_RETRY_OF = "hptune_retry_of"

#: Failure-rate limits are checked only once this many trials have finished.
MIN_TRIALS_FOR_FAILURE_RATE = 5


@dataclass
class RunOptions:
    """How to treat an output folder that already holds a study, and what to do on stops."""

    resume: bool = True  # False: refuse to continue an existing study
    fresh: bool = False  # move an existing study and outputs aside, start over
    retry_failed: bool = False  # run the parameters of failed trials again
    refit_on_interrupt: bool = False  # refit the best model even after Ctrl-C


@dataclass
class Progress:
    """Sent to the progress callback at the start and after every trial."""

    done: int
    total: int
    best_score: float | None
    last_state: str | None = None
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
    resumed_from: int = 0
    moved_aside: Path | None = None


def fingerprint_parts(exp: ValidatedExperiment) -> dict[str, str]:
    """A short hash of each part of the experiment that changes results.

    The budget (n_trials, timeout), n_jobs and the output folder are left out: changing them
    continues the same study.
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


def make_sampler(kind: str, seed: int) -> Any:
    import optuna

    if kind == "bayesian":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "cmaes":
        # Categorical parameters are outside CMA-ES; they fall back to random sampling.
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if kind == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    # random, and grid: every grid trial is enqueued, so the sampler never draws a value.
    return optuna.samplers.RandomSampler(seed=seed)


def journal_storage(path: Path) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def run_experiment(
    exp: ValidatedExperiment,
    options: RunOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    """Tune ``exp`` to its budget and write every output.

    Raises RunFailedError when every trial failed or a failure limit was hit, and
    RunInterruptedError after Ctrl-C/SIGTERM; in both cases the outputs that can be
    written from the completed trials are written first.
    """
    options = options or RunOptions()
    started_at = datetime.now(timezone.utc)
    clock = time.perf_counter()
    out = exp.output_dir
    out.mkdir(parents=True, exist_ok=True)
    moved_aside = move_aside(out) if options.fresh else None

    setup = prepare(exp)
    study, storage = _open_study(exp, options)
    opened = _tidy_study(exp, study, storage, options)
    setup_seconds = time.perf_counter() - clock

    trials = study.get_trials(deepcopy=False)
    done_before = len(results.finished(trials))
    remaining = max(0, exp.n_trials - done_before) + opened.retried_failures
    best_before = results.best_trial(trials)
    tracker = _ProgressTracker(
        total=done_before + remaining,
        done=done_before,
        best=best_before.value if best_before else None,
        sink=on_progress,
        requeued=opened.requeued,
    )
    limit = _FailureLimit(exp.spec.strategy.max_failures, exp.spec.strategy.max_failure_rate, trials)
    tracker.start()

    search_clock = time.perf_counter()
    interrupted = False
    if remaining:
        from hptune.objective import Objective

        try:
            study.optimize(
                Objective(setup.ctx, exp.spec.search_space, grid=exp.grid is not None),
                n_trials=remaining,
                timeout=exp.spec.strategy.timeout,
                n_jobs=exp.spec.strategy.n_jobs,
                catch=(Exception,),
                callbacks=[tracker, limit],
            )
        except KeyboardInterrupt:
            interrupted = True
    search_seconds = time.perf_counter() - search_clock

    if interrupted:
        status = "interrupted"
    elif limit.tripped:
        status = "stopped"
    else:
        status = "complete"
    result = write_outputs(
        exp,
        study,
        setup,
        status=status,
        refit=status == "complete" or (interrupted and options.refit_on_interrupt),
        started_at=started_at,
        timings={"setup": setup_seconds, "search": search_seconds},
    )
    result.resumed_from = done_before
    result.moved_aside = moved_aside
    error: RunFailedError | RunInterruptedError | None = None
    if interrupted:
        error = RunInterruptedError(
            f"interrupted: {result.counts['complete']} complete trials are kept in {out / results.STUDY_FILE}; "
            f"run the same command again to resume"
        )
    elif limit.tripped:
        error = RunFailedError(f"stopped early: {limit.tripped}")
    elif result.best_trial is None:
        error = RunFailedError(_all_failed_message(result.failures))
    if error is not None:
        error.result = result
        raise error
    return result


@dataclass
class Setup:
    """Everything trials share, built once per process: the split, folds and template pipeline."""

    split: Any
    ctx: Any


def prepare(exp: ValidatedExperiment) -> Setup:
    from hptune.cv import make_folds, make_splitter
    from hptune.data import split_holdout
    from hptune.estimators import build_pipeline
    from hptune.objective import CVContext

    spec = exp.spec
    split = split_holdout(exp.data, spec.data.test_size, spec.seed, exp.task)
    splitter = make_splitter(spec.cv, exp.task, spec.seed, has_groups=split.groups_train is not None)
    ctx = CVContext(
        pipeline=build_pipeline(exp.estimator_class, exp.fixed_params, spec.model.preprocessing, split.X_train),
        X=split.X_train,
        y=split.y_train,
        folds=make_folds(splitter, split.X_train, split.y_train, split.groups_train),
        metrics=[exp.metric, *spec.extra_metrics],
        train_scores=spec.cv.train_scores,
    )
    return Setup(split, ctx)


def move_aside(out: Path) -> Path | None:
    """Move hptune's files in ``out`` to a sibling folder ``<out>.old-<UTC time>``; never delete."""
    owned = [out / name for name in results.OWNED_FILES]
    present = [path for path in owned if path.exists() or path.is_symlink()]
    if not present:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = out.parent / f"{out.resolve().name}.old-{stamp}"
    suffix = 1
    while target.exists():
        suffix += 1
        target = out.parent / f"{out.resolve().name}.old-{stamp}-{suffix}"
    target.mkdir(parents=True)
    for path in present:
        path.rename(target / path.name)
    return target


def _open_study(exp: ValidatedExperiment, options: RunOptions) -> tuple[Any, Any]:
    import optuna

    spec = exp.spec
    study_path = exp.output_dir / results.STUDY_FILE
    existed = study_path.exists() and study_path.stat().st_size > 0
    storage = journal_storage(study_path)
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec.strategy.kind, spec.seed),
        direction="maximize",
        load_if_exists=True,
    )
    parts = fingerprint_parts(exp)
    stored = study.user_attrs.get(ATTR_FINGERPRINT_PARTS)
    if existed and stored is not None and not options.resume and study.get_trials(deepcopy=False):
        raise StudyMismatchError(
            f"{study_path} already holds a study with {len(study.get_trials(deepcopy=False))} trials "
            f"and --no-resume was given; use --fresh to start over (the old study is moved aside) "
            f"or choose another --out"
        )
    if stored is None:
        study.set_user_attr(ATTR_FINGERPRINT_PARTS, parts)
        study.set_user_attr(ATTR_FINGERPRINT, _digest(parts))
    elif stored != parts:
        changed = [name for name in parts if stored.get(name) != parts[name]]
        raise StudyMismatchError(
            f"{study_path} holds a study of a different experiment (changed: {', '.join(changed)}); "
            f"use --fresh to start over (the old study is moved aside) or choose another --out"
        )
    return study, storage


@dataclass
class _Opened:
    requeued: int = 0
    retried_failures: int = 0


def _tidy_study(exp: ValidatedExperiment, study: Any, storage: Any, options: RunOptions) -> _Opened:
    """Fail trials whose process died, put interrupted (and, if asked, failed) trials back in
    the queue once, and enqueue the grid the first time."""
    from optuna.trial import TrialState

    opened = _Opened()
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(trial.user_attrs.get(ATTR_WORKER, f"{host}:")).partition(":")
        if worker_host != host or (pid and _alive(int(pid))):
            continue  # another live process (or machine) is running it
        storage.set_trial_user_attr(trial._trial_id, ATTR_INTERRUPTED, True)
        storage.set_trial_user_attr(
            trial._trial_id, ATTR_ERROR, "interrupted: the process running this trial stopped (killed or crashed)"
        )
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    requeued = set(study.user_attrs.get(ATTR_REQUEUED, []))
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if trial.number in requeued:
            continue
        interrupted = bool(trial.user_attrs.get(ATTR_INTERRUPTED))
        # An interrupted trial is tried again once (not if it was itself such a retry).
        if interrupted and ATTR_RETRY_OF in trial.user_attrs:
            continue
        if not interrupted and not options.retry_failed:
            continue
        study.enqueue_trial(dict(trial.params), user_attrs={ATTR_RETRY_OF: trial.number})
        requeued.add(trial.number)
        if interrupted:
            opened.requeued += 1
        else:
            opened.retried_failures += 1
    if opened.requeued or opened.retried_failures:
        study.set_user_attr(ATTR_REQUEUED, sorted(requeued))
    if exp.grid is not None and not study.user_attrs.get(ATTR_GRID_QUEUED):
        from hptune.space import encode_params

        # Enqueued once, in ParameterGrid order: each point runs exactly once, however many
        # workers pop the queue, and ties break as in GridSearchCV.
        for point in exp.grid[: exp.n_trials]:
            study.enqueue_trial(encode_params(exp.spec.search_space, point))
        study.set_user_attr(ATTR_GRID_QUEUED, True)
    return opened


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_outputs(
    exp: ValidatedExperiment,
    study: Any,
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
    trials = study.get_trials(deepcopy=False)
    table = results.trials_table(trials, list(spec.search_space), setup.ctx.metrics, spec.cv.train_scores)
    files = {"study": out / results.STUDY_FILE, "trials": out / results.TRIALS_FILE}
    results.write_trials_csv(files["trials"], table)
    counts = results.count_states(trials)
    failures = results.group_failures(trials)
    best = results.best_trial(trials)
    if best is None and status == "complete":
        status = "failed"
    metadata = _metadata(exp, setup, started_at, status)

    best_params: dict[str, Any] = {}
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
            refit_clock = time.perf_counter()
            from hptune.objective import fit_pipeline

            split = setup.split
            model = fit_pipeline(setup.ctx, best_params, split.X_train, split.y_train)
            if split.X_test is not None:
                test_scores = {m: float(v) for m, v in setup.ctx.scorer(model, split.X_test, split.y_test).items()}
            import joblib

            buffer = io.BytesIO()
            joblib.dump(model, buffer)
            files["model"] = out / results.MODEL_FILE
            results.write_atomic(files["model"], buffer.getvalue())
            timings = {**timings, "refit": time.perf_counter() - refit_clock}
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
    )


def _metadata(exp: ValidatedExperiment, setup: Setup, started_at: datetime, status: str) -> dict[str, Any]:
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
        "study": {"name": spec.name, "storage": str(exp.output_dir / results.STUDY_FILE), "sampler": spec.strategy.kind},
        "command": sys.argv,
        "started_at": started_at.isoformat(timespec="seconds"),
    }


class _ProgressTracker:
    """An Optuna callback that keeps the count and best score and forwards them."""

    def __init__(
        self, total: int, done: int, best: float | None, sink: Callable[[Progress], None] | None, requeued: int
    ) -> None:
        self.total, self.done, self.best, self.sink = total, done, best, sink
        self.resumed_from = done
        self.requeued = requeued

    def _send(self, state: str | None) -> None:
        if self.sink:
            self.sink(Progress(self.done, self.total, self.best, state, self.resumed_from, self.requeued))

    def start(self) -> None:
        self._send(None)

    def __call__(self, study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        if trial.user_attrs.get(ATTR_INTERRUPTED):
            return
        self.done += 1
        if trial.state == TrialState.COMPLETE and (self.best is None or trial.value > self.best):
            self.best = trial.value
        self._send(trial.state.name)


class _FailureLimit:
    """An Optuna callback that stops the study when failures pass the configured limits."""

    def __init__(self, max_failures: int | None, max_rate: float | None, trials: list[Any]) -> None:
        from optuna.trial import TrialState

        self.max_failures, self.max_rate = max_failures, max_rate
        finished = results.finished(trials)
        self.failed = sum(t.state == TrialState.FAIL for t in finished)
        self.finished = len(finished)
        self.tripped: str | None = None

    def __call__(self, study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        if trial.user_attrs.get(ATTR_INTERRUPTED):
            return
        self.finished += 1
        self.failed += trial.state == TrialState.FAIL
        if self.max_failures is not None and self.failed > self.max_failures:
            self.tripped = f"{self.failed} trials failed, more than strategy.max_failures ({self.max_failures})"
        elif (
            self.max_rate is not None
            and self.finished >= MIN_TRIALS_FOR_FAILURE_RATE
            and self.failed / self.finished > self.max_rate
        ):
            self.tripped = (
                f"{self.failed} of {self.finished} trials failed, more than "
                f"strategy.max_failure_rate ({self.max_rate:g})"
            )
        if self.tripped:
            study.stop()


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
