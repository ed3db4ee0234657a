"""optuna-dashboard on a run's study: the study's own web UI (history, importances, parallel
coordinates, each trial), live while the run goes on. An optional extra: ``pip install
'hptune[dashboard]'``.

The study is found from the run folder: its ``study.journal`` (there from the first trial, so
the dashboard works during a run), or the database ``run.json`` names. ``run.json`` keeps a
database URL with its password masked, so such a study needs ``--storage URL``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from hptune.errors import UsageError
from hptune.results import RUN_FILE, STUDY_FILE

EXTRA = "pip install 'hptune[dashboard]'"


def study_storage(run_dir: Path, storage_url: str | None = None) -> tuple[Any, str]:
    """The storage holding ``run_dir``'s study, and where it is (for messages)."""
    from hptune import storage as storage_mod

    if storage_url is not None:
        return storage_mod.database_storage(storage_url), storage_mod.mask_url(storage_url)
    journal = run_dir / STUDY_FILE
    if journal.exists():
        return storage_mod.journal_storage(journal), str(journal)
    try:
        recorded = (json.loads((run_dir / RUN_FILE).read_text()).get("study") or {}).get("storage")
    except FileNotFoundError:
        raise UsageError(f"{run_dir} holds no study ({STUDY_FILE}) and no {RUN_FILE}: give a run's output folder") from None
    except ValueError as exc:
        raise UsageError(f"{run_dir / RUN_FILE} is not valid JSON: {exc}") from None
    if not recorded or not storage_mod.is_database_url(recorded):
        raise UsageError(f"{run_dir} holds no {STUDY_FILE}, and {RUN_FILE} names no database")
    if "***" in recorded:
        raise UsageError(f"the study is in {recorded}, whose password {RUN_FILE} does not keep: "
                         "pass --storage with the full URL")
    return storage_mod.database_storage(recorded), recorded


def serve(storage: Any, host: str, port: int, stop: threading.Event) -> None:
    """Run optuna-dashboard until ``stop`` is set (blocks). The server runs in a daemon thread:
    stopping it by raising in its thread is unreliable (wsgiref swallows an exception raised
    while it answers a request), so the caller's thread waits for the event and the server
    ends with the process. Raises what the server raised (a port in use, say)."""
    try:
        import optuna_dashboard
    except ImportError:
        raise UsageError(f"hptune dashboard needs optuna-dashboard: {EXTRA}") from None
    failed: list[BaseException] = []

    def run() -> None:
        try:
            optuna_dashboard.run_server(storage, host=host, port=port)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            failed.append(exc)
        finally:
            stop.set()

    server = threading.Thread(target=run, name="optuna-dashboard", daemon=True)
    server.start()
    while not stop.wait(0.5):  # a timed wait, so the caller's signal handlers run
        pass
    if failed:
        raise failed[0]
