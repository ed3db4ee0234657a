"""A study shared by several processes or machines: retries, seeds, grid repairs, finalize."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import optuna
import pandas as pd
import pytest

from hptune import housekeeping
from hptune.samplers import SEED_SPACE, sampler_seed
from hptune.storage import journal_storage
from hptune.study import open_study
from hptune.trials import requeue
from hptune.validate import Overrides, load_experiment
from tests.conftest import run_cli

FAILING = """
name: shared
data: {dataset: iris}
model: {estimator: decision_tree}
search_space:
  min_samples_split: [1, 2, 3]
cv: {folds: 3}
strategy: {kind: grid}
"""

GRID = """
name: grid-repair
data: {dataset: iris}
model: {estimator: decision_tree}
search_space:
  max_depth: [1, 2, 3, 4]
  criterion: [gini, entropy]
cv: {folds: 3}
strategy: {kind: grid, n_trials: 2}
"""


def _study(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=journal_storage(out / "study.journal"))


def _grid_with_point_2_started(write_spec, tmp_path: Path) -> tuple[Path, Path, optuna.Study, optuna.Trial]:
    """A 3-point grid run to 2 points, then point 2 queued and started by another process
    (the returned trial, RUNNING, which says nothing yet of the process running it)."""
    spec, out = write_spec(GRID.replace("n_trials: 2", "n_trials: 3")), tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q", "--n-trials", "2").exit_code == 0
    study = _study(out, "grid-repair")
    study.set_user_attr("hptune_grid_queued", 3)
    study.enqueue_trial({"max_depth": 3, "criterion": "gini"}, user_attrs={"hptune_grid_point": 2})
    return spec, out, study, study.ask()


def test_fresh_and_worker_together_are_refused(write_spec, tmp_path: Path) -> None:
    result = run_cli("run", write_spec(FAILING), "--out", tmp_path / "out", "--worker", "--fresh")
    assert result.exit_code == 2, result
    assert "--fresh" in result.stderr and "cannot be combined with --worker" in result.stderr
    assert not (tmp_path / "out").exists()


def test_retry_failed_on_every_machine_retries_each_failed_trial_once_in_all(
    write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, out = write_spec(FAILING), tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0  # min_samples_split=1 fails
    exp = load_experiment(spec, (), Overrides(out=str(out)))
    machines = [open_study(exp, worker=True) for _ in range(2)]

    # Both machines decide what to retry before either has queued anything: the worst case.
    both_deciding = threading.Barrier(2, timeout=3)
    real_requeue = requeue

    def requeue_once_both_decided(study, trial, reason):
        try:
            both_deciding.wait()
        except threading.BrokenBarrierError:
            pass  # the other machine had nothing to retry
        real_requeue(study, trial, reason)

    monkeypatch.setattr("hptune.housekeeping.requeue", requeue_once_both_decided)
    threads = [threading.Thread(target=housekeeping.retry_failures, args=(m,)) for m in machines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Both may have queued it; it runs once, and the budget grows by one, not two.
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    trials = _study(out, "shared").get_trials()
    ran = [
        t for t in trials if t.user_attrs.get("hptune_retry_of") == 0
        and t.state != optuna.trial.TrialState.WAITING and not t.user_attrs.get("hptune_skipped")
    ]
    assert len(ran) == 1 and ran[0].state == optuna.trial.TrialState.FAIL  # min_samples_split=1 fails again
    table = pd.read_csv(out / "trials.csv")
    assert list(table["param_min_samples_split"]) == [1, 2, 3, 1]
    # Once in all: asked again, a failed trial that was retried is not retried again.
    assert housekeeping.retry_failures(open_study(exp)) == 1  # only the retry itself, trial 3


def test_machines_never_share_a_sampler_seed(write_spec, tmp_path: Path) -> None:
    exp = load_experiment(write_spec(FAILING), (), Overrides(out=str(tmp_path / "out")))
    machines = [open_study(exp, worker=True) for _ in range(16)]
    # --worker-index gives small indices (a shell loop, a Slurm array); claimed ones never meet them.
    machines += [open_study(exp, worker=True, machine_index=index) for index in range(4)]
    seeds = {m.worker_seed(w) for m in machines for w in range(4)}
    assert len(seeds) == 20 * 4
    assert open_study(exp).worker_seed() == exp.spec.seed  # one machine stays reproducible
    assert 0 <= sampler_seed(2**32 - 1, 997, 3) < SEED_SPACE


def test_a_grid_point_cut_short_and_never_queued_again_is_run_by_the_next_run(write_spec, tmp_path: Path) -> None:
    spec, out = write_spec(GRID), tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    study = _study(out, "grid-repair")
    # What a kill leaves when it lands between failing a trial as interrupted and queueing
    # it again: grid point 2 was queued (n_trials 3), popped, cut short, never queued again.
    study.enqueue_trial({"max_depth": 3, "criterion": "gini"}, user_attrs={"hptune_grid_point": 2})
    study.set_user_attr("hptune_grid_queued", 3)
    cut = study.ask()
    cut.set_user_attr("hptune_interrupted", True)
    cut.set_user_attr("error", "interrupted: stopped by Ctrl-C or SIGTERM")
    study.tell(cut, state=optuna.trial.TrialState.FAIL)

    result = run_cli("run", spec, "--out", out, "-q", "--n-trials", "3")
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    complete = table[table["state"] == "COMPLETE"]
    points = sorted(zip(complete["param_max_depth"], complete["param_criterion"], strict=True))
    assert points == [(1, "gini"), (2, "gini"), (3, "gini")]  # ParameterGrid's first three


def test_a_requeued_trial_cut_short_while_sampling_gets_its_whole_grid_point(tmp_path: Path) -> None:
    study = optuna.create_study(storage=journal_storage(tmp_path / "study.journal"))
    study.enqueue_trial({"x": 3, "y": "b"}, user_attrs={"hptune_grid_point": 5})
    cut = study.ask()
    cut.suggest_int("x", 0, 5)  # interrupted before "y" was suggested
    frozen = study.get_trials()[0]
    assert frozen.params == {"x": 3}
    requeue(study, frozen, "interrupted")
    queued = study.get_trials()[1]
    assert queued.system_attrs["fixed_params"] == {"x": 3, "y": "b"}
    assert queued.user_attrs["hptune_grid_point"] == 5


def test_finalize_says_partial_while_a_trial_still_runs(write_spec, tmp_path: Path) -> None:
    # A worker elsewhere has started the last trial of the budget and not finished it.
    spec, out, _, _ = _grid_with_point_2_started(write_spec, tmp_path)
    result = run_cli("finalize", spec, "--out", out)
    assert result.exit_code == 0, result
    assert "these outputs are partial" in result.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "partial"


def test_ctrl_c_while_the_data_loads_says_nothing_was_trained(
    write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("hptune.validate.load_dataset", interrupted)
    result = run_cli("run", write_spec(FAILING), "--out", tmp_path / "out")
    assert result.exit_code == 130, result
    assert "interrupted before any trial ran; nothing was trained" in result.stderr
    assert "completed trials are kept" not in result.stderr


def test_an_interrupted_retry_of_a_failed_grid_point_still_runs(write_spec, tmp_path: Path) -> None:
    spec, out = write_spec(FAILING), tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    exp = load_experiment(spec, (), Overrides(out=str(out)))
    assert housekeeping.retry_failures(open_study(exp)) == 1
    # The retry of trial 0 starts and is cut short by Ctrl-C: it is queued again, as itself.
    study = _study(out, "shared")
    cut = study.ask()
    frozen = study.get_trials()[cut.number]
    requeue(study, frozen, "interrupted")
    cut.set_user_attr("hptune_interrupted", True)
    cut.set_user_attr("error", "interrupted: stopped by Ctrl-C or SIGTERM")
    study.tell(cut, state=optuna.trial.TrialState.FAIL)

    result = run_cli("run", spec, "--out", out, "-q")
    assert result.exit_code == 0, result
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["trials"] == {
        "complete": 2, "fail": 2, "pruned": 0, "interrupted": 1, "running": 0
    }
    rerun = [t for t in _study(out, "shared").get_trials() if t.user_attrs.get("hptune_retry_of") == cut.number]
    assert [t.state for t in rerun] == [optuna.trial.TrialState.FAIL] and not rerun[0].user_attrs.get("hptune_skipped")


def test_a_grid_point_that_killed_its_worker_twice_is_not_run_again_and_the_run_says_partial(
    write_spec, tmp_path: Path
) -> None:
    spec, out = write_spec(GRID), tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    study = _study(out, "grid-repair")
    study.set_user_attr("hptune_grid_queued", 3)
    for reason in (None, "died"):  # point 2 ran, its worker died; its re-run's worker died too
        attrs = {"hptune_grid_point": 2, **({"hptune_retry_reason": reason, "hptune_retry_of": 2} if reason else {})}
        study.enqueue_trial({"max_depth": 3, "criterion": "gini"}, user_attrs=attrs)
        dead = study.ask()
        dead.set_user_attr("hptune_interrupted", True)
        dead.set_user_attr("error", "interrupted: the process running this trial stopped (killed or crashed)")
        study.tell(dead, state=optuna.trial.TrialState.FAIL)

    result = run_cli("run", spec, "--out", out, "--n-trials", "3")
    assert result.exit_code == 0, result
    assert "note: the study has not spent its budget of 3 trials (2 complete); these outputs are partial" in result.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "partial" and run["stop_reason"] == "budget"
    assert len([t for t in _study(out, "grid-repair").get_trials() if t.state == optuna.trial.TrialState.WAITING]) == 0


def _hold_a_trial(out: Path, name: str, seconds: float) -> threading.Thread:
    """A trial this (live) process runs on the study for ``seconds``, then fails."""
    from hptune import processes

    study = _study(out, name)
    trial = study.ask()
    trial.set_user_attr("hptune_worker", processes.current())

    def finish() -> None:
        trial.set_user_attr("error", "RuntimeError: held by the test")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)

    timer = threading.Timer(seconds, finish)
    timer.start()
    return timer


def test_run_waits_for_a_live_trial_of_this_machine_and_a_worker_does_not(write_spec, tmp_path: Path) -> None:
    import time

    spec, out = write_spec(GRID.replace("n_trials: 2", "n_trials: 3")), tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q", "--n-trials", "2").exit_code == 0
    _study(out, "grid-repair").set_user_attr("hptune_grid_queued", 3)  # as if point 2 were running
    holder = _hold_a_trial(out, "grid-repair", 6)
    started = time.monotonic()
    worker = run_cli("run", spec, "--out", out, "-q", "--worker")
    assert worker.exit_code == 0, worker
    assert time.monotonic() - started < 5 and holder.is_alive()  # it left without waiting
    result = run_cli("run", spec, "--out", out, "-q")
    assert result.exit_code == 0, result
    assert "waiting for 1 trial(s) other machines are running, before writing the outputs: trial 2 on" in result.stderr
    assert not holder.is_alive()  # it waited until the trial ended
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_ctrl_c_while_the_outputs_are_written_says_the_study_is_whole(
    write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("hptune.outputs.write_set", interrupted)
    result = run_cli("run", write_spec(GRID), "--out", tmp_path / "out", "--fresh")
    assert result.exit_code == 130, result
    assert "interrupted while writing the outputs; every trial is kept in" in result.stderr
    assert "run the same command again to resume (without --fresh)" in result.stderr


def test_fresh_on_a_journal_refuses_while_another_live_process_runs_a_trial(write_spec, tmp_path: Path) -> None:
    spec, out = write_spec(GRID), tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    holder = _hold_a_trial(out, "grid-repair", 30)
    try:
        result = run_cli("run", spec, "--out", out, "-q", "--fresh")
    finally:
        holder.cancel()
    assert result.exit_code == 2, result
    assert "has 1 trial(s) running in other live processes; stop them first" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == ["out"]  # nothing moved


def test_a_0_1_0_rerun_of_an_interrupted_retry_runs_as_that_retry(write_spec, tmp_path: Path) -> None:
    spec, out = write_spec(FAILING), tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    study = _study(out, "shared")
    # What 0.1.0 left: trial 0 (point 0) failed; its retry, trial 3, was cut short by Ctrl-C and
    # queued again as trial 4, with no record of the work it does (0.1.0 kept none).
    study.set_user_attr("hptune_retried_failures", [0])
    study.set_user_attr("hptune_extra_budget", 1)
    study.enqueue_trial({"min_samples_split": 1}, user_attrs={
        "hptune_retry_of": 0, "hptune_retry_reason": "failed", "hptune_grid_point": 0})
    cut = study.ask()
    cut.set_user_attr("hptune_interrupted", True)
    cut.set_user_attr("error", "interrupted: stopped by Ctrl-C or SIGTERM")
    study.enqueue_trial({"min_samples_split": 1}, user_attrs={
        "hptune_retry_of": cut.number, "hptune_retry_reason": "interrupted", "hptune_grid_point": 0})
    study.tell(cut, state=optuna.trial.TrialState.FAIL)

    result = run_cli("run", spec, "--out", out, "-q")
    assert result.exit_code == 0, result
    rerun = next(t for t in _study(out, "shared").get_trials() if t.user_attrs.get("hptune_retry_of") == cut.number)
    assert rerun.state == optuna.trial.TrialState.FAIL and not rerun.user_attrs.get("hptune_skipped")
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_an_old_host_pid_record_whose_pid_was_taken_again_is_failed_not_waited_for(write_spec, tmp_path: Path) -> None:
    import socket
    import subprocess
    import time

    spec, out, _, left = _grid_with_point_2_started(write_spec, tmp_path)  # by a 0.1.0 process
    time.sleep(1.5)
    later = subprocess.Popen(["sleep", "60"])  # a process that took that pid afterwards
    try:
        left.set_user_attr("hptune_worker", f"{socket.gethostname()}:{later.pid}")
        result = run_cli("run", spec, "--out", out, "-q")
    finally:
        later.kill()
    assert result.exit_code == 0, result
    trials = _study(out, "grid-repair").get_trials()
    assert trials[left.number].state == optuna.trial.TrialState.FAIL
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_finalize_says_partial_when_a_dead_process_left_its_trial_running(write_spec, tmp_path: Path) -> None:
    import subprocess

    spec, out, _, started = _grid_with_point_2_started(write_spec, tmp_path)
    gone = subprocess.run(
        [sys.executable, "-c", "from hptune.processes import current; print(current())"], capture_output=True, text=True
    ).stdout.strip()
    started.set_user_attr("hptune_worker", gone)  # its process has exited
    result = run_cli("finalize", spec, "--out", out)
    assert result.exit_code == 0, result
    assert "has not spent its budget of 3 trials (2 complete); these outputs are partial" in result.stderr


def test_an_error_checking_the_budget_stops_the_run_at_once(
    write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hptune.errors import StorageError

    def unreachable(self, trial):
        raise StorageError("cannot reach the study storage")

    monkeypatch.setattr("hptune.stopping.StopRules.admit", unreachable)
    out = tmp_path / "out"
    result = run_cli("run", write_spec(GRID), "--out", out)
    assert result.exit_code == 2, result
    assert "error: cannot reach the study storage" in result.stderr
    trials = _study(out, "grid-repair").get_trials()
    assert len([t for t in trials if t.state != optuna.trial.TrialState.WAITING]) == 1  # one, not every
