"""Cross-validation, fold by fold, on folds built once per run.

``prepare`` builds what every trial shares (the held-out split, the folds, the template
pipeline); ``cross_validate_folds`` fits and scores one set of parameters on every fold.
Folds run one at a time (not through ``cross_validate``) so a pruner can stop a poor trial
after any fold, and each fold's scores are kept for the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hptune.estimators import MODEL_STEP, PREPROCESS_STEP, cap_n_jobs, pipeline_params

if TYPE_CHECKING:
    from hptune.validate import ValidatedExperiment

#: The share of the memory available when a run starts that its fold caches may take, in
#: all worker processes together (``strategy.cache_mb`` sets the size instead).
CACHE_SHARE = 0.25
#: When the available memory cannot be read at all.
FALLBACK_CACHE_BYTES = 256 * 2**20


def cache_bytes_per_process(cache_mb: int | None, processes: int) -> int:
    """How much one process may keep in its fold cache (raw fold slices and preprocessed
    folds): ``cache_mb`` when the file sets it, else a quarter of the memory available now,
    split between the processes that each keep their own cache."""
    total = cache_mb * 2**20 if cache_mb is not None else int(CACHE_SHARE * (available_memory() or 4 * FALLBACK_CACHE_BYTES))
    return total // max(1, processes)


def available_memory() -> int | None:
    """Bytes this process can still use: the kernel's MemAvailable, or less when a container's
    memory limit (cgroup v2 memory.max, or v1 limit_in_bytes) leaves less."""
    available = None
    try:
        for line in open("/proc/meminfo").read().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = open(limit_file).read().strip()
            usage = int(open(usage_file).read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max", or v1's "no limit" (a huge number)
            left = max(0, int(limit) - usage)
            available = left if available is None else min(available, left)
        break
    return available


def _nbytes(array: Any) -> int:
    """Memory held by a transformer's output: a NumPy array, a sparse matrix or a DataFrame."""
    if hasattr(array, "memory_usage"):
        return int(array.memory_usage(index=False, deep=False).sum())
    if hasattr(array, "nnz"):  # CSR/CSC hold indices and indptr, COO row and col
        return sum(int(getattr(array, part).nbytes) for part in ("data", "indices", "indptr", "row", "col") if hasattr(array, part))
    return int(array.nbytes)


@dataclass
class CVContext:
    """What every trial shares: the template pipeline, the training data and the folds."""

    pipeline: Any
    X: Any
    y: Any
    folds: list[tuple[Any, Any]]
    metrics: list[str]  # the main metric first, then the extra ones
    train_scores: bool
    positive_class: Any = None  # data.positive_class: the pos_label of binary metrics
    cache_bytes: int = FALLBACK_CACHE_BYTES  # what this process may keep of folds (see prepare)
    measure_size: bool = False  # each fold's fitted pipeline's pickled size (constraints: max_model_mb)
    measure_predict: bool = False  # seconds per test row (objectives: predict_time)
    _scorer: Any = field(default=None, repr=False)
    _fold_data: dict[int, tuple[Any, Any, Any, Any]] = field(default_factory=dict, repr=False)
    _preprocessed: dict[int, tuple[Any, Any, Any, Any]] = field(default_factory=dict, repr=False)
    _preprocessed_too_big: bool = field(default=False, repr=False)
    _preprocess_mb: dict[int, float] = field(default_factory=dict, repr=False)  # of each cached fold's preprocessing

    def fold_data(self, index: int) -> tuple[Any, Any, Any, Any]:
        """(X_train, y_train, X_test, y_test) of fold ``index``, sliced once per process.

        Slicing a DataFrame costs about as much as scoring a small model, and every trial
        needs the same slices; they are kept unless that would take much memory.
        """
        if index in self._fold_data:
            return self._fold_data[index]
        train, test = self.folds[index]
        data = (self.X.iloc[train], self.y.iloc[train], self.X.iloc[test], self.y.iloc[test])
        if _nbytes(self.X) * len(self.folds) <= self.cache_bytes:
            self._fold_data[index] = data
        return data

    def fold_inputs(self, index: int) -> tuple[Any, tuple[Any, Any, Any, Any]]:
        """What a trial fits on fold ``index``: (estimator template, (X_train, y_train, X_test, y_test)).

        Without preprocessing, that is the model alone. The search space tunes only the model
        step, so the preprocessing step fitted on a fold gives the same output in every trial. While that output is small it is computed
        once per fold and trials fit the model step on it (the same numbers, without
        re-imputing and re-encoding per trial); otherwise trials fit the whole pipeline.
        """
        if index in self._preprocessed:
            return self.pipeline.named_steps[MODEL_STEP], self._preprocessed[index]
        data = self.fold_data(index)
        if PREPROCESS_STEP not in self.pipeline.named_steps:
            # preprocessing: none: the one-step Pipeline would only add its clone, parameter
            # routing and validation to every fold of every trial; the model gives the same fit.
            return self.pipeline.named_steps[MODEL_STEP], data
        if self._preprocessed_too_big:
            return self.pipeline, data
        from sklearn.base import clone

        X_train, y_train, X_test, y_test = data
        preprocess = clone(self.pipeline.named_steps[PREPROCESS_STEP])
        prepared = (preprocess.fit_transform(X_train, y_train), y_train, preprocess.transform(X_test), y_test)
        if (_nbytes(prepared[0]) + _nbytes(prepared[2])) * len(self.folds) > self.cache_bytes:
            self._preprocessed_too_big = True
            return self.pipeline, data
        self._preprocessed[index] = prepared
        if self.measure_size:
            from hptune.constraints import pickled_mb

            self._preprocess_mb[index] = pickled_mb(preprocess)
        self._fold_data.pop(index, None)  # the raw slices are not needed again
        return self.pipeline.named_steps[MODEL_STEP], prepared

    def pipeline_mb(self, index: int, fitted: Any) -> float:
        """The pickled size of the pipeline ``fitted`` stands for on fold ``index``: its model
        step plus its preprocessing, measured apart whether the trial fitted the whole pipeline
        or the model step on the fold's cached preprocessing, so the cache never changes it."""
        from hptune.constraints import pickled_mb

        steps = getattr(fitted, "named_steps", None)
        if steps is not None and PREPROCESS_STEP in steps:  # the whole pipeline, fitted here
            return pickled_mb(steps[MODEL_STEP]) + pickled_mb(steps[PREPROCESS_STEP])
        model = steps[MODEL_STEP] if steps is not None else fitted
        return pickled_mb(model) + (self._preprocess_mb.get(index, 0.0) if index in self._preprocessed else 0.0)

    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            from hptune.metrics import build_scorer

            # One multi-metric scorer computes each prediction once for all metrics.
            self._scorer = build_scorer(self.pipeline, list(self.metrics), self.positive_class)
        return self._scorer


@dataclass
class CVResult:
    test: dict[str, list[float]]
    train: dict[str, list[float]]
    fit_time: list[float]
    score_time: list[float]
    model_mb: list[float] = field(default_factory=list)  # measured only when the context asks
    predict_time: list[float] = field(default_factory=list)  # seconds per test row, likewise

    def mean_test(self, metric: str) -> float:
        values = self.test[metric]
        return sum(values) / len(values)

    def to_attr(self) -> dict[str, Any]:
        attr = {"test": self.test, "train": self.train, "fit_time": self.fit_time, "score_time": self.score_time}
        if self.model_mb:
            attr["model_mb"] = self.model_mb
        if self.predict_time:
            attr["predict_time"] = self.predict_time
        return attr


def fit_pipeline(ctx: CVContext, params: dict[str, Any], X: Any, y: Any, threads: int | None = None) -> Any:
    """A fresh copy of the template pipeline with ``params`` set, fitted on ``X, y``.

    ``threads`` caps BLAS/OpenMP threads and the estimator's ``n_jobs`` during the fit (for a
    fit that runs beside busy workers); the fitted copy keeps the ``n_jobs`` it was given.
    """
    from sklearn.base import clone

    estimator = clone(ctx.pipeline)
    estimator.set_params(**pipeline_params(params))
    if threads is None:
        return estimator.fit(X, y)
    from threadpoolctl import threadpool_limits

    n_jobs = cap_n_jobs(estimator, threads)
    with threadpool_limits(limits=threads):
        estimator.fit(X, y)
    if n_jobs is not None:
        estimator.named_steps[MODEL_STEP].set_params(n_jobs=n_jobs)
    return estimator


def cross_validate_folds(
    ctx: CVContext, params: dict[str, Any], after_fold: Callable[[int, CVResult], bool] | None = None
) -> CVResult:
    """Fit and score ``params`` on every fold, calling ``after_fold`` after each one; when it
    returns True, stop there (the result holds the folds done so far)."""
    from sklearn.base import clone

    result = CVResult({m: [] for m in ctx.metrics}, {m: [] for m in ctx.metrics}, [], [])
    for index in range(len(ctx.folds)):
        template, (X_train, y_train, X_test, y_test) = ctx.fold_inputs(index)
        started = time.perf_counter()
        estimator = clone(template)
        estimator.set_params(**(pipeline_params(params) if template is ctx.pipeline else params))
        estimator.fit(X_train, y_train)
        result.fit_time.append(time.perf_counter() - started)
        if ctx.measure_size:
            result.model_mb.append(ctx.pipeline_mb(index, estimator))
        started = time.perf_counter()
        for metric, value in ctx.scorer(estimator, X_test, y_test).items():
            result.test[metric].append(float(value))
        result.score_time.append(time.perf_counter() - started)
        if ctx.measure_predict:  # the scorer predicts once for every metric: predicting is most of it
            result.predict_time.append(result.score_time[-1] / len(y_test))
        if ctx.train_scores:
            for metric, value in ctx.scorer(estimator, X_train, y_train).items():
                result.train[metric].append(float(value))
        if after_fold is not None and after_fold(index, result):
            break
    return result


@dataclass
class Setup:
    """Everything trials share, built once per run: the held-out split and the CV context."""

    split: Any
    ctx: CVContext


def prepare(exp: ValidatedExperiment) -> Setup:
    """The held-out split, the folds and the template pipeline ``exp`` describes.

    Validation built the split and folds already (so a valid file never fails here); they
    are reused, not built again.
    """
    from hptune.estimators import build_pipeline
    from hptune.folds import build_folds

    spec = exp.spec
    if exp.split is not None and exp.folds is not None:
        split, folds = exp.split, exp.folds
    else:  # a ValidatedExperiment made some other way
        split, folds = build_folds(spec, exp.data, exp.task)
    ctx = CVContext(
        pipeline=build_pipeline(exp.estimator_class, exp.fixed_params, spec.model.preprocessing, split.X_train),
        X=split.X_train,
        y=split.y_train,
        folds=folds,
        metrics=exp.metrics,
        train_scores=spec.cv.train_scores,
        positive_class=spec.data.positive_class,
        # Every worker process keeps its own cache: the budget is split between them.
        cache_bytes=cache_bytes_per_process(spec.strategy.cache_mb, worker_count(spec.strategy.n_jobs)),
        measure_size="model_mb" in exp.objectives or (spec.constraints is not None and spec.constraints.max_model_mb is not None),
        measure_predict="predict_time" in exp.objectives,
    )
    return Setup(split, ctx)


def worker_count(n_jobs: int) -> int:
    """The worker processes ``strategy.n_jobs`` means (-1: one per core this process may use)."""
    import os

    if n_jobs != -1:
        return n_jobs
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
