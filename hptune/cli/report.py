"""`hptune report RUN_DIR`: write RUN_DIR/report.html, one self-contained page of the run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hptune.cli._app import app
from hptune.cli.common import StorageOption, console, escape, quiet_libraries, user_errors

RunDir = Annotated[Path, typer.Argument(help="A run's output folder (holding run.json).", show_default=False)]


@app.command()
def report(
    run_dir: RunDir,
    storage: StorageOption = None,
) -> None:
    """Write RUN_DIR/report.html: the run's figures and tables in one file that works offline.

    A study kept in a database needs --storage with its full URL (run.json records it with
    the password masked); a journal study is read from RUN_DIR.
    """
    with user_errors(interrupted="interrupted; report.html is unchanged"):
        quiet_libraries()
        from hptune.report import report_run

        path = report_run(run_dir, storage)
        console().print(f"report: {escape(str(path))}")
