"""`hptune predict RUN_DIR DATA`: predictions of a run's model for new rows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hptune.cli._app import app
from hptune.cli.common import console, escape, user_errors


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run's output folder (the one holding run.json and the model).")],
    data: Annotated[Path, typer.Argument(help="New rows: a .csv or .parquet file with the columns the model was fitted on.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write them (.csv, or .parquet).")] = Path("predictions.csv"),
    proba: Annotated[bool, typer.Option("--proba", help="Write each class's probability instead of the predicted class.")] = False,
    trust: Annotated[
        list[str] | None,
        typer.Option("--trust", metavar="TYPE", help="Let a model.skops build this type (module.Class) besides "
                     "the ones hptune produces (repeatable); only for runs you trust."),
    ] = None,
) -> None:
    """Predict with a run's model: one row out per row in, identifier columns kept."""
    err = console(stderr=True)
    with user_errors():
        from hptune.predict import predict_file, write_predictions

        predictions = predict_file(run_dir, data, proba, tuple(trust or ()))
        for note in predictions.notes:
            err.print(f"note: {escape(note)}")
        write_predictions(predictions, output)
    err.print(escape(f"{predictions.rows} predictions: {output}"))
