"""What a run leaves behind: the trials table, best.yaml, run.json, written atomically.

The table uses scikit-learn's ``cv_results_`` column names. ``best.yaml`` is produced by one
function with a fixed key order and exact (shortest round-trip) numbers, so the same
experiment and seed give the same bytes and ``git diff`` shows only real changes.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

from hptune.constraints import measures
from hptune.ranking import Goal, rank_greater_is_better
from hptune.trials import (
    ATTR_BASELINE,
    ATTR_CV,
    ATTR_ERROR,
    ATTR_STAGE,
    ATTR_TRACEBACK,
    error_text,
    failed_by_raising,
    shown,
    trial_warnings,
)

TRIALS_FILE = "trials.csv"
BEST_FILE = "best.yaml"
MODEL_FILE = "model.joblib"
SKOPS_MODEL_FILE = "model.skops"  # output.model_format: skops (hptune.modelfile)
#: The model file of each output.model_format; a set holds one of them at most.
MODEL_FILES = {"joblib": MODEL_FILE, "skops": SKOPS_MODEL_FILE}
RUN_FILE = "run.json"
PARETO_FILE = "pareto.csv"  # with several objectives: trials.csv's Pareto rows
STUDY_FILE = "study.journal"
REPORT_FILE = "report.html"  # a view of the set, not part of it (hptune.report)
#: Files hptune writes in an output folder (what --fresh moves aside).
OWNED_FILES = (
    STUDY_FILE, f"{STUDY_FILE}.lock", TRIALS_FILE, BEST_FILE, MODEL_FILE, SKOPS_MODEL_FILE, RUN_FILE, PARETO_FILE, REPORT_FILE
)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so a reader (or a crash) sees the old file or the new, never half.

    The file gets the permissions any new file gets under the user's umask (``mkstemp``
    would make it 0600, unreadable to a CI uploader or a teammate).
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new, unique temporary file beside ``path``, created with mode 0666 minus the umask."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), str(tmp)
        except FileExistsError:
            continue


def trials_table(
    trials: list[Any], param_names: list[str], metrics: list[str], train_scores: bool, stages: bool = False,
    goal: Goal | None = None,
) -> Any:
    """One row per trial (queued and skipped ones excluded), with ``cv_results_`` column names;
    with ``stages`` (an experiment with ``refine:``), a ``stage`` column: search or refine;
    ``baseline`` (true on its trial) once the study ran a --baseline;
    with train scores, ``overfit_gap``; with constraints, ``feasible`` (infeasible trials rank
    after the feasible ones); ``predict_time`` and ``model_mb`` when measured; with several
    objectives, ``pareto``."""
    import numpy as np
    import pandas as pd
    from optuna.trial import TrialState

    limits = goal.limits if goal is not None else None
    objectives = goal.objectives if goal is not None else ()
    sizes = "model_mb" in objectives or (limits is not None and limits.measures_size)
    front = {t.number for t in goal.pareto_front(trials)} if goal is not None and goal.multi else None

    baselines = any(ATTR_BASELINE in trial.user_attrs for trial in trials)
    rows = []
    for trial in shown(trials):
        row: dict[str, Any] = {"number": trial.number, "state": trial.state.name}
        if baselines:  # which trial ran --baseline's parameters (hptune.baseline)
            row["baseline"] = ATTR_BASELINE in trial.user_attrs
        if stages:
            row["stage"] = trial.user_attrs.get(ATTR_STAGE, "search")
        for name in param_names:
            row[f"param_{name}"] = trial.params.get(name)
        cv = trial.user_attrs.get(ATTR_CV)
        for metric in metrics:
            _score_columns(row, cv, "test", metric)
            row[f"rank_test_{metric}"] = None
            if train_scores:
                _score_columns(row, cv, "train", metric)
        measured = measures(cv, metrics[0])
        if train_scores:
            row["overfit_gap"] = measured["overfit_gap"]
        for timing in ("fit_time", "score_time"):
            values = cv[timing] if cv else None
            row[f"mean_{timing}"] = float(np.mean(values)) if values else None
            row[f"std_{timing}"] = float(np.std(values)) if values else None
        if "predict_time" in objectives:
            row["predict_time"] = measured["predict_time"]
        if sizes:
            row["model_mb"] = measured["model_mb"]
        complete = trial.state == TrialState.COMPLETE
        if limits is not None:
            row["feasible"] = limits.feasible(trial) if complete else None
        if front is not None:
            row["pareto"] = trial.number in front if complete else None
        row["duration"] = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else None
        )
        row["error"] = error_text(trial)
        row["warnings"] = "; ".join(trial_warnings(trial)) or None
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    complete = table["state"] == TrialState.COMPLETE.name
    if limits is not None:
        complete = complete & (table["feasible"] == True)  # noqa: E712 (a column of True, False and None)
    for metric in metrics:
        # Failed, unfinished and infeasible trials rank last, as failed fits do in cv_results_.
        table[f"rank_test_{metric}"] = rank_greater_is_better(table[f"mean_test_{metric}"], complete)
    return table


def _score_columns(row: dict[str, Any], cv: dict[str, Any] | None, part: str, metric: str) -> None:
    import numpy as np

    values = cv[part].get(metric) if cv else None
    if cv and not values:
        values = None
    n_splits = len(cv["fit_time"]) if cv else 0
    for k in range(n_splits):
        row[f"split{k}_{part}_{metric}"] = values[k] if values else None
    row[f"mean_{part}_{metric}"] = float(np.mean(values)) if values else None
    row[f"std_{part}_{metric}"] = float(np.std(values)) if values else None


def best_yaml_text(document: dict[str, Any]) -> str:
    """``document`` as YAML: keys in the given order, numbers exact, no timestamps."""
    import yaml

    return yaml.safe_dump(plain(document), sort_keys=False, default_flow_style=False, allow_unicode=True)


def best_document(
    name: str,
    estimator: str,
    preprocessing: str,
    metric: str,
    trial_number: int,
    cv_score: float,
    cv_std: float,
    train_score: float | None,
    test_score: float | None,
    params: dict[str, Any],
    stage: str | None = None,
    objectives: tuple[str, ...] = (),
    select: str | None = None,
) -> dict[str, Any]:
    """The content of best.yaml, in its one fixed key order (``stage`` only with refine:;
    ``objectives`` and ``select`` only with several objectives: the values are in trials.csv)."""
    document: dict[str, Any] = {
        "name": name,
        "estimator": estimator,
        "preprocessing": preprocessing,
        "metric": metric,
    }
    if len(objectives) > 1:
        document["objectives"] = list(objectives)
        document["select"] = select
    document |= {
        "cv_score": cv_score,
        "cv_std": cv_std,
    }
    if train_score is not None:
        document["train_score"] = train_score
    if test_score is not None:
        document["test_score"] = test_score
    document["trial"] = trial_number
    if stage is not None:
        document["stage"] = stage
    document["params"] = {key: params[key] for key in sorted(params)}
    return document


def plain(value: Any) -> Any:
    """numpy scalars and tuples to plain Python, so YAML/JSON write them as numbers and lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def json_text(document: dict[str, Any]) -> str:
    def default(value: Any) -> Any:
        return plain(value) if hasattr(value, "item") else str(value)

    return json.dumps(plain(document), indent=2, default=default, allow_nan=False) + "\n"


def group_failures(trials: list[Any]) -> list[tuple[str, int, str]]:
    """Failures grouped by message, most common first: (message, count, first traceback)."""
    failed = [t for t in trials if failed_by_raising(t)]
    counts = Counter(t.user_attrs.get(ATTR_ERROR) or "unknown error" for t in failed)
    first: dict[str, str] = {}
    for trial in failed:
        first.setdefault(trial.user_attrs.get(ATTR_ERROR) or "unknown error", trial.user_attrs.get(ATTR_TRACEBACK, ""))
    return [(message, count, first[message]) for message, count in counts.most_common()]
