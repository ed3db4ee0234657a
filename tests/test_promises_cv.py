"""README promises about cross-validation kinds: groups, time series, shuffle splits, repeats.

Where the folds are fully determined by the spec, each trial's split scores are compared with
scikit-learn's cross_validate on the same estimator and folds, to 1e-12.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import Ridge
from sklearn.model_selection import (
    GroupKFold,
    RepeatedStratifiedKFold,
    ShuffleSplit,
    StratifiedKFold,
    TimeSeriesSplit,
    cross_validate,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.tree import DecisionTreeClassifier

from tests.conftest import run_cli

GROUP_SIZE, N_GROUPS = 10, 15


def _grouped_csv(path: Path) -> Path:
    """15 customers of 10 rows each. A customer's rows sit close together and share one random
    label, so a model that has seen a customer's other rows predicts it perfectly (a leak shows
    as accuracy 1.0) while unseen customers are close to a coin toss."""
    rng = np.random.default_rng(11)
    centres = rng.uniform(0, 10, size=(N_GROUPS, 2))
    labels = np.array([0, 1] * (N_GROUPS // 2) + [0])
    rows = []
    for g in range(N_GROUPS):
        for _ in range(GROUP_SIZE):
            x1, x2 = centres[g] + rng.normal(0, 0.05, size=2)
            rows.append({"customer": f"c{g:02d}", "x1": x1, "x2": x2, "label": labels[g]})
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=3).reset_index(drop=True)  # groups interleaved
    frame.to_csv(path, index=False)
    return path


def _split_columns(table: pd.DataFrame, metric: str) -> list[str]:
    return [c for c in table.columns if c.startswith("split") and c.endswith(f"_test_{metric}")]


def _assert_same_scores(row: pd.Series, reference: dict, metric: str, folds: int) -> None:
    for k in range(folds):
        assert abs(row[f"split{k}_test_{metric}"] - reference["test_score"][k]) <= 1e-12, (k, row)
        assert abs(row[f"split{k}_train_{metric}"] - reference["train_score"][k]) <= 1e-12, (k, row)


def test_a_groups_column_makes_the_default_cv_group_kfold(write_spec, tmp_path: Path) -> None:
    data = _grouped_csv(tmp_path / "customers.csv")
    spec = write_spec(
        """
        name: grouped
        data: {path: customers.csv, target: label, groups: customer, test_size: 0}
        model: {estimator: knn, preprocessing: none}
        search_space:
          n_neighbors: [1, 3]
        cv: {folds: 3, shuffle: false}
        strategy: {kind: grid}
        """
    )
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out, "-q")
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    assert len(_split_columns(table, "accuracy")) == 3

    frame = pd.read_csv(data)
    X, y, groups = frame[["x1", "x2"]], frame["label"], frame["customer"]
    for _, row in table.iterrows():
        model = KNeighborsClassifier(n_neighbors=int(row["param_n_neighbors"]))
        reference = cross_validate(model, X, y, groups=groups, cv=GroupKFold(3), return_train_score=True)
        _assert_same_scores(row, reference, "accuracy", 3)
    # The data tells a leak from group CV: stratified folds that mix customers score 1.0 here.
    leaky = cross_validate(KNeighborsClassifier(n_neighbors=1), X, y, cv=StratifiedKFold(3))["test_score"]
    one = table.loc[table["param_n_neighbors"] == 1].iloc[0]
    assert leaky.min() == 1.0 and one["mean_test_accuracy"] < 0.9


def test_a_groups_column_keeps_whole_groups_out_of_the_test_split(write_spec, tmp_path: Path) -> None:
    _grouped_csv(tmp_path / "customers.csv")
    spec = write_spec(
        """
        name: grouped-holdout
        seed: 4
        data: {path: customers.csv, target: label, groups: customer, test_size: 0.25}
        model: {estimator: knn, preprocessing: none}
        search_space:
          n_neighbors: [1]
        cv: {folds: 3}
        strategy: {kind: grid}
        """
    )
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out, "-q")
    assert result.exit_code == 0, result
    rows = json.loads((out / "run.json").read_text())["data"]
    # A row-wise 25% split would hold out 38 of 150 rows; whole customers come in tens.
    assert rows["train_rows"] + rows["test_rows"] == GROUP_SIZE * N_GROUPS
    assert rows["test_rows"] > 0 and rows["test_rows"] % GROUP_SIZE == 0, rows
    # With shuffled group folds too, no customer is on both sides of a fold: 1-NN stays far from
    # the 1.0 a leak gives.
    table = pd.read_csv(out / "trials.csv")
    assert len(_split_columns(table, "accuracy")) == 3 and table["mean_test_accuracy"].iloc[0] < 0.9


def test_group_cv_without_a_groups_column_is_refused(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: no-groups
        data: {dataset: iris}
        model: {estimator: decision_tree}
        search_space:
          max_depth: {type: int, low: 1, high: 6}
        cv: {kind: group, folds: 3}
        """
    )
    result = run_cli("run", spec, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "experiment.yaml:6:6: cv.kind: group CV needs `data.groups`" in result.stderr
    assert not (tmp_path / "out").exists()


def test_timeseries_cv_holds_out_the_last_rows_and_splits_in_time_order(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: in-time
        data: {dataset: diabetes, test_size: 0.2}
        model: {estimator: ridge, preprocessing: none}
        search_space:
          alpha: [0.01, 1.0]
        cv: {kind: timeseries, folds: 3}
        strategy: {kind: grid}
        """
    )
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out, "-q")
    assert result.exit_code == 0, result
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    rows = json.loads((out / "run.json").read_text())["data"]
    train_rows = rows["train_rows"]
    assert train_rows + rows["test_rows"] == len(y) and abs(rows["test_rows"] - 0.2 * len(y)) <= 1

    # The search saw the first rows only, in order, in time-series folds.
    table = pd.read_csv(out / "trials.csv")
    assert _split_columns(table, "r2") == ["split0_test_r2", "split1_test_r2", "split2_test_r2"]
    for _, row in table.iterrows():
        reference = cross_validate(
            Ridge(alpha=row["param_alpha"], random_state=0), X.iloc[:train_rows], y.iloc[:train_rows],
            cv=TimeSeriesSplit(3), return_train_score=True,
        )
        _assert_same_scores(row, reference, "r2", 3)
    # ... and the held-out test set is the last rows.
    best = yaml.safe_load((out / "best.yaml").read_text())
    model = joblib.load(out / "model.joblib")
    assert abs(model.score(X.iloc[train_rows:], y.iloc[train_rows:]) - best["test_score"]) <= 1e-12


def test_repeats_give_folds_times_repeats_splits(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: repeated
        seed: 4
        data: {dataset: iris, test_size: 0}
        model: {estimator: decision_tree, preprocessing: none}
        search_space:
          max_depth: [2, 4]
        cv: {folds: 3, repeats: 2}
        strategy: {kind: grid}
        """
    )
    out = tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    table = pd.read_csv(out / "trials.csv")
    assert _split_columns(table, "accuracy") == [f"split{k}_test_accuracy" for k in range(6)]
    X, y = load_iris(return_X_y=True, as_frame=True)
    folds = RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=4)
    for _, row in table.iterrows():
        model = DecisionTreeClassifier(max_depth=int(row["param_max_depth"]), random_state=4)
        _assert_same_scores(row, cross_validate(model, X, y, cv=folds, return_train_score=True), "accuracy", 6)
        assert row["mean_test_accuracy"] == pytest.approx(row[_split_columns(table, "accuracy")].mean(), abs=1e-12)


def test_shuffle_cv_gives_folds_random_splits_of_the_validation_share(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: shuffled
        seed: 6
        data: {dataset: diabetes, test_size: 0}
        model: {estimator: ridge, preprocessing: none}
        search_space:
          alpha: [0.1, 10.0]
        cv: {kind: shuffle, folds: 4, test_size: 0.3}
        strategy: {kind: grid}
        """
    )
    out = tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    table = pd.read_csv(out / "trials.csv")
    assert _split_columns(table, "r2") == [f"split{k}_test_r2" for k in range(4)]
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    folds = ShuffleSplit(n_splits=4, test_size=0.3, random_state=6)
    for _, row in table.iterrows():
        model = Ridge(alpha=row["param_alpha"], random_state=6)
        _assert_same_scores(row, cross_validate(model, X, y, cv=folds, return_train_score=True), "r2", 4)
