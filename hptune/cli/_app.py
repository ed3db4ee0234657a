"""The Typer application and its global options; each command lives in a module of its own."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from hptune import __version__
from hptune.cli.common import EXIT_OK

app = typer.Typer(
    name="hptune",
    help="Tune a scikit-learn-compatible model from one YAML experiment file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"hptune {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks and library logs.")] = False,
) -> None:
    if debug:
        os.environ["HPTUNE_DEBUG"] = "1"
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
