"""The held-out split and the cross-validation folds of an experiment, built once and checked.

`validate` builds them exactly as a run does (same seed, same splitter, same rows), so a file
it accepts never fails while its folds are prepared, and the run can reuse what it built.
With ``evaluation``, the outer folds of nested CV and the inner folds of each are checked too.
Known ways to fail get a precise message at the key that fixes them; any other refusal of a
scikit-learn splitter still becomes an issue, never a traceback.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from hptune.cv import default_kind, make_folds, make_splitter
from hptune.data import Dataset, Split, show_labels, show_value, split_holdout
from hptune.spec import Experiment
from hptune.yamlio import Path_

Folds = list[tuple[Any, Any]]


@dataclass(frozen=True)
class FoldProblem:
    """Why the folds cannot be built (or, with ``warning``, why they may mislead)."""

    path: Path_
    message: str
    warning: bool = False


def build_folds(spec: Experiment, data: Dataset, task: str) -> tuple[Split, Folds]:
    """The held-out split and the folds of its training part, as a run uses them."""
    split = split_holdout(data, spec.data.test_size, spec.seed, task, ordered=spec.cv.kind == "timeseries")
    return split, cv_folds(spec, task, split)


def cv_folds(spec: Experiment, task: str, split: Split) -> Folds:
    """The ``cv`` section's folds of ``split``'s training part (the run's, or an outer fold's)."""
    splitter = make_splitter(spec.cv, task, spec.seed, has_groups=split.groups_train is not None)
    return make_folds(splitter, split.X_train, split.y_train, split.groups_train)


def outer_kind(spec: Experiment, task: str, has_groups: bool) -> str:
    """How nested CV's outer folds are drawn: like the held-out split, in time order for time
    series, whole groups with ``data.groups``, stratified for classification, and shuffled."""
    if spec.cv.kind == "timeseries":
        return "timeseries"
    if has_groups:
        return "group"
    return "stratified" if task == "classification" else "kfold"


def build_outer_folds(spec: Experiment, task: str, split: Split) -> Folds:
    """The outer folds of nested CV (``evaluation.nested_folds``) on the training part."""
    from hptune.spec import CVSpec

    assert spec.evaluation is not None
    has_groups = split.groups_train is not None
    outer = CVSpec(kind=outer_kind(spec, task, has_groups), folds=spec.evaluation.nested_folds, shuffle=True)
    return make_folds(make_splitter(outer, task, spec.seed, has_groups), split.X_train, split.y_train, split.groups_train)


def outer_part(split: Split, train: Any, test: Any) -> Split:
    """One outer fold as a split: its training rows (where the inner search runs) and its test rows."""
    take = lambda obj, rows: None if obj is None else obj.iloc[rows].reset_index(drop=True)  # noqa: E731
    return Split(take(split.X_train, train), take(split.y_train, train), take(split.groups_train, train),
                 take(split.X_train, test), take(split.y_train, test))


def check_nested_folds(spec: Experiment, task: str, split: Split) -> list[FoldProblem]:
    """Whether the outer folds, and the inner folds of each outer training part, can be made
    (scikit-learn's own warnings, about small classes, are the main folds' to give)."""
    assert spec.evaluation is not None
    at, n = ("evaluation", "nested_folds"), spec.evaluation.nested_folds
    kind = outer_kind(spec, task, split.groups_train is not None)
    rows = len(split.y_train)
    if kind == "group" and split.groups_train.nunique() < n:
        found = split.groups_train.nunique()
        return [FoldProblem(at, f"{n} outer group folds need at least {n} groups in the training part, found {found}")]
    if rows < n + (kind == "timeseries"):
        return [FoldProblem(at, f"{n} outer {kind} folds need at least {n + (kind == 'timeseries')} training rows, "
                                f"found {rows}")]
    if kind == "stratified" and split.y_train.value_counts().max() < n:
        most = split.y_train.value_counts().max()
        return [FoldProblem(at, f"{n} outer stratified folds need a class with at least {n} rows in the training "
                                f"part, found at most {most}")]
    inner = default_kind(spec.cv, task, split.groups_train is not None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            outer = build_outer_folds(spec, task, split)
        except ValueError as exc:
            return [FoldProblem(at, f"the {n} outer {kind} folds cannot be made: {_line(exc)}")]
        for index, (train, test) in enumerate(outer):
            part = outer_part(split, train, test)
            try:
                folds = cv_folds(spec, task, part)
            except ValueError as exc:
                return [FoldProblem(at, f"outer fold {index} trains on {len(train)} rows, which the {spec.cv.folds} "
                                        f"{inner} folds of cv cannot split: {_line(exc)}; use fewer nested_folds")]
            one_class = _one_class_folds(part, folds, inner) if task == "classification" else []
            if one_class:
                return [FoldProblem(at, f"in outer fold {index}, inner {one_class[0].message}")]
    return []


def check_folds(
    spec: Experiment, data: Dataset, task: str, target: Path_
) -> tuple[Split | None, Folds | None, list[FoldProblem]]:
    """Build the split and folds; return them with the problems found (``target`` is where a
    class problem is reported: ``data.target`` for a file, ``data`` for a bundled data set)."""
    cv = spec.cv
    kind = default_kind(cv, task, data.groups is not None)
    # scikit-learn warns about small classes while splitting; those become our own warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            split = split_holdout(data, spec.data.test_size, spec.seed, task, ordered=cv.kind == "timeseries")
        except ValueError as exc:
            return None, None, [FoldProblem(("data", "test_size"), f"the held-out split cannot be made: {_line(exc)}")]
        problems = _before(spec, data, task, kind, split, target)
        if any(not p.warning for p in problems):
            return None, None, problems
        splitter = make_splitter(cv, task, spec.seed, has_groups=split.groups_train is not None)
        try:
            folds = make_folds(splitter, split.X_train, split.y_train, split.groups_train)
        except ValueError as exc:
            return None, None, [*problems, FoldProblem(("cv",), f"the {kind} folds cannot be made: {_line(exc)}")]
    if task == "classification":
        problems += _one_class_folds(split, folds, kind)
    if spec.evaluation is not None and not any(not p.warning for p in problems):
        problems += check_nested_folds(spec, task, split)
    if any(not p.warning for p in problems):
        return None, None, problems
    return split, folds, problems


def _before(spec: Experiment, data: Dataset, task: str, kind: str, split: Split, target: Path_) -> list[FoldProblem]:
    """The known ways a splitter refuses the training part, said in the file's terms."""
    cv = spec.cv
    rows = len(split.y_train)
    folds = ("cv", "folds")
    if kind == "group":
        found = split.groups_train.nunique()
        if found < cv.folds:
            total = data.groups.nunique()
            held = f" ({total} groups, {total - found} held out by data.test_size: {spec.data.test_size})"
            return [FoldProblem(folds, f"{cv.folds} group folds need at least {cv.folds} groups in the training part, "
                                       f"found {found}" + (held if total > found else ""))]
        return []
    if kind == "timeseries":
        if rows < cv.folds + 1:
            return [FoldProblem(folds, f"{cv.folds} time-series folds need at least {cv.folds + 1} rows in the "
                                       f"training part (each fold trains on the rows before it), found {rows}")]
        return []
    if rows < cv.folds and kind != "shuffle":
        return [FoldProblem(folds, f"{cv.folds} folds need at least {cv.folds} training rows, found {rows}")]
    if task != "classification" or kind not in ("stratified", "shuffle"):
        return []
    counts = split.y_train.value_counts()
    if kind == "stratified" and counts.max() < cv.folds:
        listed = ", ".join(f"{show_value(label)}: {n}" for label, n in counts.items())
        return [FoldProblem(folds, f"{cv.folds} stratified folds need a class with at least {cv.folds} rows in the "
                                   f"training part, found at most {counts.max()} ({listed})")]
    problems = []
    for label, n in counts.items():
        if n == 1 and kind == "stratified":
            problems.append(FoldProblem(target, f"class {show_value(label)} has 1 row in the training part: the "
                                                "stratified fold that tests it trains without it; add rows of it "
                                                "or remove it from the data"))
        elif n == 1:
            problems.append(FoldProblem(target, f"class {show_value(label)} has 1 row in the training part; "
                                                "shuffled stratified splits need at least 2 of each class: add "
                                                "rows of it or remove it from the data"))
        elif kind == "stratified" and n < cv.folds:
            missing = cv.folds - n
            problems.append(FoldProblem(
                target,
                f"class {show_value(label)} has {n} rows in the training part, fewer than the {cv.folds} stratified "
                f"folds: {missing} {'fold tests' if missing == 1 else 'folds test'} without it",
                warning=True,
            ))
    if kind == "shuffle":
        import math

        tested = math.ceil(cv.test_size * rows)
        if tested < len(counts) or rows - tested < len(counts):
            share, part = (cv.test_size, "tests") if tested < len(counts) else (1 - cv.test_size, "trains on")
            problems.append(FoldProblem(("cv", "test_size"), f"each shuffled split {part} {share:g} of {rows} "
                                                             f"training rows, fewer than the {len(counts)} classes"))
    return problems


def _one_class_folds(split: Split, folds: Folds, kind: str) -> list[FoldProblem]:
    """A fold that trains on one class makes every classifier fail, whatever the trial."""
    single = [(i, split.y_train.iloc[train].unique()) for i, (train, _) in enumerate(folds)]
    single = [(i, labels) for i, labels in single if len(labels) < 2]
    if not single:
        return []
    index, labels = single[0]
    which = f"fold {index} trains" if len(single) == 1 else f"folds {', '.join(str(i) for i, _ in single)} train"
    hint = {
        "timeseries": "time-series folds train on the earliest rows, which hold one class here; use another cv.kind",
        "group": "its training groups hold one class; use fewer folds or more groups",
    }.get(kind, "use fewer folds")
    return [FoldProblem(("cv", "kind"), f"{which} on one class only (fold {index}: {show_labels(labels)}); "
                                        f"a classifier needs two: {hint}")]


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def folds_sha256(train_rows: Any, folds: Any) -> str:
    """A hash of the training rows (their labels in the data) and of every fold's rows: two runs
    with the same value scored their trials on the very same folds (``hptune compare`` pairs them)."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256(",".join(map(str, train_rows)).encode())
    for train, test in folds:
        digest.update(np.asarray(train, dtype=np.int64).tobytes() + b"|" + np.asarray(test, dtype=np.int64).tobytes())
    return digest.hexdigest()


def test_train_ratio(folds: Any) -> float:
    """The folds' mean test rows over train rows: the n_test/n_train of Nadeau and Bengio's
    corrected variance (``compare.corrected_variance``). 1/(k-1) for plain k-fold; for repeated
    k-fold still 1/(k-1), where counting the k*r scores as k*r folds would give about 1/(k*r);
    for shuffle splits test_size/(1-test_size); measured, so groups and time series are right too."""
    ratios = [len(test) / len(train) for train, test in folds if len(train)]
    return sum(ratios) / len(ratios) if ratios else 0.0
