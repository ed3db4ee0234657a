"""Run an experiment: build the study, run the trials, refit the best, write the outputs.

The study lives in Optuna storage (a journal file in the output folder by default), so a run
can be resumed and other tools (a dashboard, later ``hptune`` commands) can read it. The
library reports progress through a callback and never prints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hptune import __version__, results
from hptune.errors import RunFailedError, StudyMismatchError
from hptune.validate import ValidatedExperiment

log = logging.getLogger(__name__)

#: Study attribute that holds the experiment's fingerprint.
ATTR_FINGERPRINT = "hptune_fingerprint"
ATTR_GRID_QUEUED = "hptune_grid_queued"


@dataclass
class Progress:
    """Sent to the progress callback at the start and after every trial."""

    done: int
    total: int
    best_score: float | None
    last_state: str | None = None
    resumed_from: int = 0


@dataclass
class RunResult:
    """What a finished run produced, for the CLI (or a notebook) to show."""

    output_dir: Path
    metric: str
    best_trial: int
    best_params: dict[str, Any]
    cv_score: float
    cv_std: float
    train_score: float | None
    test_score: float | None
    table: Any
    counts: dict[str, int]
    files: dict[str, Path]
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    resumed_from: int = 0


def fingerprint(exp: ValidatedExperiment) -> str:
    """A hash of everything that changes results (not the budget, n_jobs or output folder)."""
    spec = exp.spec.model_dump(mode="json", exclude={"output": True, "strategy": {"n_trials", "timeout", "n_jobs"}})
    payload = {"spec": spec, "data_sha256": exp.data.sha256, "estimator": exp.estimator_path}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


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
    exp: ValidatedExperiment, on_progress: Callable[[Progress], None] | None = None
) -> RunResult:
    """Tune ``exp`` to its budget and write every output; raise RunFailedError if nothing worked."""
    import optuna

    started_at = datetime.now(timezone.utc)
    clock = time.perf_counter()
    spec = exp.spec
    out = exp.output_dir
    out.mkdir(parents=True, exist_ok=True)

    from hptune.cv import make_folds, make_splitter
    from hptune.data import split_holdout
    from hptune.estimators import build_pipeline
    from hptune.objective import CVContext, Objective

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

    study_path = out / results.STUDY_FILE
    study = optuna.create_study(
        study_name=spec.name,
        storage=journal_storage(study_path),
        sampler=make_sampler(spec.strategy.kind, spec.seed),
        direction="maximize",
        load_if_exists=True,
    )
    expected = fingerprint(exp)
    stored = study.user_attrs.get(ATTR_FINGERPRINT)
    if stored is None:
        study.set_user_attr(ATTR_FINGERPRINT, expected)
    elif stored != expected:
        raise StudyMismatchError(
            f"{study_path} holds a study of a different experiment (data, model, search space, "
            f"metric, CV or seed changed); choose another --out folder"
        )
    if exp.grid is not None and not study.user_attrs.get(ATTR_GRID_QUEUED):
        from hptune.space import encode_params

        # Enqueued once, in ParameterGrid order: each point runs exactly once, however many
        # workers pop the queue, and ties break as in GridSearchCV.
        for point in exp.grid[: exp.n_trials]:
            study.enqueue_trial(encode_params(spec.search_space, point), skip_if_exists=False)
        study.set_user_attr(ATTR_GRID_QUEUED, True)
    setup_seconds = time.perf_counter() - clock

    done_before = len(results.finished(study.get_trials(deepcopy=False)))
    remaining = max(0, exp.n_trials - done_before)
    best_before = results.best_trial(study.get_trials(deepcopy=False))
    tracker = _ProgressTracker(exp.n_trials, done_before, best_before.value if best_before else None, on_progress)
    tracker.start()

    search_clock = time.perf_counter()
    if remaining:
        study.optimize(
            Objective(ctx, spec.search_space, grid=exp.grid is not None),
            n_trials=remaining,
            timeout=spec.strategy.timeout,
            n_jobs=spec.strategy.n_jobs,
            catch=(Exception,),
            callbacks=[tracker],
        )
    search_seconds = time.perf_counter() - search_clock

    trials = study.get_trials(deepcopy=False)
    param_names = list(spec.search_space)
    table = results.trials_table(trials, param_names, ctx.metrics, spec.cv.train_scores)
    files = {"study": study_path, "trials": out / results.TRIALS_FILE}
    results.write_trials_csv(files["trials"], table)
    counts = _counts(trials)
    failures = results.group_failures(trials)
    best = results.best_trial(trials)

    metadata: dict[str, Any] = {
        "hptune": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in ("scikit-learn", "optuna", "numpy", "pandas", "scipy", "pydantic", "joblib")},
        "experiment": {
            "name": spec.name,
            "file": str(exp.path),
            "file_sha256": hashlib.sha256(exp.path.read_bytes()).hexdigest(),
            "fingerprint": expected,
        },
        "data": {
            "source": exp.data.source,
            "sha256": exp.data.sha256,
            "rows": exp.data.n_rows,
            "features": int(exp.data.X.shape[1]),
            "train_rows": len(split.y_train),
            "test_rows": 0 if split.y_test is None else len(split.y_test),
        },
        "study": {"name": spec.name, "storage": str(study_path), "sampler": spec.strategy.kind},
        "command": sys.argv,
        "started_at": started_at.isoformat(timespec="seconds"),
    }

    if best is None:
        _finish_metadata(metadata, started_at, counts, {"setup": setup_seconds, "search": search_seconds})
        metadata["status"] = "failed"
        files["run"] = out / results.RUN_FILE
        results.write_atomic(files["run"], results.json_text(metadata))
        raise RunFailedError(_all_failed_message(failures, counts))

    refit_clock = time.perf_counter()
    from hptune.objective import fit_pipeline
    from hptune.space import decode_params

    best_params = decode_params(spec.search_space, best.params)
    model = fit_pipeline(ctx, best_params, split.X_train, split.y_train)
    test_scores: dict[str, float] = {}
    if split.X_test is not None:
        test_scores = {m: float(v) for m, v in ctx.scorer(model, split.X_test, split.y_test).items()}
    refit_seconds = time.perf_counter() - refit_clock

    cv = best.user_attrs[results.ATTR_CV]
    import numpy as np

    cv_score = float(np.mean(cv["test"][exp.metric]))
    cv_std = float(np.std(cv["test"][exp.metric]))
    train_score = float(np.mean(cv["train"][exp.metric])) if spec.cv.train_scores else None
    test_score = test_scores.get(exp.metric)

    import joblib

    files["model"] = out / results.MODEL_FILE
    files["best"] = out / results.BEST_FILE
    files["run"] = out / results.RUN_FILE
    import io

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    results.write_atomic(files["model"], buffer.getvalue())
    document = results.best_document(
        name=spec.name,
        estimator=exp.estimator_path,
        preprocessing=spec.model.preprocessing,
        metric=exp.metric,
        trial_number=best.number,
        cv_score=cv_score,
        cv_std=cv_std,
        train_score=train_score,
        test_score=test_score,
        params={**exp.fixed_params, **best_params},
    )
    results.write_atomic(files["best"], results.best_yaml_text(document))
    _finish_metadata(metadata, started_at, counts, {"setup": setup_seconds, "search": search_seconds, "refit": refit_seconds})
    metadata.update(
        status="complete",
        best_trial=best.number,
        cv_score=cv_score,
        cv_std=cv_std,
        train_score=train_score,
        test_score=test_score,
        test_scores=test_scores,
    )
    results.write_atomic(files["run"], results.json_text(metadata))
    return RunResult(
        output_dir=out,
        metric=exp.metric,
        best_trial=best.number,
        best_params=best_params,
        cv_score=cv_score,
        cv_std=cv_std,
        train_score=train_score,
        test_score=test_score,
        table=table,
        counts=counts,
        files=files,
        failures=failures,
        resumed_from=done_before,
    )


class _ProgressTracker:
    """An Optuna callback that keeps the count and best score and forwards them."""

    def __init__(self, total: int, done: int, best: float | None, sink: Callable[[Progress], None] | None) -> None:
        self.total, self.done, self.best, self.sink = total, done, best, sink
        self.resumed_from = done

    def start(self) -> None:
        if self.sink:
            self.sink(Progress(self.done, self.total, self.best, None, self.resumed_from))

    def __call__(self, study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        self.done += 1
        if trial.state == TrialState.COMPLETE and (self.best is None or trial.value > self.best):
            self.best = trial.value
        if self.sink:
            self.sink(Progress(self.done, self.total, self.best, trial.state.name, self.resumed_from))


def _counts(trials: list[Any]) -> dict[str, int]:
    from collections import Counter

    by_state = Counter(t.state.name.lower() for t in trials if t.state.name != "WAITING")
    return {state: by_state.get(state, 0) for state in ("complete", "fail", "pruned", "running")}


def _finish_metadata(metadata: dict[str, Any], started_at: datetime, counts: dict[str, int], timings: dict[str, float]) -> None:
    finished_at = datetime.now(timezone.utc)
    metadata["finished_at"] = finished_at.isoformat(timespec="seconds")
    metadata["duration_seconds"] = round((finished_at - started_at).total_seconds(), 3)
    metadata["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
    metadata["trials"] = counts


def _all_failed_message(failures: list[tuple[str, int, str]], counts: dict[str, int]) -> str:
    total = sum(count for _, count, _ in failures)
    if not failures:
        return "no trial completed (the time budget may have run out before the first one finished)"
    message, count, _ = failures[0]
    lines = [f"all {total} trials failed; the model is likely misconfigured. Most common error ({count} of {total}): {message}"]
    for other, other_count, _ in failures[1:3]:
        lines.append(f"  also ({other_count}x): {other}")
    return "\n".join(lines)


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
