"""Optuna's journal file, forcing to disk only the writes that must survive a power cut.

Optuna's own backend fsyncs every line it appends: five or six per trial (its creation, its
worker, each parameter, its scores, its end). An fsync took 0.5 to 2.5 ms on the machines we
measured, most of hptune's own cost on a fast trial. A line written without fsync is in the
kernel's page cache and survives the death of the process that wrote it (a kill, a crash,
Ctrl-C); only a power cut or a kernel crash can lose it. And fsync writes out the whole file,
so the fsync of a trial's end also forces out every earlier line: that trial's, and those
other processes wrote before it. A power cut therefore loses at most the trials in flight,
which it would have cut short anyway. The file, its lock and its format are Optuna's.

Imported only when a journal is opened (it imports Optuna).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import TrialState

log = logging.getLogger(__name__)

#: What a running trial writes about itself, and no one else needs on disk at once.
_TRIAL_PROGRESS = (
    JournalOperation.SET_TRIAL_PARAM,
    JournalOperation.SET_TRIAL_USER_ATTR,
    JournalOperation.SET_TRIAL_SYSTEM_ATTR,
    JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE,
)


def must_reach_the_disk(log: dict[str, Any]) -> bool:
    """Every line but a running trial's progress: its creation by a worker (a queued trial,
    created from a template, carries the work it must re-run and is kept), its start, its
    parameters, attributes and intermediate values."""
    op = log.get("op_code")
    if op == JournalOperation.CREATE_TRIAL:
        return "state" in log
    if op == JournalOperation.SET_TRIAL_STATE_VALUES:
        return log.get("state") != TrialState.RUNNING
    return op not in _TRIAL_PROGRESS


class JournalFileSyncedAtTrialEnds(JournalFileBackend):
    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self._cut_a_torn_last_line()

    def _cut_a_torn_last_line(self) -> None:
        """A power cut in the middle of a line leaves it half-written, and Optuna refuses a
        journal with a broken line before its end: the next append would make this one
        unreadable for good. Lines are appended whole under the lock, so a last line without
        its newline, seen under the lock, is such a line: it was a running trial's progress
        (what ends a trial reaches the disk before its writer moves on), and is cut off."""
        with get_lock_file(self._lock), open(self._file_path, "rb+") as file:
            size = file.seek(0, os.SEEK_END)
            if size == 0:
                return
            file.seek(size - 1)
            if file.read(1) == b"\n":
                return
            keep = size
            while keep > 0:  # back to the end of the last whole line
                step = min(keep, 1 << 16)
                file.seek(keep - step)
                chunk = file.read(step)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    keep = keep - step + newline + 1
                    break
                keep -= step
            file.truncate(keep)
            log.warning("%s: cut %d bytes of a half-written last line (a crash while a trial ran)", self._file_path, size - keep)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if any(must_reach_the_disk(log) for log in logs):
            super().append_logs(logs)
            return
        # Optuna's append_logs, without the fsync: the same lock, the same lines.
        with get_lock_file(self._lock):
            lines = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            with open(self._file_path, "ab") as file:
                file.write(lines.encode("utf-8"))
