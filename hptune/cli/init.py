"""`hptune init`: write a commented starter experiment (and the schema editors read beside it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hptune.cli._app import app
from hptune.cli.common import console, escape, user_errors


@app.command()
def init(
    dataset: Annotated[str | None, typer.Option("--dataset", help="A bundled data set: iris, wine, breast_cancer, digits, diabetes.")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="A .csv or .parquet file.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="With --data: the column to predict.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="A model alias (default: hist_gradient_boosting).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write.")] = Path("experiment.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite the file if it exists.")] = False,
) -> None:
    """Write a starter experiment that validates and runs as it is."""
    with user_errors():
        from hptune.errors import UsageError
        from hptune.results import write_atomic
        from hptune.schema import SCHEMA_FILE, schema_text
        from hptune.starters import starter

        if output.exists() and not force:
            raise UsageError(f"{output} exists; choose another -o or pass --force to overwrite it")
        written = starter(dataset, data, target, model, output)
        write_atomic(output, written.text)
        schema = output.parent / SCHEMA_FILE
        if not schema.exists():  # what the file's first line points editors at
            write_atomic(schema, schema_text())
    console(stderr=True).print(escape(
        f"wrote {output} ({written.model} for {written.task}, metric {written.metric}); "
        f"next: hptune validate {output} && hptune run {output}"))
