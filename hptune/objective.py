"""Score one set of parameters by cross-validation, fold by fold.

Folds run one at a time inside the Optuna objective (not through ``cross_validate``) so a
pruner can stop a poor trial after any fold, and each fold's scores are kept for the table.
"""

from __future__ import annotations

import math
import os
import socket
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hptune.estimators import MODEL_STEP, PREPROCESS_STEP, cap_n_jobs, pipeline_params
from hptune.space import Space, suggest
from hptune.trials import (
    ATTR_CV,
    ATTR_ERROR,
    ATTR_GRID_POINT,
    ATTR_INTERRUPTED,
    ATTR_RETRY_OF,
    ATTR_SKIPPED,
    ATTR_TRACEBACK,
    ATTR_WARNINGS,
    ATTR_WORKER,
    STUDY_EXTRA_BUDGET,
    holds_budget,
    requeue,
)

#: Keep every fold's slices in memory while they take at most this much in all: on small
#: data slicing costs as much as fitting; on large data the copies would cost memory instead.
_FOLD_CACHE_BYTES = 16 * 2**20


def _nbytes(array: Any) -> int:
    """Memory held by a transformer's output: a NumPy array, a sparse matrix or a DataFrame."""
    if hasattr(array, "memory_usage"):
        return int(array.memory_usage(index=False, deep=False).sum())
    if hasattr(array, "nnz"):  # CSR/CSC hold indices and indptr, COO row and col
        return sum(int(getattr(array, part).nbytes) for part in ("data", "indices", "indptr", "row", "col") if hasattr(array, part))
    return int(array.nbytes)


class TrialScoreError(ValueError):
    """A trial produced a score that cannot be ranked (NaN or infinite)."""


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
    _scorer: Any = field(default=None, repr=False)
    _fold_data: dict[int, tuple[Any, Any, Any, Any]] = field(default_factory=dict, repr=False)
    _preprocessed: dict[int, tuple[Any, Any, Any, Any]] = field(default_factory=dict, repr=False)
    _preprocessed_too_big: bool = field(default=False, repr=False)

    def fold_data(self, index: int) -> tuple[Any, Any, Any, Any]:
        """(X_train, y_train, X_test, y_test) of fold ``index``, sliced once per process.

        Slicing a DataFrame costs about as much as scoring a small model, and every trial
        needs the same slices; they are kept unless that would take much memory.
        """
        if index in self._fold_data:
            return self._fold_data[index]
        train, test = self.folds[index]
        data = (self.X.iloc[train], self.y.iloc[train], self.X.iloc[test], self.y.iloc[test])
        if _nbytes(self.X) * len(self.folds) <= _FOLD_CACHE_BYTES:
            self._fold_data[index] = data
        return data

    def fold_inputs(self, index: int) -> tuple[Any, tuple[Any, Any, Any, Any]]:
        """What a trial fits on fold ``index``: (estimator template, (X_train, y_train, X_test, y_test)).

        The search space tunes only the model step, so the preprocessing step fitted on a
        fold gives the same output in every trial. While that output is small it is computed
        once per fold and trials fit the model step on it (the same numbers, without
        re-imputing and re-encoding per trial); otherwise trials fit the whole pipeline.
        """
        if index in self._preprocessed:
            return self.pipeline.named_steps[MODEL_STEP], self._preprocessed[index]
        data = self.fold_data(index)
        if PREPROCESS_STEP not in self.pipeline.named_steps or self._preprocessed_too_big:
            return self.pipeline, data
        from sklearn.base import clone

        X_train, y_train, X_test, y_test = data
        preprocess = clone(self.pipeline.named_steps[PREPROCESS_STEP])
        prepared = (preprocess.fit_transform(X_train, y_train), y_train, preprocess.transform(X_test), y_test)
        if (_nbytes(prepared[0]) + _nbytes(prepared[2])) * len(self.folds) > _FOLD_CACHE_BYTES:
            self._preprocessed_too_big = True
            return self.pipeline, data
        self._preprocessed[index] = prepared
        self._fold_data.pop(index, None)  # the raw slices are not needed again
        return self.pipeline.named_steps[MODEL_STEP], prepared

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

    def mean_test(self, metric: str) -> float:
        values = self.test[metric]
        return sum(values) / len(values)

    def to_attr(self) -> dict[str, Any]:
        return {"test": self.test, "train": self.train, "fit_time": self.fit_time, "score_time": self.score_time}


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
    ctx: CVContext, params: dict[str, Any], after_fold: Callable[[int, CVResult], None] | None = None
) -> CVResult:
    """Fit and score ``params`` on every fold, calling ``after_fold`` after each one."""
    from sklearn.base import clone

    result = CVResult({m: [] for m in ctx.metrics}, {m: [] for m in ctx.metrics}, [], [])
    for index in range(len(ctx.folds)):
        template, (X_train, y_train, X_test, y_test) = ctx.fold_inputs(index)
        started = time.perf_counter()
        estimator = clone(template)
        estimator.set_params(**(pipeline_params(params) if template is ctx.pipeline else params))
        estimator.fit(X_train, y_train)
        result.fit_time.append(time.perf_counter() - started)
        started = time.perf_counter()
        for metric, value in ctx.scorer(estimator, X_test, y_test).items():
            result.test[metric].append(float(value))
        result.score_time.append(time.perf_counter() - started)
        if ctx.train_scores:
            for metric, value in ctx.scorer(estimator, X_train, y_train).items():
                result.train[metric].append(float(value))
        if after_fold is not None:
            after_fold(index, result)
    return result


@dataclass
class Budget:
    """The study-wide trial budget, shared by every worker on every machine.

    Optuna cannot start a trial "only if under budget" atomically, so each trial checks once
    it exists: trial numbers are assigned in order by the storage, and a trial with
    ``n_trials`` budget-holding trials before it was asked for too late. It is marked skipped
    (it never runs and is not shown), and its worker stops. The budget is exact however many
    workers race.
    """

    n_trials: int
    grid: bool

    def target(self, study: Any) -> int:
        return self.n_trials + int(study.user_attrs.get(STUDY_EXTRA_BUDGET, 0))

    def admits(self, trial: Any) -> bool:
        if self.grid and ATTR_GRID_POINT not in trial.user_attrs and ATTR_RETRY_OF not in trial.user_attrs:
            return False  # the grid queue is empty: a sampled point would be a duplicate
        study = trial.study
        ahead = sum(1 for t in study.get_trials(deepcopy=False) if t.number < trial.number and holds_budget(t))
        return ahead < self.target(study)

    def spent(self, study: Any) -> bool:
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        started = sum(1 for t in trials if t.state != TrialState.WAITING and holds_budget(t))
        return started >= self.target(study)


class Objective:
    """The Optuna objective: suggest parameters, cross-validate, record, return the mean score."""

    def __init__(
        self, ctx: CVContext, space: Space, grid: bool, budget: Budget | None = None, report_folds: bool = False
    ) -> None:
        self.ctx = ctx
        self.space = space
        self.grid = grid
        self.budget = budget
        # Each report is a write to the study (an fsync'd line in a journal file): made only
        # when a pruner will read them.
        self.report_folds = report_folds

    def __call__(self, trial: Any) -> float:
        import optuna

        # Read the pid now, not at import: forked workers import this module in their parent.
        trial.set_user_attr(ATTR_WORKER, f"{socket.gethostname()}:{os.getpid()}")
        if self.budget is not None and not self.budget.admits(trial):
            trial.set_user_attr(ATTR_SKIPPED, True)
            trial.study.stop()
            raise optuna.TrialPruned("the study's trial budget is spent")
        main = self.ctx.metrics[0]

        def report(index: int, partial: CVResult) -> None:
            # Intermediate values make fold-level pruning a matter of choosing a pruner.
            trial.report(partial.mean_test(main), index)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                params = suggest(trial, self.space, grid=self.grid)
                result = cross_validate_folds(self.ctx, params, report if self.report_folds else None)
                score = result.mean_test(main)
                if not math.isfinite(score):
                    raise TrialScoreError(f"{main} is {score} (not a finite number)")
            except KeyboardInterrupt:
                trial.set_user_attr(ATTR_INTERRUPTED, True)
                trial.set_user_attr(ATTR_ERROR, "interrupted: stopped by Ctrl-C or SIGTERM")
                # This process saw the interruption, so it alone puts the parameters back. They
                # are read back from the study: the interruption may have struck between
                # Optuna storing a parameter and caching it on ``trial``.
                stored = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
                requeue(trial.study, stored, "interrupted")
                raise
            except Exception as exc:
                message = " ".join(str(exc).split()) or type(exc).__name__
                trial.set_user_attr(ATTR_ERROR, f"{type(exc).__name__}: {message}")
                trial.set_user_attr(ATTR_TRACEBACK, traceback.format_exc())
                raise
            finally:
                _record_warnings(trial, caught)
        trial.set_user_attr(ATTR_CV, result.to_attr())
        return score


def distinct_warnings(caught: list[warnings.WarningMessage], limit: int = 5) -> list[str]:
    """The first ``limit`` distinct warnings, each on one line: ``Category: message``."""
    distinct: list[str] = []
    for item in caught:
        text = f"{item.category.__name__}: {' '.join(str(item.message).split())}"
        if text not in distinct:
            distinct.append(text)
    return distinct[:limit]


def _record_warnings(trial: Any, caught: list[warnings.WarningMessage]) -> None:
    if caught:
        trial.set_user_attr(ATTR_WARNINGS, distinct_warnings(caught))
