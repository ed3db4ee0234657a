"""A study shared by several processes or machines: retries, seeds, grid repairs, finalize."""

from __future__ import annotations

import json
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
    retries = [t for t in _study(out, "shared").get_trials() if t.user_attrs.get("hptune_retry_of") == 0]
    assert len(retries) == 1


def test_machines_never_share_a_sampler_seed(write_spec, tmp_path: Path) -> None:
    exp = load_experiment(write_spec(FAILING), (), Overrides(out=str(tmp_path / "out")))
    machines = [open_study(exp, worker=True) for _ in range(16)]
    seeds = {m.worker_seed(w) for m in machines for w in range(4)}
    assert len(seeds) == 16 * 4
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
    spec, out = write_spec(GRID.replace("n_trials: 2", "n_trials: 3")), tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q", "--n-trials", "2").exit_code == 0
    # A worker elsewhere has started the last trial of the budget and not finished it.
    study = _study(out, "grid-repair")
    study.set_user_attr("hptune_grid_queued", 3)
    study.enqueue_trial({"max_depth": 3, "criterion": "gini"}, user_attrs={"hptune_grid_point": 2})
    study.ask()
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
