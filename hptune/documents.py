"""The JSON documents ``--json`` prints on stdout (``run``, ``validate``; ``show``'s is in
``hptune.show``): plain data, one schema, documented in the README and kept stable (keys are
added, never renamed or removed)."""

from __future__ import annotations

from typing import Any

#: Raised only when a document's shape changes incompatibly (a key renamed or removed).
SCHEMA_VERSION = 1


def issue_record(issue: Any) -> dict[str, Any]:
    """A SpecIssue or SpecWarning: where it is and what it says."""
    return {"file": issue.file, "line": issue.line, "column": issue.column, "path": issue.path, "message": issue.message}


def run_document(result: Any, exit_code: int, error: str | None = None) -> dict[str, Any]:
    """What ``run --json`` prints for a run that got as far as writing its outputs."""
    best = None
    if result.best_trial is not None:
        params = {**result.fixed_params, **result.best_params}  # as best.yaml has them
        best = {"trial": result.best_trial, "params": {key: params[key] for key in sorted(params)},
                "tuned": sorted(result.best_params), "cv_score": result.cv_score,
                "cv_std": result.cv_std, "train_score": result.train_score, "test_score": result.test_score}
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "command": "run",
        "exit_code": exit_code,
        "status": result.status,
        "error": error,
        "stop_reason": result.stop_reason,
        "stop_detail": result.stop_detail or None,
        "metric": result.metric,
        "strategy": result.strategy or None,
        "best": best,
        "trials": result.counts,
        "output_dir": str(result.output_dir),
        "files": {name: str(path) for name, path in result.files.items()},
        "gates": [verdict.record() for verdict in result.gates],
        "baseline": None if result.baseline is None else result.baseline.record(),  # --baseline
        "problems": [],
    }
    if result.objectives is not None:
        document["objectives"] = result.objectives
    return document


def failure_document(command: str, exit_code: int, status: str, error: str | None, problems: Any = ()) -> dict[str, Any]:
    """What ``run --json`` or ``validate --json`` prints when no outputs were written: the same
    keys as a run's document (empty where there is nothing), the error and the problems."""
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "command": command, "exit_code": exit_code, "status": status, "error": error,
        "problems": [issue_record(issue) for issue in problems],
    }
    if command == "run":
        document = {**document, "stop_reason": None, "stop_detail": None, "metric": None, "strategy": None, "best": None,
                    "trials": {}, "output_dir": None, "files": {}, "gates": [], "baseline": None}
    return document
