"""`hptune validate FILE...`: check experiment files without training anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hptune.cli._app import app
from hptune.cli.common import AllowModule, console, print_warnings, user_errors
from hptune.errors import SpecError


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Experiment files to check.", show_default=False)],
    allow_module: AllowModule = None,
) -> None:
    """Check experiment files without training anything; report every problem at once."""
    from hptune.validate import load_experiment

    out = console()
    all_issues = []
    for path in files:
        try:
            exp = load_experiment(path, tuple(allow_module or ()))
        except SpecError as exc:
            all_issues.extend(exc.issues)
            continue
        print_warnings(exp)
        out.print(
            f"{path}: ok ({exp.task}, {exp.estimator_path}, {len(exp.spec.search_space)} parameters, "
            f"{exp.spec.strategy.kind} x {exp.n_trials} trials)"
        )
    if all_issues:
        with user_errors():
            raise SpecError(all_issues)
