"""`hptune dashboard RUN_DIR`: optuna-dashboard on the run's study (the `dashboard` extra)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from hptune.cli._app import app
from hptune.cli.common import StorageOption, console, escape, user_errors


@app.command()
def dashboard(
    run_dir: Annotated[Path, typer.Argument(help="A run's output folder (during the run, too).")],
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="The port to serve on.")] = 8080,
    host: Annotated[str, typer.Option("--host", help="The address to serve on (0.0.0.0: every interface).")] = "127.0.0.1",
    storage: StorageOption = None,
) -> None:
    """Serve optuna-dashboard on the run's study until Ctrl-C (pip install 'hptune[dashboard]')."""
    err = console(stderr=True)
    with user_errors():
        from hptune.dashboard import serve, study_storage
        from hptune.errors import UsageError

        opened, where = study_storage(run_dir, storage)
        stop = threading.Event()
        # Ctrl-C, docker stop, a scheduler or kill: how a server is stopped, not an error.
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        for signum, handler in previous.items():
            if handler is not signal.SIG_IGN:  # nohup and & keep Ctrl-C away on purpose
                signal.signal(signum, lambda *_: stop.set())
        err.print(escape(f"optuna-dashboard on {where}: http://{host}:{port}/ (Ctrl-C to stop)"))
        try:
            serve(opened, host, port, stop)
        except OSError as exc:
            raise UsageError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    err.print("dashboard stopped")
