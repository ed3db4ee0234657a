"""Spending compute where it pays: fold-level pruning (Optuna's pruners) and the stop rules
(target, patience), through the real CLI on real data, with real journal studies."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from hptune.storage import journal_storage
from tests.conftest import run_cli

# SVC on digits: gamma across six decades, so many trials are hopeless (10% accuracy) and a
# pruner has something to stop; a fold fits in a few hundredths of a second.
PRUNABLE = """
name: prunable
seed: 3
data: {{dataset: digits, test_size: 0.2}}
model: {{estimator: svc}}
search_space:
  C: {{type: float, low: 0.1, high: 100, log: true}}
  gamma: {{type: float, low: 1.0e-5, high: 1.0, log: true}}
cv: {{folds: 5}}
strategy: {{kind: {kind}, n_trials: {n_trials}{extra}}}
"""

FAST = """
name: fast
seed: 0
data: {{dataset: iris, test_size: 0.2}}
model: {{estimator: sklearn.linear_model.LogisticRegression, params: {{max_iter: 1000}}}}
search_space:
  C: {{type: float, low: 0.001, high: 1000, log: true}}
cv: {{folds: 3}}
strategy: {{kind: random, n_trials: {n_trials}{extra}}}
stop: {stop}
"""


def _study(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=journal_storage(out / "study.journal"))


def _folds_done(table: pd.DataFrame, metric: str = "accuracy") -> pd.Series:
    return table.filter(regex=rf"^split\d+_test_{metric}$").notna().sum(axis=1)


def test_the_default_pruner_stops_hopeless_trials_after_a_fold_and_ranks_them_last(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", write_spec(PRUNABLE.format(kind="random", n_trials=16, extra="")), "--out", out)
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    pruned, complete = table[table["state"] == "PRUNED"], table[table["state"] == "COMPLETE"]
    assert len(pruned) >= 3 and len(complete) >= 5  # median: the first 5 trials always run whole
    assert len(table) == 16  # pruned trials count toward n_trials
    # The folds a pruned trial completed are filled in, the rest empty; never all five.
    assert (_folds_done(pruned) >= 1).all() and (_folds_done(pruned) < 5).all()
    assert (_folds_done(complete) == 5).all()
    assert pruned["rank_test_accuracy"].min() > complete["rank_test_accuracy"].max()
    assert "pruned" in result.stdout and f"{len(pruned)} pruned" in result.stdout
    run = json.loads((out / "run.json").read_text())
    assert run["study"]["pruner"] == "median" and run["trials"]["pruned"] == len(pruned)
    # What the pruner read: the running mean after each fold, at steps 1, 2, ...
    for trial in _study(out, "prunable").get_trials():
        folds = trial.user_attrs["cv"]["test"]["accuracy"]
        assert sorted(trial.intermediate_values) == list(range(1, len(folds) + 1))
        assert trial.intermediate_values[len(folds)] == pytest.approx(sum(folds) / len(folds))


def test_a_grid_keeps_every_fold_and_writes_no_intermediate_values(write_spec, tmp_path: Path) -> None:
    spec = PRUNABLE.format(kind="grid", n_trials=9, extra="").replace(
        "C: {type: float, low: 0.1, high: 100, log: true}", "C: [0.1, 10, 100]"
    ).replace("gamma: {type: float, low: 1.0e-5, high: 1.0, log: true}", "gamma: [1.0e-5, 1.0e-3, 1.0]")
    out = tmp_path / "out"
    assert run_cli("run", write_spec(spec), "--out", out).exit_code == 0
    table = pd.read_csv(out / "trials.csv")
    assert (table["state"] == "COMPLETE").all() and len(table) == 9
    assert json.loads((out / "run.json").read_text())["study"]["pruner"] == "none"
    assert all(not t.intermediate_values for t in _study(out, "prunable").get_trials())


def test_pruner_none_runs_every_fold_of_every_trial(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = PRUNABLE.format(kind="bayesian", n_trials=10, extra=", pruner: none")
    assert run_cli("run", write_spec(spec), "--out", out).exit_code == 0
    assert (pd.read_csv(out / "trials.csv")["state"] == "COMPLETE").all()
    assert all(not t.intermediate_values for t in _study(out, "prunable").get_trials())


@pytest.mark.parametrize("pruner", ["percentile", "successive_halving", "hyperband"])
def test_every_pruner_runs_and_never_prunes_on_the_last_fold(pruner: str, write_spec, tmp_path: Path) -> None:
    extra = f", pruner: {pruner}" + (", pruner_percentile: 10" if pruner == "percentile" else "")
    out = tmp_path / "out"
    result = run_cli("run", write_spec(PRUNABLE.format(kind="random", n_trials=14, extra=extra)), "--out", out)
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    pruned = table[table["state"] == "PRUNED"]
    assert len(pruned) >= 1 and (_folds_done(pruned) < 5).all()
    assert set(table["state"]) <= {"COMPLETE", "PRUNED"} and len(table) == 14
    assert json.loads((out / "run.json").read_text())["study"]["pruner"] == pruner


def test_a_target_score_stops_the_search_refits_and_exits_0(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", write_spec(FAST.format(n_trials=40, extra="", stop="{target: 0.9}")), "--out", out)
    assert result.exit_code == 0, result
    run = json.loads((out / "run.json").read_text())
    assert run["stop_reason"] == "target" and run["status"] == "complete" and run["model_refitted"] is True
    table = pd.read_csv(out / "trials.csv")
    assert len(table) < 40 and table["mean_test_accuracy"].max() >= 0.9
    # It stopped at the first trial that reached the target (none before it did).
    first = table[table["mean_test_accuracy"] >= 0.9]["number"].min()
    assert table["number"].max() == first
    assert "stopped: target" in result.stdout and (out / "model.joblib").exists()


def test_patience_stops_a_stalled_search_and_a_rerun_does_not_restart_it(write_spec, tmp_path: Path) -> None:
    spec, out = write_spec(FAST.format(n_trials=60, extra="", stop="{patience: 6, min_delta: 0.001}")), tmp_path / "out"
    result = run_cli("run", spec, "--out", out)
    assert result.exit_code == 0, result
    run = json.loads((out / "run.json").read_text())
    assert run["stop_reason"] == "patience" and "6 finished trials in a row" in run["stop_detail"]
    table = pd.read_csv(out / "trials.csv").sort_values("number")
    scores = table["mean_test_accuracy"].tolist()
    assert len(scores) < 60
    # The last 6 trials did not beat the best before them by more than min_delta; the one
    # before them did improve it (or was the first).
    best_before = max(scores[:-6])
    assert all(score <= best_before + 0.001 for score in scores[-6:])
    # The rule is read from the study: the same command again runs nothing and says why.
    again = run_cli("run", spec, "--out", out)
    assert again.exit_code == 0 and "stopped: patience" in again.stdout
    assert len(pd.read_csv(out / "trials.csv")) == len(scores)


def test_worker_processes_stop_together_at_the_target(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = FAST.format(n_trials=60, extra=", n_jobs: 2", stop="{target: 0.9}")
    result = run_cli("run", write_spec(spec), "--out", out)
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    reached = table[table["mean_test_accuracy"] >= 0.9]["number"].min()
    # Each worker finishes the trial it had started when the other reached the target; none starts another.
    assert table["number"].max() <= reached + 2
    assert json.loads((out / "run.json").read_text())["stop_reason"] == "target"


@pytest.mark.slow
def test_a_killed_pruning_run_resumes_and_finishes_its_budget(write_spec, tmp_path: Path) -> None:
    spec = write_spec(PRUNABLE.format(kind="bayesian", n_trials=20, extra=""))
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "hptune", "run", str(spec), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (out / "study.journal").exists():
            try:
                trials = _study(out, "prunable").get_trials(deepcopy=False)
            except KeyError:
                trials = []
            if len([t for t in trials if t.state.is_finished()]) >= 8:
                break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    resumed = run_cli("run", spec, "--out", out)
    assert resumed.exit_code == 0, resumed
    finished = [t for t in _study(out, "prunable").get_trials() if t.state.is_finished()
                and not t.user_attrs.get("hptune_interrupted")]
    assert len(finished) == 20 and any(t.state.name == "PRUNED" for t in finished)
    assert len(pd.read_csv(out / "trials.csv")) >= 20


def test_a_target_a_loss_metric_can_never_reach_is_a_warning(write_spec) -> None:
    spec = write_spec("""
        name: loss
        data: {dataset: diabetes}
        model: {estimator: sklearn.linear_model.Ridge}
        search_space:
          alpha: {type: float, low: 0.01, high: 10, log: true}
        metric: neg_root_mean_squared_error
        stop: {target: 50}
        """)
    result = run_cli("validate", spec)
    assert result.exit_code == 0
    assert "7:8: stop.target: warning: neg_root_mean_squared_error is never above 0, so a target of 50 is never " \
           "reached" in result.stderr
