"""What ``hptune show`` says about a finished run, read from its output files alone (trials.csv,
best.yaml, run.json, checked against each other by ``outputs.load_run``): no study, no data,
so it works on another machine, on a CI artifact, on a folder from git."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hptune.outputs import load_run
from hptune.results import plain


def describe_run(folder: Path, top: int = 5) -> dict[str, Any]:
    """A run folder as plain data (what ``show --json`` prints): the run's status and why it
    stopped, the counts, the best trial with its scores and parameters, and the ``top``
    trials by the main metric (ranked as trials.csv ranks them)."""
    finished = load_run(folder)
    run, table, best = finished.run, finished.table, finished.best
    metric = best["metric"] if best else _metric_of(table)
    described: dict[str, Any] = {
        "folder": str(folder),
        "experiment": (run.get("experiment") or {}).get("name"),
        "status": run.get("status"),
        "stop_reason": run.get("stop_reason"),
        "stop_detail": run.get("stop_detail"),
        "strategy": (run.get("study") or {}).get("sampler"),
        "metric": metric,
        "trials": run.get("trials") or {},
        "duration_seconds": run.get("duration_seconds"),
        "best": None,
        "top": [],
        "files": sorted(run.get("files") or {}),
    }
    for key in ("overfit_gap", "constraints", "objectives", "gates", "baseline"):
        if key in run:
            described[key] = run[key]
    if best is not None:
        described["best"] = {
            "trial": best["trial"],
            "cv_score": best["cv_score"],
            "cv_std": best["cv_std"],
            "train_score": best.get("train_score"),
            "test_score": best.get("test_score"),
            "params": best["params"],
            "model_is_this_trial": finished.model_is_best,
        }
    if metric is not None and not table.empty:
        described["top"] = _top_trials(table, metric, top)
    return described


def _metric_of(table: Any) -> str | None:
    """The main metric of a table with no best trial: the first ``rank_test_`` column."""
    ranks = [column for column in table.columns if column.startswith("rank_test_")]
    return ranks[0].removeprefix("rank_test_") if ranks else None


def _top_trials(table: Any, metric: str, top: int) -> list[dict[str, Any]]:
    complete = table[table["state"] == "COMPLETE"].sort_values([f"rank_test_{metric}", "number"]).head(top)
    params = [column for column in table.columns if column.startswith("param_")]
    rows = []
    for _, row in complete.iterrows():
        rows.append({
            "rank": int(row[f"rank_test_{metric}"]),
            "trial": int(row["number"]),
            "cv_score": _number(row[f"mean_test_{metric}"]),
            "cv_std": _number(row[f"std_test_{metric}"]),
            "train_score": _number(row.get(f"mean_train_{metric}")),
            "params": {p.removeprefix("param_"): plain(row[p]) for p in params if not _missing(row[p])},
        })
    return rows


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> float | None:
    return None if _missing(value) else float(value)

