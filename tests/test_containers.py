"""A restarted container: the same host name and the same small pid, but another process.

A process killed mid-trial inside a container leaves its trial RUNNING; when the container
restarts, hptune runs again under the same host name and the same pid (1: it is the PID
namespace's init). The dead trial's recorded process must not be taken for the new hptune.
These tests make real PID namespaces with ``unshare`` (root only).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from hptune.storage import journal_storage
from tests.conftest import run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures"

N_TRIALS = 4
SPEC = f"""
name: container
seed: 1
data: {{dataset: digits, test_size: 0.2}}
model: {{estimator: svc}}
search_space:
  C: {{type: float, low: 0.1, high: 100, log: true}}
  gamma: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}
cv: {{folds: 3}}
strategy: {{kind: random, n_trials: {N_TRIALS}}}
"""
NAMESPACE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]


@pytest.fixture(scope="module")
def pid_namespaces() -> None:
    """Skip unless this process can make PID namespaces (root, with unshare)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make PID namespaces with unshare")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run([*NAMESPACE, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        reason = f"unshare cannot make a PID namespace here: {probe.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="container", storage=journal_storage(out / "study.journal"))


def _trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    if not (out / "study.journal").exists():
        return []
    try:
        return _study(out).get_trials(deepcopy=False)
    except KeyError:  # the study is not created yet
        return []


def _command(spec: Path, out: Path) -> list[str]:
    return [*NAMESPACE, sys.executable, "-m", "hptune", "run", str(spec), "--out", str(out)]


def _pid(trial: optuna.trial.FrozenTrial) -> int:
    return int(trial.user_attrs["hptune_worker"].rpartition(":")[2])


def _namespace_init(unshare: subprocess.Popen) -> int:
    """The pid (outside) of the namespace's pid 1: the child unshare forked."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue
                if int(fields[1]) == unshare.pid:
                    return int(entry.name)
        time.sleep(0.01)
    raise AssertionError("unshare forked no child")


def _run_until_killed_mid_trial(spec: Path, out: Path) -> optuna.trial.FrozenTrial:
    """Start hptune in a new PID namespace, SIGKILL the whole namespace once a trial is under
    way after a complete one, and return that trial as the kill left it (RUNNING, its process
    recorded)."""
    for _ in range(3):  # the kill may land between two trials; then the next run is killed too
        unshare = subprocess.Popen(_command(spec, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                assert unshare.poll() is None, unshare.communicate()
                trials = _trials(out)
                running = [
                    t for t in trials
                    if t.state == optuna.trial.TrialState.RUNNING and t.params and "hptune_worker" in t.user_attrs
                ]
                if running and any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("no trial got under way in time")
            # Killing the namespace's init kills every process in it: the container is gone.
            os.kill(_namespace_init(unshare), signal.SIGKILL)
            unshare.communicate(timeout=30)
        finally:
            if unshare.poll() is None:
                unshare.kill()  # --kill-child takes the namespace down with it
                unshare.communicate()
        left = [
            t for t in _trials(out)
            if t.state == optuna.trial.TrialState.RUNNING and "hptune_worker" in t.user_attrs
        ]
        if left:
            (trial,) = left
            return trial
    raise AssertionError("three kills in a row landed between trials")


@pytest.mark.slow
@pytest.mark.parametrize("recorded_by", ["this release", "hptune 0.1.0"])
def test_a_trial_killed_in_a_restarted_container_is_failed_and_run_again(
    recorded_by: str, pid_namespaces: None, write_spec, tmp_path: Path
) -> None:
    spec, out = write_spec(SPEC), tmp_path / "out"
    killed = _run_until_killed_mid_trial(spec, out)
    # hptune is exec'd as the namespace's init, so every run in a fresh namespace is pid 1.
    assert _pid(killed) == 1
    if recorded_by == "hptune 0.1.0":  # which recorded its process as "host:pid"
        storage = journal_storage(out / "study.journal")
        storage.set_trial_user_attr(killed._trial_id, "hptune_worker", f"{socket.gethostname()}:{_pid(killed)}")
    complete_before = sum(t.state == optuna.trial.TrialState.COMPLETE for t in _trials(out))

    # (A kill that lands while hptune holds the journal's file lock makes this run wait out
    # Optuna's 30 s grace period for a stale lock first.)
    restarted = subprocess.run(_command(spec, out), capture_output=True, text=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr
    assert f"resuming: {complete_before} of {N_TRIALS} trials done" in restarted.stderr
    trials = _trials(out)
    after = [t for t in trials if t.number > killed.number]
    assert after and all(_pid(t) == _pid(killed) for t in after)  # the same pid as the dead process
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    finished = [t for t in trials if t.state.is_finished() and not t.user_attrs.get("hptune_interrupted")]
    assert len(finished) == N_TRIALS
    dead = next(t for t in trials if t.number == killed.number)
    assert dead.state == optuna.trial.TrialState.FAIL and dead.user_attrs["hptune_interrupted"]
    (retry,) = [t for t in trials if t.user_attrs.get("hptune_retry_of") == killed.number]
    assert retry.state == optuna.trial.TrialState.COMPLETE and killed.params.items() <= retry.params.items()


def test_a_study_made_by_0_1_0_has_its_host_pid_trials_failed_when_their_process_is_gone(tmp_path: Path) -> None:
    """hptune 0.1.0 recorded "host:pid". Two trials it left RUNNING: one whose pid is free, and
    one whose pid is this process's own (the restarted container: this process would have
    recorded the long form, so that is an earlier process). Both are failed and run again."""
    out = tmp_path / "out"
    shutil.copytree(FIXTURES / "study-0.1.0", out)
    study = optuna.load_study(study_name="made-by-0.1.0", storage=journal_storage(out / "study.journal"))
    free = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left: list[int] = []
    for pid in [int(free.stdout), os.getpid()]:
        trial = study.ask({"C": optuna.distributions.FloatDistribution(0.01, 100, log=True)})
        study._storage.set_trial_user_attr(trial._trial_id, "hptune_worker", f"{socket.gethostname()}:{pid}")
        left.append(trial.number)

    result = run_cli("run", out / "experiment.yaml", "--out", out, "--n-trials", "5", "-q")
    assert result.exit_code == 0, result
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len([t for t in trials if t.state.is_finished() and not t.user_attrs.get("hptune_interrupted")]) == 5
    for number in left:
        dead = trials[number]
        assert dead.state == optuna.trial.TrialState.FAIL and dead.user_attrs["hptune_interrupted"]
        (retry,) = [t for t in trials if t.user_attrs.get("hptune_retry_of") == number]
        assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params["C"] == dead.params["C"]
