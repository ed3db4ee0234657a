"""Optuna's journal file, forced to disk as often as a power cut needs, and no more.

Optuna's own backend fsyncs every line it appends: five or six per trial (its creation, its
worker, each parameter, its scores, its end). An fsync took 0.5 to 2.5 ms on the machines we
measured, most of hptune's own cost on a fast trial. A line written without fsync is in the
kernel's page cache and survives the death of the process that wrote it (a kill, a crash,
Ctrl-C); only a power cut or a kernel crash can lose it. So:

- A running trial's progress (its creation, parameters, attributes) is never fsynced: a power
  cut in the middle of a trial loses that trial anyway.
- A line that ends a trial or changes the study is fsynced, with the whole file before it,
  at most ``SYNC_INTERVAL`` seconds after it was written: at once when the last fsync of this
  process is older than that, else by a timer when the interval is up (group commit, as
  databases do: PostgreSQL's ``synchronous_commit = off``, Redis's ``appendfsync
  everysec``). A trial of a second or more is fsynced as it ends; trials of 40 ms share one
  fsync per interval.

A power cut therefore loses at most the trials in flight and those that ended in the last
``SYNC_INTERVAL`` seconds. The file, its lock and its format are Optuna's.

Imported only when a journal is opened (it imports Optuna).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from typing import Any

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import TrialState

log = logging.getLogger(__name__)

#: The longest a line that ends a trial stays in the page cache only (seconds).
SYNC_INTERVAL = 0.5

#: The journals of this process with an fsync pending.
_pending: weakref.WeakSet[JournalFileSyncedAtTrialEnds] = weakref.WeakSet()


def sync_pending() -> None:
    """Force out every pending line now: before an exit that skips the interpreter's teardown
    (``os._exit``), which would not wait for the timers."""
    for backend in list(_pending):
        if backend._timer is not None and backend._timer_pid == os.getpid():
            backend._timer.cancel()
            backend._sync_pending()

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
        # Optuna's append_logs, with the fsync left to _sync: the same lock, the same lines.
        with get_lock_file(self._lock):
            lines = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            with open(self._file_path, "ab") as file:
                file.write(lines.encode("utf-8"))
                file.flush()
                if any(must_reach_the_disk(log) for log in logs):
                    self._sync(file.fileno())

    # -- group commit ---------------------------------------------------------------------

    _last_sync = float("-inf")  # time.monotonic() of this process's last fsync
    _timer: threading.Timer | None = None  # the pending fsync (None: none pending)
    _timer_pid = 0  # the process that started it (a forked child inherits the attribute, not the thread)

    def _sync(self, fd: int) -> None:
        now = time.monotonic()
        if now - self._last_sync >= SYNC_INTERVAL:
            os.fsync(fd)
            self._last_sync = now
        elif self._timer is None or self._timer_pid != os.getpid():
            # Not a daemon thread: an exit waits for it (at most SYNC_INTERVAL).
            self._timer = threading.Timer(self._last_sync + SYNC_INTERVAL - now, self._sync_pending)
            self._timer_pid = os.getpid()
            _pending.add(self)
            self._timer.start()

    def _sync_pending(self) -> None:
        """The timer's fsync: of the file, not a descriptor (fsync forces out the file's
        dirty pages, whoever wrote them)."""
        self._timer = None
        _pending.discard(self)
        try:
            fd = os.open(self._file_path, os.O_RDONLY)
        except OSError:  # moved aside (--fresh) or deleted since: nothing left to force out
            return
        try:
            os.fsync(fd)
            self._last_sync = time.monotonic()
        except OSError as exc:
            log.warning("%s: fsync failed: %s", self._file_path, exc)
        finally:
            os.close(fd)
