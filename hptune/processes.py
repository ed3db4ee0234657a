"""Which process runs a trial, recorded so that it can never be taken for another one.

A host name and a pid are not enough: a restarted container has the same host name, and its
hptune gets the same small pid (often 1) as the process killed in it. On Linux a process is
therefore recorded as ``host/boot_id/start:pid``: the kernel's boot id tells a rebooted
machine apart, and the start time (clock ticks since boot, field 22 of ``/proc/<pid>/stat``)
tells two processes with one pid apart. Where ``/proc`` is missing it is ``host:pid``, the
form every release before this one recorded; both forms are read.

As before, one host name is taken to be one table of pids: containers that share a journal
file while they run need host names of their own (Docker gives each one by default).

The pid stays last after the only colon: an older release reading the long form takes
``host/boot_id/start`` for another host's name and leaves the trial alone instead of failing.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

_PROC = Path("/proc")
_cached: tuple[int, str] | None = None  # (pid, identity): a forked child has another pid


class ProcessId(NamedTuple):
    """A recorded process; ``boot_id`` and ``start`` are None in the old ``host:pid`` form."""

    host: str
    pid: int
    boot_id: str | None = None
    start: int | None = None


def current() -> str:
    """This process's identity, as recorded on the trials it runs."""
    global _cached
    pid = os.getpid()
    if _cached is None or _cached[0] != pid:
        host, boot_id, start = socket.gethostname(), _boot_id(), _start_of("self")
        if boot_id is None or start is None:
            _cached = (pid, f"{host}:{pid}")
        else:
            _cached = (pid, f"{host}/{boot_id}/{start}:{pid}")
    return _cached[1]


def parse(recorded: str) -> ProcessId:
    """Read either form; ValueError if ``recorded`` is neither."""
    rest, colon, pid = recorded.rpartition(":")
    if not colon or not pid.isdigit() or not rest:
        raise ValueError(f"not a recorded process: {recorded!r}")
    parts = rest.rsplit("/", 2)
    if len(parts) == 3 and parts[0] and parts[2].isdigit():
        return ProcessId(parts[0], int(pid), parts[1], int(parts[2]))
    return ProcessId(rest, int(pid))  # host:pid


def is_alive(recorded: str, recorded_at: datetime | None = None) -> bool:
    """False only when the recorded process is certainly gone from this machine.

    Another host's process (or a value that is no recorded process) is not ours to judge:
    it counts as alive, so nothing on another machine is ever failed from here. On this host,
    a process is gone if the machine booted again since, if its pid is free, a zombie, or held
    by a process that started at another time, or if its pid is this process's own but the
    record is not this process's (the pid is ours now, so its recorder is gone). An old
    ``host:pid`` record carries no start time: a live pid counts as its process unless that
    process started after ``recorded_at`` (when the record was made, e.g. the trial's start),
    which proves the pid was taken again.
    """
    try:
        them = parse(str(recorded))
    except ValueError:
        return True
    me = parse(current())
    if them.host != me.host:
        return True
    if them == me:
        return True
    if them.pid == me.pid:
        return False
    if them.boot_id is not None and me.boot_id is not None and them.boot_id != me.boot_id:
        return False
    stat = _stat(str(them.pid))
    if stat is None:  # no /proc here, or hidden from us: only whether the pid is taken
        return _pid_taken(them.pid)
    state, start = stat
    if state in "ZXx":  # a zombie or dead process runs nothing
        return False
    if them.start is not None:
        return them.start == start
    started = _wall_time_of(start)
    return recorded_at is None or started is None or started <= recorded_at + timedelta(seconds=1)


def _wall_time_of(ticks: int) -> datetime | None:
    """The local wall time of a process start given in clock ticks since boot."""
    try:
        stat = (_PROC / "stat").read_text()
        boot = next(int(line.split()[1]) for line in stat.splitlines() if line.startswith("btime "))
        per_second = os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, AttributeError):
        return None
    return datetime.fromtimestamp(boot + ticks / per_second)


def _boot_id() -> str | None:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _start_of(pid: str) -> int | None:
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _stat(pid: str) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) from /proc/<pid>/stat, or None."""
    try:
        text = (_PROC / pid / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its last ")".
    fields = text.rpartition(")")[2].split()
    try:
        return fields[0], int(fields[19])  # fields 3 and 22
    except (IndexError, ValueError):
        return None


def _pid_taken(pid: int) -> bool:
    if os.name == "nt":  # there os.kill(pid, 0) would end the process: we cannot tell
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
