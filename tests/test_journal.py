"""The study journal forces to disk every line that ends a trial or changes the study, within
half a second of writing it (trial ends close together share one fsync), and no line of a
running trial's progress (hptune.journal explains why); the file stays Optuna's own, read by
Optuna's own backend."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
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


@pytest.fixture
def journal_fsyncs(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], list[int]]:
    """Notes the size of a journal at each fsync of it, from any thread (the real fsync still runs)."""
    synced: dict[str, list[int]] = {}
    real_fsync = os.fsync

    def fsync_and_note(fd: int) -> None:
        synced.setdefault(os.readlink(f"/proc/self/fd/{fd}"), []).append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_and_note)
    return lambda journal: synced.setdefault(str(journal), [])


def _must_reach_the_disk(journal: Path) -> tuple[list[int], list[int]]:
    """Where the lines that end a trial or change the study end, and where the others end."""
    from optuna.storages.journal._storage import JournalOperation
    from optuna.trial import TrialState

    lines = _line_ends(journal)
    ends = [end for log, end in lines if log["op_code"] == JournalOperation.SET_TRIAL_STATE_VALUES
            and TrialState(log["state"]).is_finished()]
    study_changes = [end for log, end in lines if log["op_code"] in (
        JournalOperation.CREATE_STUDY, JournalOperation.SET_STUDY_USER_ATTR, JournalOperation.SET_STUDY_SYSTEM_ATTR)]
    progress = [end for log, end in lines if log["op_code"] in (
        JournalOperation.SET_TRIAL_PARAM, JournalOperation.SET_TRIAL_USER_ATTR)]
    return sorted(ends + study_changes), progress


def test_every_trial_end_is_on_disk_when_run_returns_and_progress_costs_no_fsync(
    write_spec, tmp_path: Path, journal_fsyncs
) -> None:
    journal = tmp_path / "out" / "study.journal"
    result = run_cli("run", write_spec(SPEC), "--out", tmp_path / "out")
    assert result.exit_code == 0, result
    synced_at = journal_fsyncs(journal)
    must, progress = _must_reach_the_disk(journal)
    assert len(must) > 8 and len(progress) >= 8 * 3
    # Before the outputs were written, an fsync covered the last of them (so all before it).
    assert synced_at and max(synced_at) >= max(must)
    # Never more fsyncs than lines that need one: a trial's creation, parameters and
    # attributes never cost one.
    assert len(synced_at) <= len(must)


def _fast_trials(journal: Path, trials: int) -> None:
    """A study on the journal with ``trials`` trials that end at once (no model)."""
    from optuna.storages import JournalStorage

    from hptune.journal import JournalFileSyncedAtTrialEnds

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="fast", storage=JournalStorage(JournalFileSyncedAtTrialEnds(str(journal))))
    for _ in range(trials):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, 0.5)


def test_trial_ends_close_together_share_one_fsync(tmp_path: Path, journal_fsyncs, monkeypatch) -> None:
    from hptune import journal as journal_mod
    from hptune.storage import sync_journals

    monkeypatch.setattr(journal_mod, "SYNC_INTERVAL", 600.0)  # the timer never fires in this test
    journal = tmp_path / "study.journal"
    _fast_trials(journal, 5)
    synced_at = journal_fsyncs(journal)
    must, _ = _must_reach_the_disk(journal)
    # The study's creation went to disk at once; the five trial ends that followed within the
    # interval wait for one fsync together.
    assert synced_at == [must[0]]
    sync_journals()  # what a run does before its outputs, and the CLI before it exits
    assert synced_at == [must[0], journal.stat().st_size]


def test_the_timer_forces_out_what_waits(tmp_path: Path, journal_fsyncs, monkeypatch) -> None:
    from hptune import journal as journal_mod

    monkeypatch.setattr(journal_mod, "SYNC_INTERVAL", 0.2)
    journal = tmp_path / "study.journal"
    _fast_trials(journal, 3)
    synced_at = journal_fsyncs(journal)
    deadline = time.monotonic() + 30  # a bound for a loaded machine, not a measure
    while (not synced_at or max(synced_at) < journal.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert max(synced_at) == journal.stat().st_size


def test_without_an_interval_every_trial_end_is_forced_out_as_it_is_written(
    tmp_path: Path, journal_fsyncs, monkeypatch
) -> None:
    from hptune import journal as journal_mod

    monkeypatch.setattr(journal_mod, "SYNC_INTERVAL", 0.0)
    journal = tmp_path / "study.journal"
    _fast_trials(journal, 4)
    must, progress = _must_reach_the_disk(journal)
    assert journal_fsyncs(journal) == must and not set(progress) & set(must)


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
