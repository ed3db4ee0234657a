"""A run's output folder as one coherent set: summarise the trials, write the set, read it back.

The set is trials.csv, best.yaml, the model (model.joblib, or model.skops with
``output.model_format: skops``) and run.json (and pareto.csv with several objectives). Each
file is written atomically,
and the set as a whole obeys one rule: **run.json is written last and names every file of the
set with its sha256 and the trial it describes; before any file of a new set replaces an old
one, the old run.json is removed.** So a folder with run.json holds a whole set (``load_run``
checks each file against it), and a folder without it holds a set cut short while it was
written (``hptune finalize`` or the same command writes it again). A run that ends without a
refit (Ctrl-C) keeps the model file it found, and run.json says which trial that model is.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hptune import modelfile, results
from hptune.constraints import overfit_gap
from hptune.errors import HptuneError
from hptune.ranking import Goal
from hptune.refit import Refit
from hptune.trials import count_states


class RunFolderError(HptuneError):
    """Raised when a folder does not hold a whole, unchanged set of outputs."""


@dataclass
class Summary:
    """What the trials say, computed from the study alone (nothing written, nothing fitted)."""

    table: Any
    counts: dict[str, int]
    failures: list[tuple[str, int, str]]
    best: Any | None  # the best trial (a FrozenTrial), or None when no trial completed
    best_params: dict[str, Any] = field(default_factory=dict)
    cv_score: float | None = None
    cv_std: float | None = None
    train_score: float | None = None
    overfit_gap: float | None = None  # the best's train score minus its CV score


def summarise(
    trials: list[Any], goal: Goal, param_names: list[str], metrics: list[str], train_scores: bool, space: Any,
    stages: bool = False,
) -> Summary:
    import numpy as np

    from hptune.space import decode_params

    table = results.trials_table(trials, param_names, metrics, train_scores, stages, goal)
    summary = Summary(table, count_states(trials), results.group_failures(trials), goal.best_trial(trials))
    best = summary.best
    if best is not None:
        cv = best.user_attrs[results.ATTR_CV]
        summary.best_params = decode_params(space, best.params)
        summary.cv_score = float(np.mean(cv["test"][goal.metric]))
        summary.cv_std = float(np.std(cv["test"][goal.metric]))
        summary.train_score = float(np.mean(cv["train"][goal.metric])) if train_scores else None
        summary.overfit_gap = overfit_gap(cv, goal.metric)
    return summary


def write_set(
    out: Path,
    summary: Summary,
    best_document: dict[str, Any] | None,
    refit: Refit | None,
    metadata: dict[str, Any],
    model_format: str = "joblib",
) -> dict[str, Path]:
    """Write the set (see the module docstring for the rule); return the files it holds.
    Raises ModelFileError, before anything is written, when the model cannot be saved as
    ``model_format`` asks."""
    payloads: dict[str, bytes] = {results.TRIALS_FILE: summary.table.to_csv(index=False).encode()}
    described: dict[str, dict[str, Any]] = {results.TRIALS_FILE: {"trials": len(summary.table)}}
    if "pareto" in summary.table.columns:
        front = summary.table[summary.table["pareto"] == True]  # noqa: E712 (True, False and None)
        payloads[results.PARETO_FILE] = front.to_csv(index=False).encode()
        described[results.PARETO_FILE] = {"trials": len(front)}
    if best_document is not None:
        payloads[results.BEST_FILE] = results.best_yaml_text(best_document).encode()
        described[results.BEST_FILE] = {"trial": best_document["trial"]}
    if refit is not None:
        name, payloads[name] = modelfile.dumps(refit.model, model_format)
        described[name] = {"trial": refit.trial}
    elif summary.best is not None and (kept := _kept_model(out, model_format)) is not None:
        # Not refitted this time: the model stays (in the format it has), labelled with the
        # trial it was fitted for.
        described[kept] = {"trial": _model_trial(out, kept), "kept_from_an_earlier_run": True}

    (out / results.RUN_FILE).unlink(missing_ok=True)  # from here on, the old set is not whole
    # An earlier set's files that this set does not have: a pareto.csv of several objectives, the
    # model in the other format (after output.model_format changed), or, when no trial is the
    # best now (none keeps a limit tightened since), its best.yaml and model: left beside a
    # run.json that no longer lists them, a pipeline would ship a model that breaks the limit.
    # The study keeps every trial: loosen the limit and run again to get them back.
    stale = [results.PARETO_FILE, *results.MODEL_FILES.values()] + ([results.BEST_FILE] if summary.best is None else [])
    for name in stale:
        if name not in described:
            (out / name).unlink(missing_ok=True)
    manifest: dict[str, dict[str, Any]] = {}
    for name, info in described.items():
        if name in payloads:
            results.write_atomic(out / name, payloads[name])
            manifest[name] = {**info, "sha256": hashlib.sha256(payloads[name]).hexdigest()}
        else:
            manifest[name] = {**info, "sha256": _sha256_of(out / name)}
    model = _model_name(manifest)
    if model is not None:
        metadata["model_trial"] = manifest[model]["trial"]
        metadata["model_format"] = modelfile.model_format(out / model)
    metadata["files"] = manifest
    results.write_atomic(out / results.RUN_FILE, results.json_text(metadata))
    files = {"trials": out / results.TRIALS_FILE}
    if results.PARETO_FILE in manifest:
        files["pareto"] = out / results.PARETO_FILE
    if results.BEST_FILE in manifest:
        files["best"] = out / results.BEST_FILE
    if model is not None:
        files["model"] = out / model
    files["run"] = out / results.RUN_FILE
    return files


def _model_name(listed: dict[str, Any]) -> str | None:
    """The model file a set lists (one at most: model.joblib or model.skops)."""
    return next((name for name in results.MODEL_FILES.values() if name in listed), None)


def _kept_model(out: Path, model_format: str) -> str | None:
    """The model file an unrefitted run keeps: the one in the format asked when there is one,
    else the other (a model of an earlier best beats none; run.json says its format)."""
    preferred = results.MODEL_FILES[model_format]
    names = [preferred, *(name for name in results.MODEL_FILES.values() if name != preferred)]
    return next((name for name in names if (out / name).exists()), None)


def _model_trial(out: Path, name: str) -> int | None:
    """The trial the model file ``name`` in ``out`` was fitted for, from the run.json beside it."""
    try:
        previous = json.loads((out / results.RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    listed = (previous.get("files") or {}).get(name)
    if isinstance(listed, dict):
        if listed.get("sha256") == _sha256_of(out / name):
            return listed.get("trial")
        return None
    # hptune 0.1.0 listed no files: its model is its best trial's when it refitted one.
    return previous.get("best_trial") if previous.get("model_refitted") else None


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class FinishedRun:
    """A run read back from its folder: what ``report``, ``show``, ``compare`` and ``predict`` use."""

    folder: Path
    run: dict[str, Any]  # run.json
    table: Any  # trials.csv as a DataFrame
    best: dict[str, Any] | None  # best.yaml, when a trial completed
    model_path: Path | None  # model.joblib or model.skops, when the set holds one

    @property
    def model_is_best(self) -> bool:
        return self.model_path is not None and self.run.get("model_trial") == self.run.get("best_trial")


def load_run(folder: Path) -> FinishedRun:
    """Read the set in ``folder``, checking every file against run.json; works without the
    study, on another machine. Raises RunFolderError when the set is not whole."""
    import yaml

    run_file = folder / results.RUN_FILE
    try:
        run_bytes = run_file.read_bytes()
    except FileNotFoundError:
        if (folder / results.TRIALS_FILE).exists():
            raise RunFolderError(
                f"{folder} holds no run.json: writing the outputs was cut short; "
                f"`hptune finalize` (or the same `run` command) writes them again"
            ) from None
        raise RunFolderError(f"{folder} holds no hptune run (no {results.RUN_FILE})") from None
    try:
        run = json.loads(run_bytes)
    except ValueError as exc:
        raise RunFolderError(f"{run_file} is not valid JSON: {exc}") from None
    listed = run.get("files")
    if not isinstance(listed, dict):
        raise RunFolderError(f"{run_file} lists no files (written by hptune 0.1.0?); `hptune finalize` rewrites it")
    # Each file is read once, checked and parsed from the same bytes; run.json is read again
    # last: a set being rewritten meanwhile is refused, never read half old, half new.
    contents: dict[str, bytes] = {}
    for name, info in listed.items():
        path = folder / name
        if name in results.MODEL_FILES.values():  # possibly large, and loaded by the caller if at all
            if not path.exists():
                raise RunFolderError(f"{path} is missing; run.json lists it")
            if _sha256_of(path) != info.get("sha256"):
                raise RunFolderError(f"{path} changed after run.json was written (its sha256 differs)")
            continue
        try:
            contents[name] = path.read_bytes()
        except FileNotFoundError:
            raise RunFolderError(f"{path} is missing; run.json lists it") from None
        if hashlib.sha256(contents[name]).hexdigest() != info.get("sha256"):
            raise RunFolderError(f"{path} changed after run.json was written (its sha256 differs)")
    try:
        unchanged = run_file.read_bytes() == run_bytes
    except FileNotFoundError:
        unchanged = False
    if not unchanged:
        raise RunFolderError(f"{folder} was being rewritten while it was read; read it again")
    best = yaml.safe_load(contents[results.BEST_FILE]) if results.BEST_FILE in contents else None
    table = _read_table(contents.get(results.TRIALS_FILE, b""))
    return FinishedRun(
        folder=folder,
        run=run,
        table=table,
        best=best,
        model_path=folder / model if (model := _model_name(listed)) is not None else None,
    )


def _read_table(data: bytes) -> Any:
    """trials.csv as a DataFrame (an empty one when no trial was recorded)."""
    import pandas as pd

    try:
        return pd.read_csv(io.BytesIO(data))
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
