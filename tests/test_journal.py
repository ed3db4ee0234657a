"""The study journal forces to disk every line that ends a trial or changes the study, at the
moment it is written, and no line of a running trial's progress (hptune.journal explains why);
the file stays Optuna's own, read by Optuna's own backend."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest

from tests.conftest import run_cli

SPEC = """
name: journal-lines
data: {dataset: iris, test_size: 0.2}
model: {estimator: sklearn.linear_model.LogisticRegression, preprocessing: none, params: {max_iter: 500}}
search_space:
  C: {type: float, low: 0.01, high: 100, log: true}
  fit_intercept: [true, false]
cv: {folds: 3}
strategy: {kind: bayesian, n_trials: 8, pruner: none}
"""


def _line_ends(journal: Path) -> list[tuple[dict, int]]:
    """Each line of the journal with the byte offset where it ends."""
    lines, offset = [], 0
    for raw in journal.read_bytes().splitlines(keepends=True):
        offset += len(raw)
        lines.append((json.loads(raw), offset))
    return lines


def test_trial_ends_and_study_changes_reach_the_disk_as_they_are_written(
    write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optuna.storages.journal._storage import JournalOperation
    from optuna.trial import TrialState

    journal = tmp_path / "out" / "study.journal"
    synced_at: list[int] = []  # the journal's size at each fsync of it
    real_fsync = os.fsync

    def fsync_and_note(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}") == str(journal):
            synced_at.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_and_note)  # the real fsync still runs
    result = run_cli("run", write_spec(SPEC), "--out", tmp_path / "out")
    assert result.exit_code == 0, result

    lines = _line_ends(journal)
    ends = [end for log, end in lines if log["op_code"] == JournalOperation.SET_TRIAL_STATE_VALUES
            and TrialState(log["state"]).is_finished()]
    study_changes = [end for log, end in lines if log["op_code"] in (
        JournalOperation.CREATE_STUDY, JournalOperation.SET_STUDY_USER_ATTR, JournalOperation.SET_STUDY_SYSTEM_ATTR)]
    assert len(ends) == 8 and study_changes
    # Each was forced to disk right after it was written (before any other line was added).
    assert set(ends + study_changes) <= set(synced_at)
    # And nothing else was: a trial's creation, start, parameters and attributes were not.
    assert len(synced_at) == len(ends) + len(study_changes)
    progress = [end for log, end in lines if log["op_code"] in (
        JournalOperation.SET_TRIAL_PARAM, JournalOperation.SET_TRIAL_USER_ATTR)]
    assert len(progress) >= 8 * 3 and not set(progress) & set(synced_at)


def test_optuna_s_own_journal_backend_reads_the_study(write_spec, tmp_path: Path) -> None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    assert run_cli("run", write_spec(SPEC), "--out", tmp_path / "out").exit_code == 0
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "out" / "study.journal")))
    study = optuna.load_study(study_name="journal-lines", storage=storage)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 8
    assert all({"C", "fit_intercept"} <= set(t.params) and "cv" in t.user_attrs for t in trials)


def test_a_line_half_written_when_the_power_went_is_cut_and_the_study_goes_on(write_spec, tmp_path: Path) -> None:
    spec, out = write_spec(SPEC), tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "--n-trials", "3").exit_code == 0
    journal = out / "study.journal"
    whole = journal.read_bytes()
    # What a power cut leaves: the start of a line a running trial was writing.
    journal.write_bytes(whole + b'{"op_code":4,"worker_id":"x","study_id":0,"datet')
    resumed = run_cli("run", spec, "--out", out, "--n-trials", "5")
    assert resumed.exit_code == 0, resumed
    assert journal.read_bytes().startswith(whole) and journal.read_bytes().endswith(b"\n")
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="journal-lines", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 5
