"""The command line: the only part of hptune that talks to a terminal.

Each command is a module (``run``, ``validate``, ``finalize``, ``report``) that parses its options, calls
one library function, renders the result (``render``) and leaves errors to ``common``, which
turns them into one line and an exit code. Heavy libraries (scikit-learn, Optuna, pandas) are
imported inside the commands so that ``hptune --help`` is instant.
"""

from __future__ import annotations

import gc
import logging
import os
import sys

from hptune.cli import compare as _compare  # noqa: F401 - registers the command
from hptune.cli import dashboard as _dashboard  # noqa: F401 - registers the command
from hptune.cli import finalize as _finalize  # noqa: F401 - registers the command
from hptune.cli import init as _init  # noqa: F401 - registers the command
from hptune.cli import predict as _predict  # noqa: F401 - registers the command
from hptune.cli import report as _report  # noqa: F401 - registers the command
from hptune.cli import run as _run  # noqa: F401 - registers the command
from hptune.cli import schema as _schema  # noqa: F401 - registers the command
from hptune.cli import show as _show  # noqa: F401 - registers the command
from hptune.cli import validate as _validate  # noqa: F401 - registers the command
from hptune.cli._app import app
from hptune.cli.common import EXIT_ERROR, EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK

__all__ = ["EXIT_ERROR", "EXIT_FAIL", "EXIT_INTERRUPTED", "EXIT_OK", "app", "main"]


def main() -> None:
    """Console-script entry point. Anything that is not an HptuneError is a bug and keeps
    its traceback."""
    # Importing scikit-learn, SciPy and pandas creates objects fast enough to set off several
    # full collections over an ever larger heap (about 0.15 s per command, all wasted: nothing
    # they create is garbage). Collect nothing until the experiment is loaded.
    gc.disable()
    try:
        app()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        # Skip the interpreter's teardown: with scikit-learn, SciPy and pandas loaded it takes
        # about 0.3 s, and every file hptune writes is already closed, fsync'd and renamed.
        from hptune.storage import sync_journals

        sync_journals()  # a trial's end may still wait for its fsync
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
