"""The held-out split and the cross-validation folds of an experiment, built once and checked.

`validate` builds them exactly as a run does (same seed, same splitter, same rows), so a file
it accepts never fails while its folds are prepared, and the run can reuse what it built.
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
    splitter = make_splitter(spec.cv, task, spec.seed, has_groups=split.groups_train is not None)
    return split, make_folds(splitter, split.X_train, split.y_train, split.groups_train)


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
