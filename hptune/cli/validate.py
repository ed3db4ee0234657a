"""`hptune validate FILE...`: check experiment files without training anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hptune.cli._app import app
from hptune.cli.common import EXIT_ERROR, AllowModule, SetOption, console, print_warnings, user_errors
from hptune.errors import SpecError


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Experiment files to check.", show_default=False)],
    allow_module: AllowModule = None,
    set_values: SetOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout (every problem and warning); lines go to stderr."),
    ] = False,
) -> None:
    """Check experiment files without training anything; report every problem at once."""
    from hptune.documents import SCHEMA_VERSION, issue_record
    from hptune.overrides import Overrides
    from hptune.validate import load_experiment

    out = console(stderr=as_json)
    all_issues = []
    checked: list[dict[str, Any]] = []
    for path in files:
        try:
            exp = load_experiment(path, tuple(allow_module or ()), Overrides(sets=list(set_values or [])))
        except SpecError as exc:
            all_issues.extend(exc.issues)
            checked.append({"file": str(path), "valid": False})
            continue
        print_warnings(exp)
        checked.append({"file": str(path), "valid": True, "task": exp.task, "estimator": exp.estimator_path,
                        "parameters": len(exp.spec.search_space), "strategy": exp.spec.strategy.kind,
                        "n_trials": exp.n_trials, "warnings": [issue_record(w) for w in exp.warnings]})
        out.print(
            f"{path}: ok ({exp.task}, {exp.estimator_path}, {len(exp.spec.search_space)} parameters, "
            f"{exp.spec.strategy.kind} x {exp.n_trials} trials)"
        )
    if as_json:
        typer.echo(json.dumps({
            "schema_version": SCHEMA_VERSION, "command": "validate", "exit_code": EXIT_ERROR if all_issues else 0,
            "valid": not all_issues, "files": checked, "problems": [issue_record(i) for i in sorted(set(all_issues))],
        }, indent=2))
    if all_issues:
        with user_errors():
            raise SpecError(all_issues)
