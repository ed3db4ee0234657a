"""Nothing lost, nothing cryptic: interruption, kills, resume, failure limits, through the CLI."""

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

from hptune.results import write_atomic
from hptune.storage import journal_storage
from tests.conftest import run_cli

SLOW_TRIALS = """
name: slow-trials
seed: 1
data: {dataset: digits, test_size: 0.2}
model: {estimator: svc}
search_space:
  C: {type: float, low: 0.1, high: 100, log: true}
  gamma: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
cv: {folds: 3}
strategy: {kind: random, n_trials: 12}
"""


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="slow-trials", storage=journal_storage(out / "study.journal"))


def _start(spec: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hptune", "run", str(spec), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_complete_trials(
    out: Path, count: int, process: subprocess.Popen, limit: float = 120, mid_trial: bool = False
) -> None:
    """Wait until ``count`` trials are complete (and, with ``mid_trial``, one is under way)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if (out / "study.journal").exists():
            try:
                trials = _study(out).get_trials(deepcopy=False)
            except KeyError:  # the study is not created yet
                trials = []
            done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.params]
            if len(done) >= count and (running or not mid_trial):
                return
        time.sleep(0.02)
    raise AssertionError("trials did not complete in time")


def _assert_study_finished_exactly(out: Path, n_trials: int) -> list[optuna.trial.FrozenTrial]:
    trials = _study(out).get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    finished = [t for t in trials if t.state.is_finished() and not t.user_attrs.get("hptune_interrupted")]
    assert len(finished) == n_trials
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    return trials


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_saves_what_is_complete_and_the_same_command_resumes(signum, write_spec, tmp_path: Path) -> None:
    spec, out = write_spec(SLOW_TRIALS), tmp_path / "out"
    process = _start(spec, out)
    _wait_for_complete_trials(out, 3, process, mid_trial=True)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and run["model_refitted"] is False
    assert (out / "best.yaml").exists() and not (out / "model.joblib").exists()
    assert "test_score" not in yaml.safe_load((out / "best.yaml").read_text())
    complete_before = run["trials"]["complete"]
    assert complete_before >= 3 and len(pd.read_csv(out / "trials.csv")) >= complete_before

    resumed = subprocess.run(
        [sys.executable, "-m", "hptune", "run", str(spec), "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {complete_before} of 12 trials done" in resumed.stderr
    trials = _assert_study_finished_exactly(out, 12)
    interrupted = [t for t in trials if t.user_attrs.get("hptune_interrupted")]
    for trial in interrupted:  # the trial cut short ran again with the same parameters, once
        retries = [t for t in trials if t.user_attrs.get("hptune_retry_of") == trial.number]
        # (cut short while sampling, it may hold only some: the rest are sampled anew)
        assert len(retries) == 1 and trial.params.items() <= retries[0].params.items()
    assert (out / "model.joblib").exists()


@pytest.mark.slow
def test_sigkill_leaves_no_zombie_trial_and_resume_finishes_the_budget(write_spec, tmp_path: Path) -> None:
    spec, out = write_spec(SLOW_TRIALS), tmp_path / "out"
    running: list[optuna.trial.FrozenTrial] = []
    for _ in range(3):  # the kill may land between two trials; then the next run is killed too
        process = _start(spec, out)
        _wait_for_complete_trials(out, 3, process, mid_trial=True)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        before = _study(out).get_trials(deepcopy=False)
        running = [t for t in before if t.state == optuna.trial.TrialState.RUNNING]
        if running:
            break
    assert running  # killed inside a trial: the case this test is about
    complete_before = sum(t.state == optuna.trial.TrialState.COMPLETE for t in before)

    resumed = subprocess.run(
        [sys.executable, "-m", "hptune", "run", str(spec), "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {complete_before} of 12 trials done" in resumed.stderr
    trials = _assert_study_finished_exactly(out, 12)
    for zombie in running:
        after = next(t for t in trials if t.number == zombie.number)
        assert after.state == optuna.trial.TrialState.FAIL and after.user_attrs["hptune_interrupted"]
        (retry,) = [t for t in trials if t.user_attrs.get("hptune_retry_of") == zombie.number]
        assert after.params.items() <= retry.params.items()
    table = pd.read_csv(out / "trials.csv")
    errors = list(table["error"].dropna())
    assert errors and all(error.startswith("interrupted: the process running this trial stopped") for error in errors)



@pytest.mark.slow
def test_a_killed_local_worker_has_its_trial_failed_and_the_run_still_finishes(write_spec, tmp_path: Path) -> None:
    """n_jobs 2 on the journal: SIGKILL one forked worker mid-trial; its parent notices, fails
    the trial, queues it again, and the same command ends with the whole budget done."""
    spec, out = write_spec(SLOW_TRIALS.replace("n_trials: 12}", "n_trials: 12, n_jobs: 2}")), tmp_path / "out"
    process = _start(spec, out)
    _wait_for_complete_trials(out, 2, process, mid_trial=True)
    running = [
        t for t in _study(out).get_trials(deepcopy=False)
        if t.state == optuna.trial.TrialState.RUNNING and "hptune_worker" in t.user_attrs
    ]
    victim = running[0]
    pid = int(victim.user_attrs["hptune_worker"].rpartition(":")[2])
    assert pid != process.pid  # the worker's own pid, not its parent's
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    trials = _assert_study_finished_exactly(out, 12)
    killed = next(t for t in trials if t.number == victim.number)
    if killed.state == optuna.trial.TrialState.FAIL:  # killed inside the trial (not just after it)
        assert killed.user_attrs["hptune_interrupted"]
        (retry,) = [t for t in trials if t.user_attrs.get("hptune_retry_of") == victim.number]
        assert killed.params.items() <= retry.params.items()
    else:  # the kill landed as the trial was being recorded complete
        assert killed.state == optuna.trial.TrialState.COMPLETE
    assert len(pd.read_csv(out / "trials.csv")) == len([t for t in trials if t.state.is_finished()])


SMALL = """
name: small
data: {dataset: iris}
model: {estimator: decision_tree}
search_space:
  max_depth: {type: int, low: 1, high: 6}
cv: {folds: 3}
strategy: {kind: random, n_trials: 4}
"""


def test_a_changed_experiment_is_refused_with_what_changed(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("run", write_spec(SMALL), "--out", out, "-q").exit_code == 0
    changed = write_spec(SMALL.replace("folds: 3", "folds: 4").replace("name: small", "name: small\nseed: 9"), "b.yaml")
    result = run_cli("run", changed, "--out", out)
    assert result.exit_code == 2
    assert "holds a study of a different experiment (changed: cv, seed); use --fresh" in result.stderr
    # The budget is not part of the experiment: raising it extends the study.
    more = run_cli("run", write_spec(SMALL), "--out", out, "--n-trials", "6", "-q", "--timeout", "1h")
    assert more.exit_code == 0 and len(pd.read_csv(out / "trials.csv")) == 6


def test_fresh_moves_the_old_study_aside_and_starts_over(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("run", write_spec(SMALL), "--out", out, "-q").exit_code == 0
    old_best = (out / "best.yaml").read_bytes()
    changed = write_spec(SMALL.replace("folds: 3", "folds: 4"), "b.yaml")
    result = run_cli("run", changed, "--out", out, "--fresh", "-q")
    assert result.exit_code == 0, result
    (aside,) = tmp_path.glob("out.old-*")
    assert (aside / "best.yaml").read_bytes() == old_best and (aside / "study.journal").exists()
    assert f"moved to {aside}" in result.stdout
    assert len(pd.read_csv(out / "trials.csv")) == 4


def test_no_resume_refuses_to_touch_an_existing_study(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("run", write_spec(SMALL), "--out", out, "-q", "--no-resume").exit_code == 0
    result = run_cli("run", write_spec(SMALL), "--out", out, "--no-resume")
    assert result.exit_code == 2
    assert "already holds a study with 4 trials and --no-resume was given" in result.stderr


FAILING = """
name: failing
data: {dataset: iris}
model: {estimator: decision_tree}
search_space:
  min_samples_split: [1, 2]
  max_depth: {type: int, low: 1, high: 8}
cv: {folds: 3}
strategy: {kind: random, n_trials: 30, max_failures: 2}
"""


def test_max_failures_stops_the_run_with_exit_1(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", write_spec(FAILING), "--out", out)
    assert result.exit_code == 1, result
    assert "stopped early: 3 trials failed, more than strategy.max_failures (2)" in result.stderr
    table = pd.read_csv(out / "trials.csv")
    assert (table["state"] == "FAIL").sum() == 3 and len(table) < 30
    assert json.loads((out / "run.json").read_text())["status"] == "stopped"


def test_max_failure_rate_stops_the_run(write_spec, tmp_path: Path) -> None:
    spec = write_spec(FAILING.replace("max_failures: 2", "max_failure_rate: 0.2"))
    result = run_cli("run", spec, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "more than strategy.max_failure_rate (0.2)" in result.stderr


def test_retry_failed_runs_failed_parameters_again(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: retry
        data: {dataset: iris}
        model: {estimator: decision_tree}
        search_space:
          min_samples_split: [1, 2]
        cv: {folds: 3}
        strategy: {kind: grid}
        """
    )
    out = tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    again = run_cli("run", spec, "--out", out, "-q", "--retry-failed")
    assert again.exit_code == 0, again
    table = pd.read_csv(out / "trials.csv")
    assert list(table["param_min_samples_split"]) == [1, 2, 1]
    assert list(table["state"]) == ["FAIL", "COMPLETE", "FAIL"]
    # Each failed trial is retried at most once; the retry (trial 2) failed too, so it is next.
    third = run_cli("run", spec, "--out", out, "-q", "--retry-failed")
    assert third.exit_code == 0 and len(pd.read_csv(out / "trials.csv")) == 4


def test_a_nan_score_is_a_failure_not_a_best_score(tmp_path: Path, write_spec) -> None:
    # One row per validation fold: R^2 is undefined (NaN) on a single sample.
    (tmp_path / "tiny.csv").write_text("x,y\n1.0,1.5\n2.0,2.7\n3.0,3.1\n4.0,4.9\n")
    spec = write_spec(
        """
        name: nan-score
        data: {path: tiny.csv, target: y, test_size: 0}
        task: regression
        model: {estimator: ridge}
        search_space:
          alpha: [0.1, 1.0]
        cv: {kind: kfold, folds: 4}
        strategy: {kind: grid}
        """
    )
    result = run_cli("run", spec, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "TrialScoreError: r2 is nan (not a finite number)" in result.stderr


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "best.yaml"
    target.write_text("old\n")

    with pytest.raises(TypeError):
        write_atomic(target, object())  # type: ignore[arg-type]
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["best.yaml"]
    write_atomic(target, "new\n")
    assert target.read_text() == "new\n" and os.listdir(tmp_path) == ["best.yaml"]


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.005, 0.05, 0.3])
def test_a_second_ctrl_c_exits_at_once_and_the_study_stays_intact(delay: float, write_spec, tmp_path: Path) -> None:
    spec, out = write_spec(SLOW_TRIALS), tmp_path / "out"
    process = _start(spec, out)
    _wait_for_complete_trials(out, 3, process, mid_trial=True)
    process.send_signal(signal.SIGINT)
    time.sleep(delay)  # while the first interruption is being handled, or the outputs written
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    resumed = subprocess.run(
        [sys.executable, "-m", "hptune", "run", str(spec), "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    _assert_study_finished_exactly(out, 12)


@pytest.mark.slow
def test_after_fresh_the_resume_hint_does_not_move_the_new_study_aside(write_spec, tmp_path: Path) -> None:
    spec, out = write_spec(SLOW_TRIALS), tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "hptune", "run", str(spec), "--out", str(out), "--fresh"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_for_complete_trials(out, 1, process, mid_trial=True)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "run the same command again to resume (without --fresh)" in stderr
