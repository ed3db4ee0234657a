"""End-to-end runs through the real CLI on small bundled data sets."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import ALL_FAILED, CONFIGS, run_cli

SVC_IRIS = """
name: svc-iris
seed: 3
data: {dataset: iris, test_size: 0.2}
model: {estimator: svc}
search_space:
  C: {type: float, low: 0.01, high: 100, log: true}
  kernel: [rbf, linear]
  gamma: {type: float, low: 1.0e-3, high: 1.0, log: true, when: {kernel: rbf}}
extra_metrics: [f1_macro]
cv: {folds: 3}
strategy: {kind: random, n_trials: 6, pruner: none}  # every trial complete: what this file checks
"""


def test_run_writes_every_output(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", write_spec(SVC_IRIS), "--out", out)
    assert result.exit_code == 0, result
    assert {p.name for p in out.iterdir()} >= {"study.journal", "trials.csv", "best.yaml", "model.joblib", "run.json"}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 6 and (table["state"] == "COMPLETE").all()
    for column in ["number", "state", "param_C", "param_kernel", "param_gamma", "split0_test_accuracy",
                   "split2_test_accuracy", "mean_test_accuracy", "std_test_accuracy", "rank_test_accuracy",
                   "mean_train_accuracy", "mean_test_f1_macro", "mean_fit_time", "duration", "error"]:
        assert column in table.columns
    # A conditional parameter is absent (empty), not a dummy value, where its condition fails.
    linear = table["param_kernel"] == "linear"
    assert linear.any() and table.loc[linear, "param_gamma"].isna().all()
    assert table.loc[~linear, "param_gamma"].notna().all()

    best = yaml.safe_load((out / "best.yaml").read_text())
    assert list(best) == ["name", "estimator", "preprocessing", "metric", "cv_score", "cv_std",
                          "train_score", "test_score", "trial", "params"]
    assert best["estimator"] == "sklearn.svm.SVC" and best["metric"] == "accuracy"
    winner = table.loc[table["rank_test_accuracy"] == 1].iloc[0]
    assert best["trial"] == winner["number"]
    assert best["cv_score"] == winner["mean_test_accuracy"]
    assert best["params"]["C"] == winner["param_C"] and best["params"]["random_state"] == 3

    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete"
    assert run["trials"] == {"complete": 6, "fail": 0, "pruned": 0, "interrupted": 0, "running": 0}
    assert run["packages"]["scikit-learn"] and run["python"]
    assert len(run["data"]["sha256"]) == 64 and len(run["experiment"]["fingerprint"]) == 64
    assert run["test_score"] == best["test_score"] and run["cv_score"] == best["cv_score"]

    # The model is refitted on the training split only and reproduces the reported test score.
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    X, y = load_iris(return_X_y=True, as_frame=True)
    _, X_test, _, y_test = train_test_split(X, y, test_size=0.2, random_state=3, stratify=y)
    model = joblib.load(out / "model.joblib")
    assert model.score(X_test.sort_index(), y_test.sort_index()) == pytest.approx(best["test_score"], abs=1e-12)
    assert run["data"]["train_rows"] == 120 and run["data"]["test_rows"] == 30
    assert "best trial" in result.stdout and "test accuracy" in result.stdout


def test_same_experiment_and_seed_give_identical_files(write_spec, tmp_path: Path) -> None:
    spec = write_spec(SVC_IRIS.replace("kind: random", "kind: bayesian"))
    for folder in ("a", "b"):
        assert run_cli("run", spec, "--out", tmp_path / folder, "--quiet").exit_code == 0
    assert (tmp_path / "a/best.yaml").read_bytes() == (tmp_path / "b/best.yaml").read_bytes()
    a, b = (pd.read_csv(tmp_path / f / "trials.csv") for f in ("a", "b"))
    stable = [c for c in a.columns if "time" not in c and c != "duration"]
    pd.testing.assert_frame_equal(a[stable], b[stable])


def test_a_different_seed_gives_different_trials(write_spec, tmp_path: Path) -> None:
    spec = write_spec(SVC_IRIS)
    assert run_cli("run", spec, "--out", tmp_path / "a", "-q").exit_code == 0
    assert run_cli("run", spec, "--out", tmp_path / "b", "-q", "--seed", "4").exit_code == 0
    a, b = (pd.read_csv(tmp_path / f / "trials.csv") for f in ("a", "b"))
    assert not np.allclose(a["param_C"], b["param_C"])


def test_failed_trials_are_recorded_and_the_run_goes_on(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: some-fail
        data: {dataset: wine, test_size: 0}
        model: {estimator: decision_tree}
        search_space:
          min_samples_split: [1, 2, 4]
        cv: {folds: 3}
        strategy: {kind: grid}
        """
    )
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out)
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    failed = table[table["param_min_samples_split"] == 1].iloc[0]
    assert failed["state"] == "FAIL"
    assert "InvalidParameterError" in failed["error"] and "min_samples_split" in failed["error"]
    assert failed["rank_test_accuracy"] == 3
    assert (table[table["state"] == "COMPLETE"]["error"].isna()).all()
    assert "failed 1x: InvalidParameterError" in result.stdout
    assert "test_score" not in yaml.safe_load((out / "best.yaml").read_text())


def test_every_trial_failing_exits_1_with_the_error_once(write_spec, tmp_path: Path) -> None:
    spec = write_spec(ALL_FAILED)
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out)
    assert result.exit_code == 1, result
    assert "Most common error (2 of 2): InvalidParameterError" in result.stderr
    assert "all 2 trials failed; the model is likely misconfigured" in result.stderr
    assert result.stderr.count("InvalidParameterError") == 1
    assert not (out / "best.yaml").exists() and not (out / "model.joblib").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    assert len(pd.read_csv(out / "trials.csv")) == 2


def test_penguins_csv_with_text_and_missing_values_tunes_with_auto_preprocessing(
    penguins_csv: Path, write_spec, tmp_path: Path
) -> None:
    raw = pd.read_csv(penguins_csv)
    assert raw.isna().any().any() and raw["island"].dtype != float  # the fixture is what we claim
    spec = write_spec(
        f"""
        name: penguins
        data: {{path: {penguins_csv}, target: species, test_size: 0.25}}
        model: {{estimator: random_forest, params: {{n_estimators: 20}}}}
        search_space:
          max_depth: {{type: int, low: 2, high: 8}}
          max_features: [sqrt, null]
        cv: {{folds: 3}}
        strategy: {{kind: bayesian, n_trials: 4}}
        """
    )
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out)
    assert result.exit_code == 0, result
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["test_score"] > 0.9
    model = joblib.load(out / "model.joblib")
    rows = raw.drop(columns=["species"]).head(5)
    assert rows.isna().any().any()
    assert set(model.predict(rows)) <= set(raw["species"])


def test_study_is_resumed_and_extended_not_restarted(write_spec, tmp_path: Path) -> None:
    spec = write_spec(SVC_IRIS)
    out = tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "--n-trials", "3", "-q").exit_code == 0
    again = run_cli("run", spec, "--out", out, "--n-trials", "5")
    assert again.exit_code == 0, again
    assert "resuming: 3 of 5 trials done" in again.stderr
    table = pd.read_csv(out / "trials.csv")
    assert list(table["number"]) == [0, 1, 2, 3, 4]


def test_raising_n_trials_extends_a_grid_with_the_points_not_yet_run(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: grid-extend
        data: {dataset: iris}
        model: {estimator: decision_tree}
        search_space:
          max_depth: [1, 2, 3, 4, 5, 6]
        cv: {folds: 3}
        strategy: {kind: grid}
        """
    )
    out = tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "--n-trials", "2", "-q").exit_code == 0
    assert list(pd.read_csv(out / "trials.csv")["param_max_depth"]) == [1, 2]
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    assert sorted(pd.read_csv(out / "trials.csv")["param_max_depth"]) == [1, 2, 3, 4, 5, 6]


def test_a_changed_experiment_does_not_mix_into_an_old_study(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("run", write_spec(SVC_IRIS), "--out", out, "-q").exit_code == 0
    changed = write_spec(SVC_IRIS.replace("folds: 3", "folds: 4"), name="changed.yaml")
    result = run_cli("run", changed, "--out", out)
    assert result.exit_code == 2
    assert "holds a study of a different experiment" in result.stderr


def test_quiet_prints_only_the_summary(write_spec, tmp_path: Path) -> None:
    result = run_cli("run", write_spec(SVC_IRIS), "--out", tmp_path / "o", "--quiet")
    assert result.exit_code == 0
    assert "trial 6/6 done" not in result.stderr and "cv accuracy" in result.stdout
    loud = run_cli("run", write_spec(SVC_IRIS), "--out", tmp_path / "p")
    assert "trial 6/6 done" in loud.stderr


def test_train_scores_can_be_turned_off(write_spec, tmp_path: Path) -> None:
    spec = write_spec(SVC_IRIS.replace("cv: {folds: 3}", "cv: {folds: 3, train_scores: false}"))
    assert run_cli("run", spec, "--out", tmp_path / "o", "-q").exit_code == 0
    table = pd.read_csv(tmp_path / "o" / "trials.csv")
    assert not [c for c in table.columns if "_train_" in c]
    assert "train_score" not in yaml.safe_load((tmp_path / "o" / "best.yaml").read_text())


@pytest.mark.parametrize("strategy", ["cmaes", "qmc"])
def test_other_strategies_run(strategy: str, write_spec, tmp_path: Path) -> None:
    spec = write_spec(SVC_IRIS.replace("kind: random, n_trials: 6", f"kind: {strategy}, n_trials: 4"))
    result = run_cli("run", spec, "--out", tmp_path / "o", "-q")
    assert result.exit_code == 0, result
    assert len(pd.read_csv(tmp_path / "o" / "trials.csv")) == 4


def test_cli_options_override_the_file(write_spec, tmp_path: Path) -> None:
    result = run_cli("run", write_spec(SVC_IRIS), "--out", tmp_path / "o", "--n-trials", "2", "--timeout", "5m", "-q")
    assert result.exit_code == 0
    assert len(pd.read_csv(tmp_path / "o" / "trials.csv")) == 2
    bad = run_cli("run", write_spec(SVC_IRIS), "--timeout", "soon")
    assert bad.exit_code == 2 and "expected a duration" in bad.stderr


CONFIG_FILES = sorted(CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIG_FILES, ids=[c.stem for c in CONFIG_FILES])
def test_bundled_examples_validate_and_run(config: Path, tmp_path: Path) -> None:
    assert run_cli("validate", config).exit_code == 0
    result = run_cli("run", config, "--out", tmp_path / "o", "--n-trials", "2", "-q")
    assert result.exit_code == 0, result
    assert (tmp_path / "o" / "best.yaml").exists()


def test_examples_cover_the_promised_kinds() -> None:
    specs = [yaml.safe_load(c.read_text()) for c in CONFIG_FILES]
    assert any(s["data"].get("dataset") == "diabetes" for s in specs)  # a regressor
    assert any(s["data"].get("path", "").endswith(".csv") for s in specs)  # a CSV
    assert any(s.get("strategy", {}).get("kind") == "grid" for s in specs)
    assert len(specs) >= 4


def test_an_output_folder_that_cannot_be_made_is_one_clear_error(write_spec, tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    result = run_cli("run", write_spec(SVC_IRIS), "--out", blocker / "out")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: Not a directory: {blocker / 'out'}"


def test_a_trial_s_warnings_are_in_trials_csv(write_spec, tmp_path: Path) -> None:
    # One iteration of lbfgs never converges: every trial warns, once per fold, the same words.
    spec = write_spec("""
name: warned
data: {dataset: iris, test_size: 0}
model: {estimator: sklearn.linear_model.LogisticRegression, params: {max_iter: 1}, preprocessing: none}
search_space:
  C: [0.1, 10]
cv: {folds: 3}
strategy: {kind: grid}
""")
    assert run_cli("run", spec, "--out", tmp_path / "out").exit_code == 0
    table = pd.read_csv(tmp_path / "out" / "trials.csv")
    for text in table["warnings"]:
        assert text.startswith("ConvergenceWarning: lbfgs failed to converge") and text.count("ConvergenceWarning") == 1
