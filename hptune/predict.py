"""From a run to predictions: load a run's model and predict on new rows.

The model is the refitted pipeline (preprocessing included), so it takes raw rows with the
columns it was fitted on. They are checked against ``run.json`` (``data.columns``) before the
model sees them: a missing column is one line naming it; extra columns are left out and said;
the target column, when present, is left out too; the columns ``data.drop`` named (an id,
typically) are carried into the output beside the predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hptune.errors import DataError, UsageError


@dataclass
class Predictions:
    table: Any  # the kept identifier columns, then prediction or one proba_<class> per class
    rows: int
    notes: list[str] = field(default_factory=list)  # what the caller should say (extra columns...)


def predict_file(run_dir: Path, data: Path, proba: bool = False, trust: tuple[str, ...] = ()) -> Predictions:
    """``trust``: types a model.skops may hold beyond those hptune produces (hptune.modelfile)."""
    import pandas as pd

    from hptune.data import _read_table
    from hptune.modelfile import load
    from hptune.outputs import load_run

    finished = load_run(run_dir)
    if finished.model_path is None:
        raise UsageError(f"{run_dir} holds no model (status {finished.run.get('status')!r}): nothing to predict with")
    recorded = finished.run.get("data") or {}
    columns = recorded.get("columns")
    if not columns:
        raise UsageError(f"{run_dir / 'run.json'} does not list the model's columns (written before hptune recorded "
                         "them): run `hptune finalize` on the experiment to write it again")
    try:
        frame, _ = _read_table(data, str(data))
    except DataError as exc:
        raise DataError(str(exc)) from None
    frame.columns = [str(column) for column in frame.columns]
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        shown = ", ".join(repr(column) for column in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{data}: missing column{'s' if len(missing) > 1 else ''} {shown}, which the model was fitted on")
    notes = []
    target, kept = recorded.get("target"), [c for c in recorded.get("drop") or [] if c in frame.columns]
    extra = [c for c in frame.columns if c not in columns and c != target and c not in kept]
    if target in frame.columns:
        notes.append(f"the target column {target!r} is ignored")
    if extra:
        notes.append(f"{len(extra)} column(s) the model was not fitted on are ignored: {', '.join(map(repr, extra[:5]))}"
                     + (" ..." if len(extra) > 5 else ""))
    if not finished.model_is_best:
        notes.append(f"{finished.model_path.name} is trial {finished.run.get('model_trial')}'s, from an earlier run, not the best "
                     f"trial {finished.run.get('best_trial')}'s (run the experiment again to refit it)")
    # load_run has checked the file is the one run.json lists, unchanged since; a model.joblib is
    # a pickle (it runs code when loaded), a model.skops builds only the types it is allowed to.
    model = load(finished.model_path, trust)
    X = frame[columns]
    out = frame[kept].reset_index(drop=True) if kept else pd.DataFrame(index=range(len(frame)))
    if proba:
        if not hasattr(model, "predict_proba"):
            raise UsageError("--proba needs a classifier with predict_proba; this model predicts values")
        probabilities = model.predict_proba(X)
        for index, label in enumerate(model.classes_):
            out[f"proba_{label}"] = probabilities[:, index]
    else:
        out["prediction"] = model.predict(X)
    return Predictions(out, len(frame), notes)


def write_predictions(predictions: Predictions, output: Path) -> None:
    """CSV, or Parquet when ``output`` ends in .parquet; written whole or not at all."""
    import io

    from hptune.results import write_atomic

    if output.suffix.lower() in (".parquet", ".pq"):
        buffer = io.BytesIO()
        predictions.table.to_parquet(buffer, index=False)
        write_atomic(output, buffer.getvalue())
    else:
        write_atomic(output, predictions.table.to_csv(index=False))
