"""Many workers, one study: local worker processes, and PostgreSQL shared by many processes.

The PostgreSQL tests need a real server: `scripts/postgres.sh` starts one and exports
HPTUNE_TEST_POSTGRES_URL. In CI (CI=true) a missing server fails these tests, never skips them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from hptune.storage import database_storage
from tests.conftest import run_cli


def _hptune(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hptune", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr
    return stdout, stderr


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=database_storage(url)).get_trials(deepcopy=False)


def _finished(trials):
    return [t for t in trials if t.state.is_finished() and not t.user_attrs.get("hptune_skipped")
            and not t.user_attrs.get("hptune_interrupted") and (t.state != optuna.trial.TrialState.FAIL or "error" in t.user_attrs)]


RANDOM = """
name: shared-random
seed: 5
data: {dataset: iris}
model: {estimator: decision_tree}
search_space:
  max_depth: {type: int, low: 1, high: 10}
  min_samples_leaf: {type: int, low: 1, high: 20}
cv: {folds: 3}
strategy: {kind: random, n_trials: 9, pruner: none}
"""


@pytest.mark.slow
def test_three_workers_on_an_empty_database_finish_exactly_n_trials(postgres_url, write_spec, tmp_path: Path) -> None:
    spec = write_spec(RANDOM)
    workers = [_hptune("run", spec, "--worker", "--storage", postgres_url, "--worker-index", i, "-q") for i in range(3)]
    outputs = [_finish(w) for w in workers]
    trials = _trials(postgres_url, "shared-random")
    assert len(_finished(trials)) == 9
    assert len({t.number for t in trials}) == len(trials)
    params = [tuple(sorted(t.params.items())) for t in _finished(trials)]
    assert len(set(params)) > 1  # distinct seeds per worker: not nine copies of one point

    out = tmp_path / "out"
    final = run_cli("finalize", spec, "--storage", postgres_url, "--out", out)
    assert final.exit_code == 0, final
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 9 and (table["state"] == "COMPLETE").all()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["study"]["storage"].startswith("postgresql://postgres:***@")
    everything = [*(o for pair in outputs for o in pair), final.stdout, final.stderr]
    everything += [p.read_text(errors="replace") for p in out.iterdir()]
    assert not [text for text in everything if "s3cret-pw" in text]
    assert not (out / "study.journal").exists()


@pytest.mark.slow
def test_a_grid_run_by_three_workers_visits_each_point_once(postgres_url, write_spec) -> None:
    spec = write_spec(
        """
        name: shared-grid
        data: {dataset: iris}
        model: {estimator: decision_tree}
        search_space:
          max_depth: [1, 2, 3, 4]
          criterion: [gini, entropy, log_loss]
        cv: {folds: 3}
        strategy: {kind: grid}
        """
    )
    workers = [_hptune("run", spec, "--worker", "--storage", postgres_url, "-q") for _ in range(3)]
    for worker in workers:
        _finish(worker)
    trials = _finished(_trials(postgres_url, "shared-grid"))
    points = sorted((t.params["max_depth"], t.params["criterion"]) for t in trials)
    assert points == sorted((d, c) for d in [1, 2, 3, 4] for c in ["gini", "entropy", "log_loss"])


@pytest.mark.slow
def test_a_baseline_beside_workers_on_a_database_runs_once_outside_the_budget(postgres_url, write_spec, tmp_path) -> None:
    """The run that writes the outputs runs the baseline itself (never queued, so no worker
    started beside it takes it): once, costing none of the nine trials, reported by the run."""
    spec = write_spec(RANDOM.replace("shared-random", "shared-baseline"))
    committed = tmp_path / "committed.yaml"
    committed.write_text("params: {max_depth: 1, min_samples_leaf: 20}\n")
    out = tmp_path / "out"
    main = _hptune("run", spec, "--storage", postgres_url, "--out", out, "--baseline", committed, "-q")
    workers = [_hptune("run", spec, "--worker", "--storage", postgres_url, "--worker-index", i, "-q") for i in range(2)]
    for process in [main, *workers]:
        _finish(process)
    ran = _finished(_trials(postgres_url, "shared-baseline"))
    baselines = [t for t in ran if "hptune_baseline" in t.user_attrs]
    assert len(baselines) == 1 and baselines[0].params == {"max_depth": 1, "min_samples_leaf": 20}
    assert len(ran) == 10  # nine of the budget, and the baseline
    record = json.loads((out / "run.json").read_text())["baseline"]
    assert record["trial"] == baselines[0].number and record["state"] == "complete" and record["improvement"] > 0


SLOW = """
name: shared-slow
seed: 2
data: {dataset: digits}
model: {estimator: svc}
search_space:
  C: {type: float, low: 0.1, high: 100, log: true}
cv: {folds: 5}
strategy: {kind: random, n_trials: 8, pruner: none}
"""


@pytest.mark.slow
def test_a_worker_killed_mid_trial_has_its_trial_failed_and_retried(postgres_url, write_spec, tmp_path: Path) -> None:
    spec = write_spec(SLOW)
    killed = None
    for _ in range(3):  # the kill may land between two trials; then kill another victim
        victim = _hptune("run", spec, "--worker", "--storage", postgres_url, "-q")
        deadline = time.monotonic() + 120
        running: list[optuna.trial.FrozenTrial] = []
        while not running:  # wait until the victim is inside a trial
            assert time.monotonic() < deadline and victim.poll() is None
            try:
                trials = _trials(postgres_url, "shared-slow")
            except KeyError:
                trials = []
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.params
                       and t.user_attrs.get("hptune_worker", "").endswith(f":{victim.pid}")]
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        victim.communicate()
        now = next(t for t in _trials(postgres_url, "shared-slow") if t.number == running[0].number)
        if now.state == optuna.trial.TrialState.RUNNING:
            killed = now
            break
    assert killed is not None

    survivor = _hptune("run", spec, "--storage", postgres_url, "--out", tmp_path / "out", "-q")
    _finish(survivor, timeout=400)
    trials = _trials(postgres_url, "shared-slow")
    assert len(_finished(trials)) == 8
    after = next(t for t in trials if t.number == killed.number)
    assert after.state == optuna.trial.TrialState.FAIL
    retries = [t for t in trials if t.user_attrs.get("hptune_retry_of") == killed.number]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert after.params.items() <= retries[0].params.items()
    table = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert "heartbeats" in table.loc[table["number"] == killed.number, "error"].iloc[0]


def test_n_jobs_2_on_local_storage_runs_the_same_trials_consistently(write_spec, tmp_path: Path) -> None:
    spec = write_spec(RANDOM.replace("n_trials: 9", "n_trials: 8"))
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out, "--n-jobs", "2")
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 8 and (table["state"] == "COMPLETE").all()
    assert sorted(table["number"]) == list(range(8))
    best = yaml.safe_load((out / "best.yaml").read_text())
    winner = table.sort_values(["rank_test_accuracy", "number"]).iloc[0]
    assert best["trial"] == winner["number"] and best["cv_score"] == winner["mean_test_accuracy"]
    assert json.loads((out / "run.json").read_text())["study"]["workers"] == 2
    assert "trial 8/8 done" in result.stderr


def test_a_local_grid_with_two_workers_visits_each_point_once(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: local-grid
        data: {dataset: iris}
        model: {estimator: decision_tree}
        search_space:
          max_depth: [1, 2, 3, 4, 5, 6]
          criterion: [gini, entropy]
        cv: {folds: 3}
        strategy: {kind: grid, n_jobs: 2}
        """
    )
    out = tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    table = pd.read_csv(out / "trials.csv")
    points = sorted(zip(table["param_max_depth"], table["param_criterion"], strict=True))
    assert points == sorted((d, c) for d in range(1, 7) for c in ["gini", "entropy"])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://bob:pw-secret@127.0.0.1:1/nodb", "cannot open the study storage postgresql://bob:***@127.0.0.1:1/nodb"),
        ("mysql://bob:pw-secret@127.0.0.1/x", "no database driver for mysql://bob:***@127.0.0.1/x"),
    ],
)
def test_an_unusable_database_is_one_clear_error(url: str, expected: str, write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", write_spec(RANDOM), "--storage", url, "--out", out)
    assert result.exit_code == 2
    assert expected in result.stderr and "pw-secret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr and not out.exists()


def test_storage_must_be_a_database_url(write_spec) -> None:
    result = run_cli("run", write_spec(RANDOM), "--storage", "runs/study.db")
    assert result.exit_code == 2 and "expected a database URL" in result.stderr


@pytest.mark.slow
def test_a_run_says_what_it_waits_for_and_stops_waiting_for_a_trial_that_never_beat(postgres_url, write_spec) -> None:
    spec = write_spec(RANDOM.replace("name: shared-random", "name: silent-worker"))
    _finish(_hptune("run", spec, "--storage", postgres_url, "--n-trials", "2", "-q"))
    # A worker elsewhere started trial 2 and died before its first heartbeat: hptune waits for
    # it until twice the heartbeat grace period (40 s) has passed since it started.
    study = optuna.load_study(study_name="silent-worker", storage=database_storage(postgres_url))
    silent = study.ask()
    import psycopg

    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        connection.execute(
            "UPDATE trials SET datetime_start = datetime_start - interval '28 seconds' WHERE number = %s",
            (silent.number,),
        )
    _, stderr = _finish(_hptune("run", spec, "--storage", postgres_url, "--n-trials", "3", "-q"), timeout=120)
    assert "waiting for 1 trial(s) other machines are running, before writing the outputs: trial 2" in stderr
    trials = _trials(postgres_url, "silent-worker")
    assert trials[2].state == optuna.trial.TrialState.FAIL
    assert trials[2].user_attrs["error"].startswith("interrupted: its worker never sent a heartbeat")
    assert len([t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]) == 3


def test_fresh_on_a_database_refuses_while_other_machines_run_its_trials(postgres_url, write_spec) -> None:
    spec = write_spec(RANDOM.replace("name: shared-random", "name: busy").replace("n_trials: 9", "n_trials: 2"))
    assert run_cli("run", spec, "--storage", postgres_url, "-q").exit_code == 0
    study = optuna.load_study(study_name="busy", storage=database_storage(postgres_url))
    study.ask()  # a machine is running a trial right now
    result = run_cli("run", spec, "--storage", postgres_url, "--fresh", "-q")
    assert result.exit_code == 2, result
    assert "--fresh: study 'busy' in postgresql://postgres:***@" in result.stderr
    assert "has 1 trial(s) running on other machines; stop them first" in result.stderr
    assert "s3cret-pw" not in result.stderr
    assert optuna.get_all_study_names(database_storage(postgres_url)).count("busy") == 1  # untouched
