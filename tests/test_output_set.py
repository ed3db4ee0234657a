"""The output folder is one coherent set, readable by others, whatever the moment of a crash."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import joblib
import pytest
import yaml

from hptune.outputs import RunFolderError, load_run
from hptune.runner import run_experiment
from hptune.validate import Overrides, load_experiment
from tests.conftest import run_cli

TREES = """
name: output-set
seed: 3
data: {dataset: iris}
model: {estimator: decision_tree}
search_space:
  max_depth: {type: int, low: 1, high: 6}
  min_samples_leaf: {type: int, low: 1, high: 20}
cv: {folds: 3}
strategy: {kind: random, n_trials: 2, pruner: none}
"""

OUTPUTS = ("trials.csv", "best.yaml", "model.joblib", "run.json", "study.journal")


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_output_files_get_the_permissions_of_the_users_umask(umask: int, mode: int, write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    previous = os.umask(umask)
    try:
        result = run_cli("run", write_spec(TREES), "--out", out, "-q")
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result
    for name in OUTPUTS:
        assert stat.S_IMODE((out / name).stat().st_mode) == mode, name


def _model_params(out: Path) -> dict:
    model = joblib.load(out / "model.joblib").named_steps["model"]
    return {"max_depth": model.max_depth, "min_samples_leaf": model.min_samples_leaf}


def _trial_params(out: Path, number: int) -> dict:
    import pandas as pd

    row = pd.read_csv(out / "trials.csv").set_index("number").loc[number]
    return {"max_depth": int(row["param_max_depth"]), "min_samples_leaf": int(row["param_min_samples_leaf"])}


def test_a_whole_set_reads_back_and_names_the_trial_of_each_file(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("run", write_spec(TREES), "--out", out, "-q").exit_code == 0
    finished = load_run(out)
    run = finished.run
    assert run["stop_reason"] == "budget" and finished.model_is_best
    assert run["files"]["best.yaml"]["trial"] == run["files"]["model.joblib"]["trial"] == run["best_trial"]
    assert run["files"]["trials.csv"]["trials"] == len(finished.table) == 2
    assert finished.best["trial"] == run["best_trial"]
    assert _model_params(out) == _trial_params(out, run["best_trial"])


def test_a_changed_file_or_a_cut_short_set_is_refused_when_read_back(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("run", write_spec(TREES), "--out", out, "-q").exit_code == 0
    best = (out / "best.yaml").read_text()
    (out / "best.yaml").write_text(best.replace("name: output-set", "name: edited"))
    with pytest.raises(RunFolderError, match="best.yaml changed after run.json was written"):
        load_run(out)
    (out / "run.json").unlink()
    with pytest.raises(RunFolderError, match="writing the outputs was cut short"):
        load_run(out)


def test_ctrl_c_during_the_refit_leaves_a_set_that_says_which_trial_each_file_is(
    write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, out = write_spec(TREES), tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q", "--n-trials", "1").exit_code == 0
    first_model = _model_params(out)

    def interrupted(*args, **kwargs):  # Ctrl-C at the moment the refit runs
        raise KeyboardInterrupt

    monkeypatch.setattr("hptune.finish.refit_trial", interrupted)
    result = run_cli("run", spec, "--out", out, "-q", "--n-trials", "6")
    assert result.exit_code == 130, result
    finished = load_run(out)  # a whole set: every file matches run.json
    run = finished.run
    assert run["status"] == "interrupted" and run["trials"]["complete"] == 6
    assert finished.best["trial"] == run["best_trial"] and len(finished.table) == 6
    # The model was not refitted: it is still the first run's, and the set says so.
    assert _model_params(out) == first_model
    assert run["model_trial"] == 0 and run["files"]["model.joblib"]["kept_from_an_earlier_run"] is True
    assert _model_params(out) == _trial_params(out, run["model_trial"])
    assert finished.model_is_best == (run["best_trial"] == 0)


def test_a_crash_in_the_refit_leaves_the_previous_set_whole(
    write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, out = write_spec(TREES), tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "-q").exit_code == 0
    before = {name: (out / name).read_bytes() for name in ("trials.csv", "best.yaml", "model.joblib", "run.json")}

    def crash(*args, **kwargs):
        raise MemoryError("the refit ran out of memory")

    monkeypatch.setattr("hptune.finish.refit_trial", crash)
    with pytest.raises(MemoryError):
        run_cli("run", spec, "--out", out, "-q", "--n-trials", "4")
    assert {name: (out / name).read_bytes() for name in before} == before
    assert load_run(out).run["trials"]["complete"] == 2


def test_run_json_has_the_experiment_file_as_it_was_read(write_spec, tmp_path: Path) -> None:
    spec = write_spec(TREES)
    read = spec.read_bytes()
    exp = load_experiment(spec, (), Overrides(out=str(tmp_path / "out")))
    spec.write_text(TREES.replace("seed: 3", "seed: 4"))  # edited during a long run
    run_experiment(exp)
    import hashlib

    recorded = json.loads((tmp_path / "out" / "run.json").read_text())["experiment"]["file_sha256"]
    assert recorded == hashlib.sha256(read).hexdigest()
    spec.unlink()  # and a file deleted during the run costs nothing
    exp = load_experiment(write_spec(TREES, "again.yaml"), (), Overrides(out=str(tmp_path / "again")))
    exp.path.unlink()
    assert run_experiment(exp).best_trial is not None
    assert yaml.safe_load((tmp_path / "again" / "best.yaml").read_text())["name"] == "output-set"
