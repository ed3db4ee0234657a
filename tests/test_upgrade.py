"""Studies made by an earlier release keep resuming; a real change is still refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest

from hptune.fingerprint import fingerprint_parts
from hptune.storage import journal_storage
from hptune.validate import Overrides, load_experiment
from tests.conftest import ROOT, run_cli

FIXTURE = ROOT / "tests" / "fixtures" / "study-0.1.0"


@pytest.fixture
def old_study(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the study hptune 0.1.0 made (3 of 3 trials), and its experiment file."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(FIXTURE / "study.journal", out / "study.journal")
    spec = tmp_path / "experiment.yaml"
    shutil.copy(FIXTURE / "experiment.yaml", spec)
    return spec, out


def _stored_parts(out: Path) -> dict[str, str]:
    study = optuna.load_study(study_name="made-by-0.1.0", storage=journal_storage(out / "study.journal"))
    return study.user_attrs["hptune_fingerprint_parts"]


def test_a_study_made_by_0_1_0_resumes(old_study) -> None:
    spec, out = old_study
    result = run_cli("run", spec, "--out", out, "--n-trials", "5", "-q")
    assert result.exit_code == 0, result
    assert "resuming: 3 of 5 trials done" in result.stderr
    study = optuna.load_study(study_name="made-by-0.1.0", storage=journal_storage(out / "study.journal"))
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 5


@pytest.mark.parametrize(
    ("change", "part"),
    [("cv: {folds: 3}", "cv"), ("seed: 7", "seed"), ("max_iter: 500", "model"), ("kind: random", "strategy")],
)
def test_a_study_made_by_0_1_0_refuses_a_real_change(change: str, part: str, old_study) -> None:
    spec, out = old_study
    changed = {"cv: {folds: 3}": "cv: {folds: 4}", "seed: 7": "seed: 8", "max_iter: 500": "max_iter: 400",
               "kind: random": "kind: bayesian"}[change]
    spec.write_text(spec.read_text().replace(change, changed))
    result = run_cli("run", spec, "--out", out, "-q")
    assert result.exit_code == 2, result
    assert f"holds a study of a different experiment (changed: {part})" in result.stderr


def test_the_fingerprint_is_the_one_0_1_0_stored(old_study) -> None:
    spec, out = old_study
    exp = load_experiment(spec, (), Overrides(out=str(out)))
    assert fingerprint_parts(exp) == _stored_parts(out)


def test_a_key_added_since_0_1_0_changes_the_fingerprint_only_when_set() -> None:
    from hptune import spec
    from hptune.fingerprint import _meaning

    class CVSpec(spec.CVSpec):  # as a later release might grow it
        stratify_by: str | None = None

    before = _meaning(spec.CVSpec(folds=3))
    assert _meaning(CVSpec(folds=3)) == before
    assert _meaning(CVSpec(folds=3, stratify_by=None)) == before
    assert _meaning(CVSpec(folds=3, stratify_by="region")) == {**before, "stratify_by": "region"}
    # A key 0.1.0 knew is hashed with its value even at the default, as 0.1.0 did.
    assert _meaning(spec.CVSpec())["folds"] == 5


GRID_FIXTURE = ROOT / "tests" / "fixtures" / "grid-study-0.1.0"


def test_a_grid_study_made_by_0_1_0_with_retries_skips_and_interruptions_resumes_and_extends(tmp_path: Path) -> None:
    import pandas as pd

    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(GRID_FIXTURE / "study.journal", out / "study.journal")
    spec = tmp_path / "experiment.yaml"
    shutil.copy(GRID_FIXTURE / "experiment.yaml", spec)
    # 0.1.0 ran 6 of the 9 points and retried its 2 failures: 8 finished of a budget of 8.
    result = run_cli("run", spec, "--out", out, "--n-trials", "9", "-q")
    assert result.exit_code == 0, result
    assert "resuming: 8 of 11 trials done" in result.stderr  # 9 points + the 2 retries
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete"
    assert run["trials"] == {"complete": 6, "fail": 5, "pruned": 0, "interrupted": 2, "running": 0}
    table = pd.read_csv(out / "trials.csv")
    ran = table[table["state"].isin(["COMPLETE", "FAIL"]) & table["error"].fillna("").str.match("^(?!interrupted)")]
    points = sorted(zip(ran["param_C"], ran["param_gamma"], strict=True))
    grid = sorted((c, g) for c in (0.1, 1.0, 10.0) for g in (-1.0, 0.0001, 0.001))
    # Every point once, and the two points 0.1.0 retried twice (the retry failed as well).
    assert sorted(set(points)) == grid and len(points) == 11
    assert points.count((0.1, -1.0)) == points.count((1.0, -1.0)) == 2

    # The failures 0.1.0 retried are not retried again; their retries and the new one are.
    again = run_cli("run", spec, "--out", out, "--n-trials", "9", "-q", "--retry-failed")
    assert again.exit_code == 0, again
    study = optuna.load_study(study_name="grid-made-by-0.1.0", storage=journal_storage(out / "study.journal"))
    retried = sorted(t.user_attrs["hptune_retry_of"] for t in study.get_trials()
                     if t.user_attrs.get("hptune_retry_reason") == "failed")
    new_failure = next(t.number for t in study.get_trials() if t.params == {"C": 10.0, "gamma": -1.0}
                       and "hptune_retry_of" not in t.user_attrs)
    assert retried == sorted([0, 3, 8, 9, new_failure])


def test_a_study_made_before_pruning_goes_on_without_it_unless_the_file_names_a_pruner(old_study) -> None:
    spec, out = old_study
    assert run_cli("run", spec, "--out", out, "--n-trials", "12", "-q").exit_code == 0
    study = optuna.load_study(study_name="made-by-0.1.0", storage=journal_storage(out / "study.journal"))
    assert all(t.state.name == "COMPLETE" and not t.intermediate_values for t in study.get_trials())
    assert json.loads((out / "run.json").read_text())["study"]["pruner"] == "none"
    # Naming one in the file turns it on (and is not a change of experiment).
    spec.write_text(spec.read_text().replace("kind: random", "kind: random, pruner: median"))
    assert run_cli("run", spec, "--out", out, "--n-trials", "14", "-q").exit_code == 0
    study = optuna.load_study(study_name="made-by-0.1.0", storage=journal_storage(out / "study.journal"))
    assert all(t.intermediate_values for t in study.get_trials()[12:])
    assert json.loads((out / "run.json").read_text())["study"]["pruner"] == "median"
