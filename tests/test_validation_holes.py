"""Experiments that `validate` used to accept and `run` then could not use, through the real CLI.

Each test states the rule it guards: when `validate` says a file is valid, preparing the
folds never fails and no trial fails for a reason the file alone decides.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.conftest import run_cli


def _csv(tmp_path: Path, frame: pd.DataFrame, name: str = "data.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _problems(result) -> list[str]:
    """The issue lines of a failed `validate` (the last line is the count)."""
    assert result.exit_code == 2, result
    assert "Traceback" not in result.stdout + result.stderr
    return result.stderr.splitlines()[:-1]


# -- c. validate builds the real held-out split and folds ------------------------------------

def _grouped(n_groups: int, per_group: int = 5) -> pd.DataFrame:
    rows = [
        {"customer": f"c{g}", "x": g * per_group + i, "label": "ab"[i % 2]}
        for g in range(n_groups)
        for i in range(per_group)
    ]
    return pd.DataFrame(rows)


GROUPED = """
name: grouped
data:
  path: data.csv
  target: label
  groups: customer
  test_size: {test_size}
model: {{estimator: logistic_regression}}
search_space:
  C: {{type: float, low: 0.1, high: 10, log: true}}
cv: {{folds: 5}}
strategy: {{kind: random, n_trials: 2}}
"""


def test_group_folds_count_the_groups_left_after_the_held_out_split(tmp_path, write_spec) -> None:
    # 6 groups pass a count made before the split; 2 of them are then held out, and GroupKFold
    # cannot make 5 folds of 4 groups.
    _csv(tmp_path, _grouped(6))
    spec = write_spec(GROUPED.format(test_size=0.2))
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:10:6: cv.folds: 5 group folds need at least 5 groups in the training part, found 4 "
        "(6 groups, 2 held out by data.test_size: 0.2)"
    ]
    result = run_cli("run", spec, "--out", tmp_path / "out")
    assert result.exit_code == 2, result
    assert not (tmp_path / "out").exists()


def test_enough_groups_after_the_split_runs(tmp_path, write_spec) -> None:
    _csv(tmp_path, _grouped(7))
    spec = write_spec(GROUPED.format(test_size=0.2))
    assert run_cli("validate", spec).exit_code == 0
    result = run_cli("run", spec, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result


def _classes(counts: dict[str, int]) -> pd.DataFrame:
    labels = [label for label, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"x": range(len(labels)), "label": labels})


CLASSES = """
name: classes
data: {{path: data.csv, target: label, test_size: 0}}
model: {{estimator: logistic_regression}}
search_space:
  C: {{type: float, low: 0.1, high: 10, log: true}}
cv: {{kind: {kind}, folds: {folds}}}
strategy: {{kind: random, n_trials: 2}}
"""


def test_stratified_folds_need_each_class_in_more_rows_than_folds_somewhere(tmp_path, write_spec) -> None:
    # Every class has fewer rows than folds: StratifiedKFold refuses to split at all.
    _csv(tmp_path, _classes({"a": 4, "b": 4}))
    spec = write_spec(CLASSES.format(kind="stratified", folds=5))
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:6:24: cv.folds: 5 stratified folds need a class with at least 5 rows in the training "
        "part, found at most 4 ('a': 4, 'b': 4)"
    ]
    assert run_cli("run", spec, "--out", tmp_path / "out").exit_code == 2


def test_a_class_with_a_single_training_row_is_refused_for_stratified_cv(tmp_path, write_spec) -> None:
    # One fold would train without class 'c' and test on it: the model never saw that class.
    _csv(tmp_path, _classes({"a": 10, "b": 10, "c": 1}))
    spec = write_spec(CLASSES.format(kind="stratified", folds=3))
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:2:24: data.target: class 'c' has 1 row in the training part: the stratified fold that "
        "tests it trains without it; add rows of it or remove it from the data"
    ]


def test_a_shuffled_stratified_split_with_a_one_row_class_is_refused(tmp_path, write_spec) -> None:
    # StratifiedShuffleSplit raises on it; today that was a traceback from `run`.
    _csv(tmp_path, _classes({"a": 10, "b": 10, "c": 1}))
    spec = write_spec(CLASSES.format(kind="shuffle", folds=3))
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:2:24: data.target: class 'c' has 1 row in the training part; shuffled stratified splits "
        "need at least 2 of each class: add rows of it or remove it from the data"
    ]
    assert run_cli("run", spec, "--out", tmp_path / "out").exit_code == 2


def test_a_class_with_fewer_rows_than_folds_is_only_a_warning(tmp_path, write_spec) -> None:
    _csv(tmp_path, _classes({"a": 10, "b": 10, "c": 2}))
    spec = write_spec(CLASSES.format(kind="stratified", folds=3))
    result = run_cli("validate", spec)
    assert result.exit_code == 0, result
    assert result.stderr.splitlines() == [
        f"{spec}:2:24: data.target: warning: class 'c' has 2 rows in the training part, fewer than the "
        "3 stratified folds: 1 fold tests without it"
    ]


def test_time_series_folds_need_one_row_more_than_folds(tmp_path, write_spec) -> None:
    _csv(tmp_path, pd.DataFrame({"x": range(5), "y": [0.5, 1.5, 2.5, 3.5, 4.5]}))
    spec = write_spec(
        """
        name: ts
        data: {path: data.csv, target: y, test_size: 0}
        task: regression
        model: {estimator: ridge}
        search_space:
          alpha: {type: float, low: 0.1, high: 10, log: true}
        cv: {kind: timeseries, folds: 5}
        """
    )
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:7:24: cv.folds: 5 time-series folds need at least 6 rows in the training part "
        "(each fold trains on the rows before it), found 5"
    ]
    assert run_cli("run", spec, "--out", tmp_path / "out").exit_code == 2


def test_a_fold_that_trains_on_one_class_is_refused(tmp_path, write_spec) -> None:
    # Time-ordered rows sorted by class: the first fold trains on 'a' alone, so every trial
    # would fail ("needs samples of at least 2 classes").
    _csv(tmp_path, _classes({"a": 12, "b": 12}))
    spec = write_spec(CLASSES.format(kind="timeseries", folds=3))
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:6:6: cv.kind: folds 0, 1 train on one class only (fold 0: 'a'); a classifier needs two: "
        "time-series folds train on the earliest rows, which hold one class here; use another cv.kind"
    ]


def test_the_validated_split_and_folds_are_the_ones_the_runner_builds(tmp_path, write_spec) -> None:
    from hptune.cv import make_folds, make_splitter
    from hptune.data import split_holdout
    from hptune.validate import load_experiment

    _csv(tmp_path, _grouped(9))
    exp = load_experiment(write_spec(GROUPED.format(test_size=0.25)))
    spec = exp.spec
    split = split_holdout(exp.data, spec.data.test_size, spec.seed, exp.task, ordered=False)
    folds = make_folds(make_splitter(spec.cv, exp.task, spec.seed, True), split.X_train, split.y_train,
                       split.groups_train)
    assert exp.split is not None and exp.folds is not None
    assert exp.split.X_train.equals(split.X_train) and exp.split.y_test.equals(split.y_test)
    assert [(list(a), list(b)) for a, b in exp.folds] == [(list(a), list(b)) for a, b in folds]
