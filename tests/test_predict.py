"""`hptune predict`: a run's model on new rows, checked against the columns it was fitted on;
through the real CLI, on a CSV with text labels, an id column and missing values."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli


@pytest.fixture
def churn(tmp_path: Path) -> Path:
    """A small churn table: an id, text and numeric columns with gaps, a yes/no target."""
    rng = np.random.default_rng(0)
    n = 240
    frame = pd.DataFrame({
        "customer_id": [f"C{i:04d}" for i in range(n)],
        "plan": rng.choice(["basic", "plus", "pro"], n),
        "months": rng.integers(1, 60, n).astype(float),
        "calls": rng.poisson(3, n).astype(float),
    })
    frame.loc[rng.choice(n, 15, replace=False), "months"] = np.nan
    score = (frame["plan"] == "basic") * 1.0 + frame["calls"] / 3 - frame["months"].fillna(30) / 30
    frame["churned"] = np.where(score + rng.normal(0, 0.5, n) > 0.5, "yes", "no")
    path = tmp_path / "churn.csv"
    frame.to_csv(path, index=False)
    return path


def _run(write_spec, tmp_path: Path, churn: Path, model: str = "logistic_regression", target: str = "churned") -> Path:
    spec = write_spec(f"""
name: churn
data: {{path: {churn}, target: {target}, drop: [customer_id], test_size: 0.2}}
model: {{estimator: {model}}}
search_space:
  {"C: [0.1, 1.0]" if model == "logistic_regression" else "alpha: [0.1, 1.0]"}
cv: {{folds: 3}}
strategy: {{kind: grid}}
""")
    out = tmp_path / "run"
    assert run_cli("run", spec, "--out", out).exit_code == 0
    return out


def test_predictions_keep_the_id_and_match_the_model(write_spec, tmp_path: Path, churn: Path) -> None:
    out = _run(write_spec, tmp_path, churn)
    new = pd.read_csv(churn).sample(frac=1.0, random_state=1)  # other order of rows
    new = new[["calls", "churned", "customer_id", "months", "plan"]].assign(region="north")  # other order, an extra column
    new_path = tmp_path / "new.csv"
    new.to_csv(new_path, index=False)
    result = run_cli("predict", out, new_path, "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert list(predicted.columns) == ["customer_id", "prediction"] and len(predicted) == len(new)
    assert predicted["customer_id"].tolist() == new["customer_id"].tolist()
    model = joblib.load(out / "model.joblib")
    expected = model.predict(new[["plan", "months", "calls"]])
    assert predicted["prediction"].tolist() == list(expected) and set(expected) <= {"yes", "no"}
    assert "note: the target column 'churned' is ignored" in result.stderr
    assert "1 column(s) the model was not fitted on are ignored: 'region'" in result.stderr


def test_probabilities_and_parquet(write_spec, tmp_path: Path, churn: Path) -> None:
    out = _run(write_spec, tmp_path, churn)
    new = pd.read_csv(churn).drop(columns=["churned"]).head(20)
    new.to_parquet(tmp_path / "new.parquet")
    result = run_cli("predict", out, tmp_path / "new.parquet", "-o", tmp_path / "p.parquet", "--proba")
    assert result.exit_code == 0, result
    predicted = pd.read_parquet(tmp_path / "p.parquet")
    assert list(predicted.columns) == ["customer_id", "proba_no", "proba_yes"]
    assert np.allclose(predicted[["proba_no", "proba_yes"]].sum(axis=1), 1.0)


def test_a_missing_column_and_proba_on_a_regressor_are_one_line_errors(write_spec, tmp_path: Path, churn: Path) -> None:
    out = _run(write_spec, tmp_path, churn)
    new_path = tmp_path / "new.csv"
    pd.read_csv(churn).drop(columns=["months"]).to_csv(new_path, index=False)
    result = run_cli("predict", out, new_path, "-o", tmp_path / "p.csv")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {new_path}: missing column 'months', which the model was fitted on"
    assert not (tmp_path / "p.csv").exists()
    # A regressor (spend, a continuous target) has no probabilities to give.
    frame = pd.read_csv(churn).drop(columns=["churned"])
    frame["spend"] = frame["calls"] * 10.0 + np.linspace(0.0, 1.0, len(frame))
    frame.to_csv(tmp_path / "spend.csv", index=False)
    (tmp_path / "r").mkdir()
    regression = _run(write_spec, tmp_path / "r", tmp_path / "spend.csv", model="ridge", target="spend")
    refused = run_cli("predict", regression, tmp_path / "spend.csv", "-o", tmp_path / "r.csv", "--proba")
    assert refused.exit_code == 2 and "--proba needs a classifier" in refused.stderr
