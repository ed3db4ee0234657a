"""`hptune schema`: the JSON Schema of the experiment file, for editors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hptune.cli._app import app
from hptune.cli.common import user_errors


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write it to this file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of the experiment file (point an editor's YAML support at it)."""
    from hptune.schema import schema_text

    text = schema_text()
    if output is None:
        typer.echo(text, nl=False)
        return
    with user_errors():
        from hptune.results import write_atomic

        write_atomic(output, text)
