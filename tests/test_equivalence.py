"""hptune scores exactly as scikit-learn does on the same folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from tests.conftest import run_cli


def test_grid_search_matches_grid_search_cv(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: grid-vs-sklearn
        data: {dataset: wine, test_size: 0}
        model: {estimator: sklearn.svm.SVC, preprocessing: none}
        search_space:
          C: {type: float, low: 0.1, high: 1000, log: true, grid: [0.1, 1, 10, 100, 1000]}
          gamma: {type: float, low: 1.0e-6, high: 1.0e-2, log: true, grid: [1.0e-6, 1.0e-5, 1.0e-4, 1.0e-3]}
        cv: {kind: stratified, folds: 4, shuffle: false}
        strategy: {kind: grid}
        """
    )
    out = tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    ours = pd.read_csv(out / "trials.csv")

    X, y = load_wine(return_X_y=True, as_frame=True)
    grid = {"C": [0.1, 1, 10, 100, 1000], "gamma": [1e-6, 1e-5, 1e-4, 1e-3]}
    theirs = GridSearchCV(SVC(random_state=0), grid, cv=StratifiedKFold(4)).fit(X, y)

    assert len(ours) == len(theirs.cv_results_["params"]) == 20
    for index, params in enumerate(theirs.cv_results_["params"]):
        row = ours[np.isclose(ours["param_C"], params["C"]) & np.isclose(ours["param_gamma"], params["gamma"])]
        assert len(row) == 1, params
        assert abs(row["mean_test_accuracy"].iloc[0] - theirs.cv_results_["mean_test_score"][index]) <= 1e-9
        assert row["rank_test_accuracy"].iloc[0] == theirs.cv_results_["rank_test_score"][index]
        for k in range(4):
            assert abs(row[f"split{k}_test_accuracy"].iloc[0] - theirs.cv_results_[f"split{k}_test_score"][index]) <= 1e-9
    best = __import__("yaml").safe_load((out / "best.yaml").read_text())
    assert {k: best["params"][k] for k in grid} == theirs.best_params_
    assert abs(best["cv_score"] - theirs.best_score_) <= 1e-9


@pytest.mark.parametrize("cache_mb", [None, 0], ids=["preprocessed-once-per-fold", "pipeline-per-trial"])
def test_trial_score_equals_cross_validate_on_the_same_pipeline_and_folds(
    cache_mb: int | None, write_spec, tmp_path: Path
) -> None:
    # By default the preprocessing is fitted once per fold and reused by every trial; with no
    # room for that (cache_mb: 0), each trial fits the whole pipeline. Both must be
    # cross_validate's numbers.
    spec = write_spec(
        f"""
        name: trial-vs-cross-validate
        seed: 7
        data: {{dataset: wine, test_size: 0}}
        model: {{estimator: logistic_regression, params: {{max_iter: 500}}}}
        search_space:
          C: {{type: float, low: 0.001, high: 10, log: true}}
        extra_metrics: [balanced_accuracy]
        cv: {{kind: stratified, folds: 3, shuffle: true}}
        strategy: {{kind: random, n_trials: 3, cache_mb: {'null' if cache_mb is None else cache_mb}}}
        """
    )
    out = tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    ours = pd.read_csv(out / "trials.csv")
    cache = json.loads((out / "run.json").read_text())["data"]["fold_cache_mb_per_process"]
    assert cache == 0 if cache_mb == 0 else cache > 100  # a quarter of this machine's free memory
    cache = json.loads((out / "run.json").read_text())["data"]["fold_cache_mb_per_process"]
    assert cache == 0 if cache_mb == 0 else cache > 100  # a quarter of this machine's free memory

    X, y = load_wine(return_X_y=True, as_frame=True)
    folds = StratifiedKFold(3, shuffle=True, random_state=7)
    for _, row in ours.iterrows():
        # preprocessing: auto for a linear model = median imputation, then standard scaling.
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline

        pipeline = Pipeline([
            ("preprocess", ColumnTransformer([("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), list(X.columns))])),
            ("model", LogisticRegression(C=row["param_C"], max_iter=500, random_state=7)),
        ])
        reference = cross_validate(pipeline, X, y, cv=folds, scoring=["accuracy", "balanced_accuracy"], return_train_score=True)
        for k in range(3):  # equal up to the last bit or two of float rounding
            assert abs(row[f"split{k}_test_accuracy"] - reference["test_accuracy"][k]) <= 1e-12
            assert abs(row[f"split{k}_train_accuracy"] - reference["train_accuracy"][k]) <= 1e-12
            assert abs(row[f"split{k}_test_balanced_accuracy"] - reference["test_balanced_accuracy"][k]) <= 1e-12
        assert abs(row["mean_test_accuracy"] - reference["test_accuracy"].mean()) <= 1e-12


def test_the_fold_cache_is_a_share_of_free_memory_split_between_workers() -> None:
    from hptune.crossval import CACHE_SHARE, available_memory, cache_bytes_per_process

    assert cache_bytes_per_process(100, 4) == 25 * 2**20  # strategy.cache_mb, for all workers
    free = available_memory()
    assert free is not None and free > 0
    per_process = cache_bytes_per_process(None, 2)
    assert abs(per_process - CACHE_SHARE * free / 2) <= 0.05 * free  # free memory moves a little
