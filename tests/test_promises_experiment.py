"""README promises about what an experiment file may say: Parquet data, `preprocessing: none`,
and categorical choices whose values are lists."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import yaml
from sklearn.datasets import load_wine
from sklearn.svm import SVC

from tests.conftest import run_cli


def test_a_parquet_file_with_text_columns_tunes_end_to_end(write_spec, tmp_path: Path) -> None:
    import palmerpenguins

    frame = palmerpenguins.load_penguins()
    frame["island"] = frame["island"].astype("category")  # a categorical dtype, as Parquet keeps it
    frame.to_parquet(tmp_path / "penguins.parquet", index=False)
    back = pd.read_parquet(tmp_path / "penguins.parquet")
    assert not pd.api.types.is_numeric_dtype(back["sex"]) and back["sex"].isna().any()  # text with gaps
    spec = write_spec(
        """
        name: penguins-parquet
        data: {path: penguins.parquet, target: species, test_size: 0.25}
        model: {estimator: random_forest, params: {n_estimators: 20}}
        search_space:
          max_depth: {type: int, low: 2, high: 8}
        cv: {folds: 3}
        strategy: {kind: random, n_trials: 3}
        """
    )
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out, "-q")
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 3 and (table["state"] == "COMPLETE").all()
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["rows"] == len(frame) and run["data"]["features"] == frame.shape[1] - 1
    assert run["data"]["sha256"] == hashlib.sha256((tmp_path / "penguins.parquet").read_bytes()).hexdigest()
    assert yaml.safe_load((out / "best.yaml").read_text())["test_score"] > 0.9
    model = joblib.load(out / "model.joblib")
    rows = back.drop(columns=["species"])
    assert (model.predict(rows) == back["species"]).mean() > 0.9


def test_preprocessing_none_passes_numeric_data_to_the_model_untouched(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: untouched
        seed: 5
        data: {dataset: wine, test_size: 0}
        model: {estimator: svc, preprocessing: none}
        search_space:
          C: [0.5, 5.0]
        cv: {folds: 3}
        strategy: {kind: grid}
        """
    )
    out = tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["preprocessing"] == "none"
    # The shipped model is an SVC fitted on the raw columns (auto would standardise them for SVC).
    X, y = load_wine(return_X_y=True, as_frame=True)
    bare = SVC(C=best["params"]["C"], random_state=5).fit(X, y)
    np.testing.assert_allclose(joblib.load(out / "model.joblib").decision_function(X), bare.decision_function(X), atol=1e-12)


def test_preprocessing_none_on_text_columns_fails_every_trial_with_the_cause(penguins_csv: Path, write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        f"""
        name: text-untouched
        data: {{path: {penguins_csv}, target: species}}
        model: {{estimator: decision_tree, preprocessing: none}}
        search_space:
          max_depth: {{type: int, low: 1, high: 6}}
        cv: {{folds: 3}}
        strategy: {{kind: random, n_trials: 3}}
        """
    )
    out = tmp_path / "out"
    # validate says so before anything is trained (a warning: an estimator may handle text)...
    checked = run_cli("validate", spec)
    assert checked.exit_code == 0, checked
    assert "experiment.yaml:3:35: model.preprocessing: warning: is none, but columns 'island', 'sex' hold text" in checked.stderr
    result = run_cli("run", spec, "--out", out)
    # ...and if run anyway, the text reaches the model as it is: each trial fails on it, and the
    # run exits 1 with the cause once, as "Every trial fails" in the README describes.
    assert "model.preprocessing: warning: is none" in result.stderr
    assert result.exit_code == 1, result
    assert "all 3 trials failed; the model is likely misconfigured" in result.stderr
    assert "Most common error (3 of 3): ValueError: could not convert string to float" in result.stderr
    table = pd.read_csv(out / "trials.csv")
    assert (table["state"] == "FAIL").all() and table["error"].str.contains("could not convert string to float").all()
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    assert not (out / "best.yaml").exists() and not (out / "model.joblib").exists()


def test_list_valued_choices_reach_the_estimator(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: layers
        seed: 1
        data: {dataset: iris}
        model: {estimator: mlp, params: {max_iter: 50}}
        search_space:
          hidden_layer_sizes: [[8], [16, 8]]
          alpha: [0.0001, 0.1]
        cv: {folds: 3}
        strategy: {kind: grid}
        """
    )
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out, "-q")
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    assert (table["state"] == "COMPLETE").all()
    assert sorted(table["param_hidden_layer_sizes"]) == ["[16, 8]", "[16, 8]", "[8]", "[8]"]
    best = yaml.safe_load((out / "best.yaml").read_text())
    layers = best["params"]["hidden_layer_sizes"]
    assert layers in ([8], [16, 8])
    mlp = joblib.load(out / "model.joblib").named_steps["model"]
    assert isinstance(mlp.hidden_layer_sizes, (list, tuple)) and list(mlp.hidden_layer_sizes) == layers
    # The network really has those layers: one weight matrix per layer, plus the output.
    assert [w.shape[1] for w in mlp.coefs_[:-1]] == layers
