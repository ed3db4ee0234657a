"""README promises about how a run is stopped and shared: --refit-on-interrupt, timeouts, a grid
interrupted and resumed, --worker and finalize on a journal file, threads in worker processes.

Signals, timeouts and worker processes need a real process: those tests run `python -m hptune`.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import optuna
import pandas as pd
import pytest
import yaml

from hptune.storage import journal_storage
from tests.conftest import run_cli

OUTPUTS = ("trials.csv", "best.yaml", "model.joblib", "run.json")

# About a quarter of a second per trial on digits: slow enough to interrupt mid-trial.
SLOW = """
name: slow
seed: 1
data: {dataset: digits, test_size: 0.2}
model: {estimator: svc}
search_space:
  C: {type: float, low: 0.1, high: 100, log: true}
  gamma: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
cv: {folds: 3}
strategy: {kind: random, n_trials: 12, pruner: none}
"""

C_GRID, GAMMA_GRID = [0.1, 1.0, 10.0, 100.0], [0.0001, 0.001, 0.01]
GRID = f"""
name: slow
seed: 1
data: {{dataset: digits, test_size: 0.2}}
model: {{estimator: svc}}
search_space:
  C: {C_GRID}
  gamma: {GAMMA_GRID}
cv: {{folds: 3}}
strategy: {{kind: grid}}
"""


def _study(out: Path, name: str = "slow") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=journal_storage(out / "study.journal"))


def _start(*args: object) -> subprocess.Popen:
    """Start hptune in its own process group, as a shell starts a foreground job."""
    return subprocess.Popen(
        [sys.executable, "-m", "hptune", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def _signal(process: subprocess.Popen, signum: int) -> None:
    """Ctrl-C as a terminal sends it, to the whole job (workers included); SIGTERM as `kill`
    sends it, to the command's own process only."""
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)


def _hptune(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hptune", *map(str, args)], capture_output=True, text=True, timeout=300)


def _wait_mid_trial(out: Path, process: subprocess.Popen, complete: int, params: int = 1, limit: float = 120) -> None:
    """Wait until ``complete`` trials are complete and another one is running with at least
    ``params`` of its parameters stored."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if (out / "study.journal").exists():
            try:
                trials = _study(out).get_trials(deepcopy=False)
            except KeyError:  # the study is not created yet
                trials = []
            done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and len(t.params) >= params]
            if done >= complete and running:
                return
        time.sleep(0.02)
    raise AssertionError("no trial was under way in time")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_refit_on_interrupt_ships_the_model_and_its_test_score(signum, write_spec, tmp_path: Path) -> None:
    spec, out = write_spec(SLOW), tmp_path / "out"
    process = _start("run", spec, "--out", out, "--refit-on-interrupt")
    _wait_mid_trial(out, process, complete=2, params=2)  # both parameters stored: inside the CV
    _signal(process, signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and run["model_refitted"] is True
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert isinstance(best["test_score"], float) and best["test_score"] == run["test_score"]
    model = joblib.load(out / "model.joblib").named_steps["model"]
    assert model.C == best["params"]["C"] and model.gamma == best["params"]["gamma"]
    assert run["trials"]["complete"] < 12


@pytest.mark.slow
@pytest.mark.parametrize(
    ("where", "n_jobs"), [("option", 1), ("file", 1), ("file", 2)], ids=["--timeout", "strategy.timeout", "n_jobs-2"]
)
def test_a_timeout_stops_a_run_far_short_of_its_budget(where: str, n_jobs: int, write_spec, tmp_path: Path) -> None:
    text = SLOW.replace("n_trials: 12", f"n_trials: 10000, n_jobs: {n_jobs}")
    if where == "file":
        text = text.replace("n_trials: 10000", "n_trials: 10000, timeout: 3s")
    out = tmp_path / "out"
    command = ["run", write_spec(text), "--out", out, "-q", *(["--timeout", "3s"] if where == "option" else [])]
    started = time.monotonic()
    result = _hptune(*command)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert 3 <= seconds < 60
    table = pd.read_csv(out / "trials.csv")
    assert 1 <= len(table) < 200 and (table["state"] == "COMPLETE").all()
    run = json.loads((out / "run.json").read_text())
    assert run["trials"]["complete"] == len(table) and run["model_refitted"] is True
    assert (out / "model.joblib").exists() and "test_score" in yaml.safe_load((out / "best.yaml").read_text())


def test_worker_on_a_journal_writes_only_the_study_and_finalize_writes_the_outputs(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: journal-worker
        data: {dataset: iris}
        model: {estimator: decision_tree}
        search_space:
          max_depth: {type: int, low: 1, high: 6}
        cv: {folds: 3}
        strategy: {kind: random, n_trials: 6}
        """
    )
    out = tmp_path / "out"
    worker = run_cli("run", spec, "--worker", "--out", out, "--n-trials", "3", "-q")
    assert worker.exit_code == 0, worker
    assert sorted(p.name for p in out.iterdir()) == ["study.journal"]
    trials = _study(out, "journal-worker").get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3

    partial = run_cli("finalize", spec, "--out", out)
    assert partial.exit_code == 0, partial
    assert "has not spent its budget of 6 trials (3 complete); these outputs are partial" in partial.stderr
    assert {p.name for p in out.iterdir()} >= set(OUTPUTS)
    assert json.loads((out / "run.json").read_text())["status"] == "partial"
    assert len(pd.read_csv(out / "trials.csv")) == 3

    assert run_cli("run", spec, "--worker", "--out", out, "-q").exit_code == 0  # spends the rest
    final = run_cli("finalize", spec, "--out", out)
    assert final.exit_code == 0 and "partial" not in final.stderr
    run = json.loads((out / "run.json").read_text())
    table = pd.read_csv(out / "trials.csv")
    assert run["status"] == "complete" and len(table) == 6
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["cv_score"] == table["mean_test_accuracy"].max() and "test_score" in best


@pytest.mark.slow
def test_workers_with_capped_threads_run_a_model_with_n_jobs_minus_1(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: forest-threads
        data: {dataset: wine}
        model: {estimator: random_forest, params: {n_estimators: 10, n_jobs: -1}}
        search_space:
          max_depth: {type: int, low: 2, high: 6}
        cv: {folds: 3}
        strategy: {kind: random, n_trials: 4, n_jobs: 2, threads_per_worker: 1}
        """
    )
    out = tmp_path / "out"
    result = _hptune("run", spec, "--out", out, "-q")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 4 and (table["state"] == "COMPLETE").all()
    assert json.loads((out / "run.json").read_text())["study"]["workers"] == 2
    assert joblib.load(out / "model.joblib").named_steps["model"].n_jobs == -1  # as configured, not the cap


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "n_jobs"), [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGINT, 2)],
    ids=["SIGINT", "SIGTERM", "SIGINT-n_jobs-2"],
)
def test_a_grid_interrupted_mid_trial_and_resumed_runs_each_point_once(
    signum, n_jobs: int, write_spec, tmp_path: Path
) -> None:
    """Interrupt twice, each time as soon as a trial has stored a parameter (a Ctrl-C can land
    while Optuna is still writing the trial's parameters), then let the same command finish."""
    spec = write_spec(GRID.replace("kind: grid}", f"kind: grid, n_jobs: {n_jobs}}}"))
    out = tmp_path / "out"
    for cycle in (1, 2):
        process = _start("run", spec, "--out", out)
        _wait_mid_trial(out, process, complete=3 * cycle)
        _signal(process, signum)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 130, stderr

    resumed = _hptune("run", spec, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    trials = _study(out).get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    points = sorted((t.params["C"], t.params["gamma"]) for t in complete)
    assert points == sorted(itertools.product(C_GRID, GAMMA_GRID)), [  # none missing, none twice
        (t.number, t.state.name, t.params, t.user_attrs.get("error")) for t in trials
    ]
    table = pd.read_csv(out / "trials.csv")
    done = table[table["state"] == "COMPLETE"]
    assert sorted(zip(done["param_C"], done["param_gamma"], strict=True)) == points
