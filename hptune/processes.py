"""Which process runs a trial, and whether that process is still alive."""

from __future__ import annotations

import os
import socket


def process_identity() -> str:
    """This process, as recorded on the trials it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_alive(identity: str) -> bool | None:
    """Whether the process ``identity`` names is alive; None when it ran on another host."""
    host, _, pid = str(identity).partition(":")
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
