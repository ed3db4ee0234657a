"""Overfitting seen and constrained: trials.csv's overfit_gap, the summary's warning, and
``constraints:`` (feasible trials only may be the best; Optuna's TPE is told), through the real
CLI on real data."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import optuna
import pandas as pd
import pytest
import yaml

from hptune.storage import journal_storage
from tests.conftest import run_cli

# Deep trees on breast cancer fit their training rows perfectly (train accuracy 1.0) and score
# about 0.92 in CV: the gap the summary must point out. Shallow ones generalise.
TREES = """
name: trees
seed: 0
data: {{dataset: breast_cancer, test_size: 0.2}}
model: {{estimator: sklearn.tree.DecisionTreeClassifier}}
search_space:
  max_depth: {{type: int, low: 1, high: 12}}
  min_samples_leaf: {{type: int, low: 1, high: 30}}
cv: {{folds: 3}}
strategy: {{kind: bayesian, n_trials: {n_trials}, pruner: none}}
{extra}
"""


def _run(write_spec, out: Path, n_trials: int = 12, extra: str = "", *args: str):
    return run_cli("run", write_spec(TREES.format(n_trials=n_trials, extra=extra)), "--out", out, *args)


def test_trials_csv_has_the_overfit_gap_and_the_summary_warns_when_the_best_overfits(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # A deep, leafy tree only: it is the best and it overfits.
    spec = write_spec("""
name: deep
data: {dataset: breast_cancer, test_size: 0.2}
model: {estimator: sklearn.tree.DecisionTreeClassifier, params: {random_state: 0}}
search_space:
  max_depth: [20, 30]
cv: {folds: 3}
strategy: {kind: grid}
""")
    result = run_cli("run", spec, "--out", out)
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    gap = table["mean_train_accuracy"] - table["mean_test_accuracy"]
    assert table["overfit_gap"].tolist() == pytest.approx(gap.tolist(), abs=1e-12)
    assert (table["mean_train_accuracy"] == 1.0).all() and (table["overfit_gap"] > 0.05).all()
    record = json.loads((out / "run.json").read_text())
    assert record["overfit_gap"]["warning_above"] == 0.05
    assert record["overfit_gap"]["best"] == pytest.approx(float(gap.iloc[0]))
    said = " ".join(result.stdout.split())
    assert "warning: overfitting: the best trial's train accuracy is" in said
    assert "constraints: {max_overfit_gap: 0.05}" in said


def test_no_warning_when_the_best_generalises(write_spec, tmp_path: Path) -> None:
    spec = write_spec("""
name: stumps
data: {dataset: breast_cancer, test_size: 0.2}
model: {estimator: sklearn.linear_model.LogisticRegression, params: {max_iter: 5000}}
search_space:
  C: [0.01, 0.1]
cv: {folds: 3}
strategy: {kind: grid}
""")
    result = run_cli("run", spec, "--out", tmp_path / "out")
    assert result.exit_code == 0, result
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["overfit_gap"]["best"] < 0.05 and "overfitting" not in result.stdout


def test_max_overfit_gap_makes_overfitting_trials_infeasible_and_tpe_is_told(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _run(write_spec, out, 16, "constraints: {max_overfit_gap: 0.03}")
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    complete = table[table["state"] == "COMPLETE"]
    assert (complete["feasible"] == (complete["overfit_gap"] <= 0.03)).all()
    assert complete["feasible"].any() and not complete["feasible"].all()  # the limit bites, and is met
    best = yaml.safe_load((out / "best.yaml").read_text())
    row = table.set_index("number").loc[best["trial"]]
    assert row["feasible"] and row["rank_test_accuracy"] == 1
    # The best feasible trial, not the best trial: some infeasible one scores higher.
    assert row["mean_test_accuracy"] == complete[complete["feasible"]]["mean_test_accuracy"].max()
    assert (complete[~complete["feasible"].astype(bool)]["rank_test_accuracy"] > complete["feasible"].sum()).all()
    # Optuna's own constraints support holds each trial's excess (what TPE splits on).
    study = optuna.load_study(study_name="trees", storage=journal_storage(out / "study.journal"))
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        excess = table.set_index("number").loc[trial.number, "overfit_gap"] - 0.03
        assert trial.constraints == {"max_overfit_gap": pytest.approx(excess)}
    record = json.loads((out / "run.json").read_text())
    assert record["constraints"] == {"limits": {"max_overfit_gap": 0.03}, "complete": len(complete),
                                     "feasible": int(complete["feasible"].sum())}
    assert f"feasible: {int(complete['feasible'].sum())} of {len(complete)} complete trials" in result.stdout


def test_when_no_trial_keeps_the_limits_the_outputs_say_so_and_the_run_exits_1(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _run(write_spec, out, 5, "constraints: {max_fit_time: 0.000001, max_overfit_gap: 0.5}")
    assert result.exit_code == 1, result
    lines = result.stderr.splitlines()
    assert any("no trial kept every constraint (5 complete trials):" in line for line in lines)
    assert any(line.strip().startswith("max_fit_time 1e-06 s: broken by 5 of 5 trials; closest: trial") for line in lines)
    assert any(line.strip() == "max_overfit_gap 0.5: broken by 0 of 5 trials" for line in lines)
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "infeasible" and record["constraints"]["feasible"] == 0
    assert len(record["constraints"]["broken"]) == 2
    assert len(pd.read_csv(out / "trials.csv")) == 5
    assert not (out / "best.yaml").exists() and not (out / "model.joblib").exists()
    assert "Traceback" not in result.stderr


def test_max_model_mb_measures_each_trial_s_pipeline(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = write_spec("""
name: forests
data: {dataset: breast_cancer, test_size: 0.2}
model: {estimator: random_forest, params: {random_state: 0}}
search_space:
  n_estimators: [5, 150]
cv: {folds: 3}
strategy: {kind: grid}
constraints: {max_model_mb: 0.1}
""")
    result = run_cli("run", spec, "--out", out)
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv").set_index("param_n_estimators")
    small, large = table.loc[5], table.loc[150]
    assert 0 < small["model_mb"] < 0.1 < large["model_mb"]
    assert small["feasible"] and not large["feasible"]
    # The measure is what the file of that model weighs: the refit (on all the training rows,
    # so somewhat larger trees than on two thirds of them) is within a factor of two.
    assert yaml.safe_load((out / "best.yaml").read_text())["params"]["n_estimators"] == 5
    on_disk = (out / "model.joblib").stat().st_size / 2**20
    assert small["model_mb"] <= on_disk <= 2 * small["model_mb"]
    assert joblib.load(out / "model.joblib").named_steps["model"].n_estimators == 5


def test_a_limit_added_later_judges_the_trials_already_run(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(write_spec, out, 8).exit_code == 0
    before = yaml.safe_load((out / "best.yaml").read_text())
    table = pd.read_csv(out / "trials.csv")
    gaps = table.set_index("number")["overfit_gap"]
    assert gaps.min() < gaps.loc[before["trial"]]  # some trial generalises better than the best
    limit = round(float(gaps.min() + gaps.loc[before["trial"]]) / 2, 6)
    # Same experiment, a limit the best breaks: the study resumes (no --fresh), no trial re-runs,
    # and the best is now the best trial within the limit.
    again = _run(write_spec, out, 8, f"constraints: {{max_overfit_gap: {limit}}}")
    assert again.exit_code == 0, again
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 8 and "resumed after 8" in again.stdout
    feasible = table[table["overfit_gap"] <= limit]
    assert table["feasible"].tolist() == (table["overfit_gap"] <= limit).tolist()
    after = yaml.safe_load((out / "best.yaml").read_text())
    assert after["trial"] != before["trial"]
    ranked = feasible.sort_values(["mean_test_accuracy", "number"], ascending=[False, True])
    assert after["trial"] == int(ranked["number"].iloc[0])


def test_a_limit_no_trial_keeps_any_more_removes_the_earlier_best_and_model(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(write_spec, out, 4).exit_code == 0
    assert (out / "best.yaml").exists() and (out / "model.joblib").exists()
    tightened = _run(write_spec, out, 4, "constraints: {max_fit_time: 0.000001}")
    assert tightened.exit_code == 1, tightened
    # A pipeline shipping model.joblib must not ship one that breaks today's limit.
    assert not (out / "best.yaml").exists() and not (out / "model.joblib").exists()
    assert sorted(json.loads((out / "run.json").read_text())["files"]) == ["trials.csv"]
    # The study kept every trial: loosening the limit brings the best back, no trial re-run.
    again = _run(write_spec, out, 4, "constraints: {max_fit_time: 60}")
    assert again.exit_code == 0 and (out / "best.yaml").exists() and len(pd.read_csv(out / "trials.csv")) == 4


def test_infeasible_trials_reach_no_stop_target(write_spec, tmp_path: Path) -> None:
    # Every trial scores above the target, none keeps the limit: the search runs its budget.
    out = tmp_path / "out"
    result = _run(write_spec, out, 5, "constraints: {max_fit_time: 0.000001}\nstop: {target: 0.5}")
    assert result.exit_code == 1
    assert json.loads((out / "run.json").read_text())["stop_reason"] == "budget"
    assert len(pd.read_csv(out / "trials.csv")) == 5


def test_a_measure_at_its_limit_keeps_it_whatever_the_rounding() -> None:
    from hptune.constraints import Limits

    limits = Limits("accuracy", max_overfit_gap=0.05)
    # Means of these folds give 0.04999999999999993 or 0.050000000000000155 depending on the order.
    for test in ([0.95, 0.95, 0.95], [0.9, 1.0, 0.95], [0.85, 0.95, 1.05]):
        assert limits.excess({"test": {"accuracy": test}, "train": {"accuracy": [1.0] * 3}}) == {"max_overfit_gap": 0.0}
    assert limits.excess({"test": {"accuracy": [0.94] * 3}, "train": {"accuracy": [1.0] * 3}})["max_overfit_gap"] > 0


def test_the_warning_threshold_of_an_error_metric_is_a_share_of_the_cv_error(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = write_spec("""
name: deep-regression
data: {dataset: diabetes, test_size: 0.2}
model: {estimator: sklearn.tree.DecisionTreeRegressor, params: {random_state: 0}}
search_space:
  max_depth: [30]
metric: neg_root_mean_squared_error
cv: {folds: 3}
strategy: {kind: grid}
""")
    result = run_cli("run", spec, "--out", out)
    assert result.exit_code == 0, result
    record = json.loads((out / "run.json").read_text())
    # A fully grown tree: train RMSE 0, CV RMSE about 80; the gap is the whole CV error.
    assert record["overfit_gap"]["warning_above"] == pytest.approx(0.25 * abs(record["cv_score"]))
    assert record["overfit_gap"]["best"] == pytest.approx(abs(record["cv_score"]), rel=1e-6)
    assert "warning: overfitting" in result.stdout


def test_cmaes_is_not_told_the_limits_and_says_nothing_about_them(write_spec, tmp_path: Path) -> None:
    spec = write_spec(TREES.format(n_trials=5, extra="constraints: {max_overfit_gap: 0.03}").replace("kind: bayesian", "kind: cmaes"))
    result = run_cli("run", spec, "--out", tmp_path / "out", "-q")
    assert result.exit_code in (0, 1), result
    assert "will not use them" not in result.stderr and "UserWarning" not in result.stderr
