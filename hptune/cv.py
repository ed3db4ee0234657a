"""Cross-validation splitters, built from the ``cv`` section and materialised once per run."""

from __future__ import annotations

from typing import Any

from hptune.spec import CVSpec


def default_kind(cv: CVSpec, task: str, has_groups: bool) -> str:
    if cv.kind is not None:
        return cv.kind
    if has_groups:
        return "group"
    return "stratified" if task == "classification" else "kfold"


def make_splitter(cv: CVSpec, task: str, seed: int, has_groups: bool) -> Any:
    """The scikit-learn splitter the spec describes (seeded when it shuffles)."""
    from sklearn import model_selection as ms

    kind = default_kind(cv, task, has_groups)
    seed_if_shuffled = seed if cv.shuffle else None
    if kind == "kfold":
        if cv.repeats > 1:
            return ms.RepeatedKFold(n_splits=cv.folds, n_repeats=cv.repeats, random_state=seed)
        return ms.KFold(n_splits=cv.folds, shuffle=cv.shuffle, random_state=seed_if_shuffled)
    if kind == "stratified":
        if cv.repeats > 1:
            return ms.RepeatedStratifiedKFold(n_splits=cv.folds, n_repeats=cv.repeats, random_state=seed)
        return ms.StratifiedKFold(n_splits=cv.folds, shuffle=cv.shuffle, random_state=seed_if_shuffled)
    if kind == "group":
        if cv.shuffle:
            return ms.GroupKFold(n_splits=cv.folds, shuffle=True, random_state=seed)
        return ms.GroupKFold(n_splits=cv.folds)
    if kind == "timeseries":
        return ms.TimeSeriesSplit(n_splits=cv.folds)
    if task == "classification":
        return ms.StratifiedShuffleSplit(n_splits=cv.folds, test_size=cv.test_size, random_state=seed)
    return ms.ShuffleSplit(n_splits=cv.folds, test_size=cv.test_size, random_state=seed)


def make_folds(splitter: Any, X: Any, y: Any, groups: Any | None) -> list[tuple[Any, Any]]:
    """The (train, test) row indices of every fold; computed once so every trial sees the same."""
    return [(train, test) for train, test in splitter.split(X, y, groups)]
