"""A recorded process is told apart from every other: by host, boot, start time and pid."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hptune import processes
from hptune.processes import ProcessId, current, is_alive, parse

linux = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
HOST = socket.gethostname()


@pytest.fixture
def child():
    """A live python process that printed its identity and waits for its stdin to close."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from hptune.processes import current; print(current(), flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    identity = process.stdout.readline().strip()
    yield process, identity
    process.stdin.close()
    process.wait()


def _dead_pid() -> int:
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(process.stdout)


def _with(identity: str, **changes: object) -> str:
    host, pid, boot_id, start = parse(identity)._replace(**changes)
    return f"{host}/{boot_id}/{start}:{pid}"


@linux
def test_this_process_is_recorded_by_host_boot_start_and_pid_and_is_alive() -> None:
    me = parse(current())
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    start = int(Path("/proc/self/stat").read_text().rpartition(")")[2].split()[19])  # field 22
    assert me == ProcessId(HOST, os.getpid(), boot_id, start)
    assert current() == f"{HOST}/{boot_id}/{start}:{os.getpid()}"
    assert is_alive(current())


@linux
def test_another_process_is_alive_only_with_its_own_start_time_and_boot(child) -> None:
    process, identity = child
    assert parse(identity).pid == process.pid and identity != current()
    assert is_alive(identity)
    start = parse(identity).start
    assert not is_alive(_with(identity, start=start + 1))  # the pid was taken by a later process
    assert not is_alive(_with(identity, boot_id="00000000-0000-0000-0000-000000000000"))  # rebooted since


@linux
def test_the_same_pid_as_this_process_with_another_start_time_is_not_alive() -> None:
    # The restarted container: the dead process had the pid the new hptune has now.
    assert not is_alive(_with(current(), start=parse(current()).start - 1))


@linux
def test_a_process_that_ended_is_not_alive_even_before_it_is_reaped(child) -> None:
    process, identity = child
    process.stdin.close()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not is_alive(identity)  # a zombie runs nothing
    process.wait()
    assert not is_alive(identity)


def test_another_hosts_process_is_not_ours_to_judge() -> None:
    dead = _dead_pid()
    assert is_alive(f"{HOST}-elsewhere:{dead}")
    assert is_alive(f"{HOST}-elsewhere/b7d0c6a4-0000-4000-8000-000000000000/12:{dead}")
    assert is_alive(f"{HOST}-elsewhere:{os.getpid()}")
    assert is_alive("not a recorded process")


def test_the_old_host_pid_form_is_read_as_before(child) -> None:
    process, _ = child
    assert parse(f"{HOST}:{process.pid}") == ProcessId(HOST, process.pid)
    assert is_alive(f"{HOST}:{process.pid}")  # no start time recorded: a live pid is its process
    assert not is_alive(f"{HOST}:{_dead_pid()}")


@linux
def test_the_old_form_with_this_processs_pid_is_an_earlier_process() -> None:
    # Written by hptune 0.1.0 in a container that then restarted: this process would have
    # recorded the long form, so "host:<our pid>" is a process that is gone.
    assert not is_alive(f"{HOST}:{os.getpid()}")


def test_parse_reads_both_forms_and_refuses_anything_else() -> None:
    assert parse("vm:1958") == ProcessId("vm", 1958)
    assert parse("node-7.example/0e25-8bf6/28814:1") == ProcessId("node-7.example", 1, "0e25-8bf6", 28814)
    assert parse("a/b:3") == ProcessId("a/b", 3)  # no start time: an odd host name, old form
    for text in ["vm", "vm:", ":12", "vm:x12", ""]:
        with pytest.raises(ValueError, match="not a recorded process"):
            parse(text)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_process_records_itself_not_its_parent() -> None:
    parent = current()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once, skipping pytest's exit handlers
        try:
            os.write(write, current().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        theirs = pipe.read()
    os.waitpid(pid, 0)
    assert parse(theirs).pid == pid and theirs != parent and current() == parent


def test_without_proc_the_old_form_is_recorded_and_read(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(processes, "_PROC", tmp_path / "no-proc")
    monkeypatch.setattr(processes, "_cached", None)
    assert current() == f"{HOST}:{os.getpid()}"
    assert is_alive(current())
    assert not is_alive(f"{HOST}:{_dead_pid()}")
