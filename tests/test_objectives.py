"""Several objectives: Optuna's multi-objective study, the Pareto front in trials.csv and
pareto.csv, the trial ``select`` picks, with constraints, resume and workers; through the real
CLI on real data. Model size is the cost objective here: unlike a time, it is the same from
run to run, so the fronts can be checked exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from hptune.storage import journal_storage
from tests.conftest import run_cli

FORESTS = """
name: forests
seed: 0
data: {{dataset: breast_cancer, test_size: 0.2}}
model: {{estimator: random_forest, params: {{n_jobs: 1}}}}
search_space:
  n_estimators: {{type: int, low: 2, high: 60, log: true}}
  max_depth: {{type: int, low: 1, high: 8}}
objectives: [accuracy, model_mb]
cv: {{folds: 3}}
strategy: {{kind: {kind}, n_trials: {n_trials}}}
{extra}
"""


def _run(write_spec, out: Path, n_trials: int = 10, extra: str = "", kind: str = "bayesian", *args: str):
    spec = write_spec(FORESTS.format(n_trials=n_trials, extra=extra, kind=kind))
    return run_cli("run", spec, "--out", out, *args), spec


def _front(table: pd.DataFrame) -> set[int]:
    """The non-dominated complete trials, computed here from trials.csv alone."""
    rows = table[table["state"] == "COMPLETE"]
    gains = np.column_stack([rows["mean_test_accuracy"], -rows["model_mb"]])
    keep = set()
    for number, row in zip(rows["number"], gains, strict=True):
        if not np.any(np.all(gains >= row, axis=1) & np.any(gains > row, axis=1)):
            keep.add(int(number))
    return keep


def test_the_study_optimises_both_and_the_outputs_hold_the_front(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, _ = _run(write_spec, out)
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 10 and (table["model_mb"] > 0).all()
    front = _front(table)
    assert set(table.loc[table["pareto"] == True, "number"]) == front  # noqa: E712
    assert 1 < len(front) < 10  # a real trade-off: more trees score better and weigh more
    pareto = pd.read_csv(out / "pareto.csv")
    assert set(pareto["number"]) == front and list(pareto.columns) == list(table.columns)
    # select defaults to the first objective: the front's most accurate trial (earliest of equals).
    best = yaml.safe_load((out / "best.yaml").read_text())
    on_front = table[table["number"].isin(front)]
    top = on_front.sort_values(["mean_test_accuracy", "model_mb", "number"], ascending=[False, True, True]).iloc[0]
    assert best["trial"] == int(top["number"])
    assert best["objectives"] == ["accuracy", "model_mb"] and best["select"] == "accuracy"
    assert best["cv_score"] == pytest.approx(top["mean_test_accuracy"])
    record = json.loads((out / "run.json").read_text())
    assert record["objectives"]["directions"] == ["maximize", "minimize"]
    assert set(record["objectives"]["pareto_trials"]) == front
    assert record["objectives"]["best_values"]["model_mb"] == pytest.approx(top["model_mb"])
    assert record["files"]["pareto.csv"]["trials"] == len(front)
    study = optuna.load_study(study_name="forests", storage=journal_storage(out / "study.journal"))
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert "pareto front:" in result.stdout and "select accuracy" in result.stdout
    # Refitted and byte-stable: the same study finalized again writes the same best.yaml.
    before = (out / "best.yaml").read_bytes()
    assert run_cli("finalize", write_spec(FORESTS.format(n_trials=10, extra="", kind="bayesian")), "--out", out).exit_code == 0
    assert (out / "best.yaml").read_bytes() == before


def test_select_knee_and_select_an_objective(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(write_spec, out, extra="select: knee")[0].exit_code == 0
    table = pd.read_csv(out / "trials.csv")
    front = table[table["number"].isin(_front(table))].sort_values("number")
    gains = np.column_stack([front["mean_test_accuracy"], -front["model_mb"]])
    scaled = (gains.max(axis=0) - gains) / (gains.max(axis=0) - gains.min(axis=0))
    knee = int(front["number"].iloc[int(np.argmin(np.sqrt((scaled**2).sum(axis=1))))])
    assert yaml.safe_load((out / "best.yaml").read_text())["trial"] == knee
    # The same trials, chosen by size: the lightest model on the front.
    light = tmp_path / "light"
    assert _run(write_spec, light, extra="select: model_mb")[0].exit_code == 0
    lightest = front.sort_values(["model_mb", "mean_test_accuracy", "number"], ascending=[True, False, True]).iloc[0]
    assert yaml.safe_load((light / "best.yaml").read_text())["trial"] == int(lightest["number"])


def test_constraints_and_objectives_together(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, _ = _run(write_spec, out, 12, "constraints: {max_overfit_gap: 0.03}")
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    feasible = table[table["feasible"] == True]  # noqa: E712
    assert 0 < len(feasible) < len(table)
    # The front is of the feasible trials only.
    assert set(table.loc[table["pareto"] == True, "number"]) == _front(feasible)  # noqa: E712
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["trial"] in set(feasible["number"])


def test_a_multi_objective_study_resumes_and_runs_in_worker_processes(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, spec = _run(write_spec, out, 6, "", "bayesian", "--n-jobs", "2")
    assert result.exit_code == 0, result
    assert run_cli("run", spec, "--out", out, "--n-trials", "9").exit_code == 0
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 9 and (table["state"] == "COMPLETE").all()
    assert set(table.loc[table["pareto"] == True, "number"]) == _front(table)  # noqa: E712


def test_times_as_objectives_are_measured(write_spec, tmp_path: Path) -> None:
    spec = write_spec("""
name: timed
data: {dataset: iris, test_size: 0.2}
model: {estimator: sklearn.neighbors.KNeighborsClassifier}
search_space:
  n_neighbors: {type: int, low: 1, high: 30}
objectives: [accuracy, fit_time, predict_time]
cv: {folds: 3}
strategy: {kind: random, n_trials: 6}
""")
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out)
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    assert (table["predict_time"] > 0).all() and (table["predict_time"] < 0.01).all()  # seconds per row
    assert (table["mean_fit_time"] > 0).all() and table["pareto"].any()
    study = optuna.load_study(study_name="timed", storage=journal_storage(out / "study.journal"))
    for trial in study.trials:
        row = table.set_index("number").loc[trial.number]
        assert trial.values == pytest.approx([row["mean_test_accuracy"], row["mean_fit_time"], row["predict_time"]])


def test_turning_one_objective_into_several_is_a_change_of_experiment(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    single = write_spec(FORESTS.format(n_trials=3, extra="", kind="random").replace("objectives: [accuracy, model_mb]\n", ""))
    assert run_cli("run", single, "--out", out).exit_code == 0
    result, _ = _run(write_spec, out, 3, "", "random")
    assert result.exit_code == 2, result
    assert "objectives" in result.stderr and "Traceback" not in result.stderr


class _Trial:
    """What the knee reads of a trial: its number and values."""

    def __init__(self, number: int, values: list[float]) -> None:
        self.number, self.values = number, values


def test_the_knee_is_nearest_the_ideal_point_and_ignores_a_flat_objective() -> None:
    from hptune.ranking import Goal, knee

    goal = Goal("accuracy", objectives=("accuracy", "model_mb"), select="knee")
    front = [_Trial(0, [0.80, 0.010]), _Trial(1, [0.95, 0.020]), _Trial(2, [0.97, 0.100])]
    # Scaled over the front: trial 1 is (0.88, 0.89) of the way to the ideal point, the others
    # best on one objective and worst on the other.
    assert knee(front, goal.gains).number == 1
    # Sizes differing by one byte in 7 kB: flat, so accuracy alone decides.
    flat = [_Trial(2, [0.9417, 7033 / 2**20]), _Trial(9, [0.9583, 7034 / 2**20])]
    assert knee(flat, goal.gains).number == 9


def test_fresh_moves_pareto_csv_aside_with_the_rest(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, spec = _run(write_spec, out, 4, "", "random")
    assert result.exit_code == 0 and (out / "pareto.csv").exists()
    assert run_cli("run", spec, "--out", out, "--fresh", "--n-trials", "3").exit_code == 0
    (old,) = tmp_path.glob("out.old-*")
    from hptune.outputs import load_run

    assert (old / "pareto.csv").exists() and load_run(old).run["files"]["pareto.csv"]
    assert len(pd.read_csv(out / "trials.csv")) == 3


def test_extra_metrics_beside_objectives_and_select_typos(write_spec) -> None:
    base = FORESTS.format(n_trials=3, extra="", kind="random").replace("objectives: [accuracy, model_mb]",
                                                                         "objectives: [roc_auc, model_mb]")
    assert run_cli("validate", write_spec(base + "extra_metrics: [accuracy]\n")).exit_code == 0
    twice = run_cli("validate", write_spec(base + "extra_metrics: [roc_auc]\n"))
    assert twice.exit_code == 2 and "extra_metrics[0]: 'roc_auc' is already an objective" in twice.stderr
    typo = run_cli("validate", write_spec(base + "select: kne\n"))
    assert typo.exit_code == 2 and "found 'kne'; did you mean 'knee'?" in typo.stderr
    cost_first = run_cli("validate", write_spec(base.replace("[roc_auc, model_mb]", "[model_mb, roc_auc]")))
    assert cost_first.exit_code == 0
    assert "warning: select defaults to the first objective, model_mb" in " ".join(cost_first.stderr.split())
