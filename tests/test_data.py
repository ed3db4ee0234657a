from __future__ import annotations

import pandas as pd

from hptune.data import Dataset, infer_task, split_holdout


def _dataset(n: int = 20) -> Dataset:
    X = pd.DataFrame({"t": range(n)})
    return Dataset(X, pd.Series([i % 2 for i in range(n)]), None, "sha", "test")


def test_time_ordered_holdout_is_the_last_rows() -> None:
    split = split_holdout(_dataset(), test_size=0.25, seed=0, task="classification", ordered=True)
    assert list(split.X_train["t"]) == list(range(15)) and list(split.X_test["t"]) == list(range(15, 20))


def test_shuffled_holdout_is_stratified_and_seeded() -> None:
    a = split_holdout(_dataset(), test_size=0.25, seed=0, task="classification")
    b = split_holdout(_dataset(), test_size=0.25, seed=0, task="classification")
    assert list(a.X_test["t"]) == list(b.X_test["t"]) != list(range(15, 20))
    assert sorted(a.y_test.value_counts()) == [2, 3]


def test_task_inference() -> None:
    assert infer_task(pd.Series(["a", "b"])) == "classification"
    assert infer_task(pd.Series([0, 1, 1, 0])) == "classification"
    assert infer_task(pd.Series([151.0, 75.0, 141.0] * 10 + list(range(30)))) == "regression"
    assert infer_task(pd.Series([0.5, 1.25])) == "regression"
