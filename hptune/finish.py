"""The end of a run: summarise the study, refit the best, estimate it by nested CV when the file
asks, say how the run ended (its status), and write the set of outputs with the run's record
(run.json's metadata).

``hptune.runner`` puts these after the search; ``finalize`` calls them on a study alone.
"""

from __future__ import annotations

import logging
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hptune import __version__, baseline, nested, outputs, results
from hptune import storage as storage_mod
from hptune.crossval import Setup
from hptune.fingerprint import digest, fingerprint_parts
from hptune.folds import folds_sha256, test_train_ratio
from hptune.gates import judge
from hptune.nested import NestedEstimate, NestedProgress
from hptune.refit import Refit, refit_trial
from hptune.samplers import pruner_name
from hptune.stopping import Stop, StopReason, StopRules
from hptune.study import StudyHandle
from hptune.trials import ATTR_STAGE
from hptune.validate import ValidatedExperiment

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run produced, for the CLI (or a notebook) to show."""

    output_dir: Path
    status: str
    stop_reason: str | None
    metric: str
    best_trial: int | None
    best_params: dict[str, Any]
    cv_score: float | None
    cv_std: float | None
    train_score: float | None
    test_score: float | None
    table: Any
    counts: dict[str, int]
    files: dict[str, Path]
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    refit_warnings: list[str] = field(default_factory=list)
    resumed_from: int = 0
    moved_aside: str | None = None
    model_trial: int | None = None  # the trial the model file holds (an earlier best after Ctrl-C)
    partial_reason: str | None = None  # why status is "partial": budget not spent, trials running
    stop_detail: str = ""  # what made the search stop, with the figures
    strategy: str = ""  # the kind that ran (what auto chose, when it was auto)
    auto_strategy: str | None = None  # why auto chose it
    overfit_gap: float | None = None  # the best's train score minus its CV score
    overfit_warning: str | None = None  # said when that gap is large (hptune.constraints)
    feasible: int | None = None  # complete trials that keep every limit (None: no constraints)
    infeasible_because: list[str] = field(default_factory=list)  # per limit, when no trial kept them all
    objectives: dict[str, Any] | None = None  # run.json's objectives record, with several objectives
    gates: list[Any] = field(default_factory=list)  # hptune.gates.Verdict, one per gate set
    fixed_params: dict[str, Any] = field(default_factory=dict)  # model.params as resolved (best.yaml has both)
    nested: NestedEstimate | None = None  # evaluation: nested CV's estimate (None: not asked, or not run)
    mlflow: dict[str, Any] | None = None  # output.mlflow: run.json's mlflow record (run_id, error)
    report_error: str | None = None  # why report.html was not written, when it was asked for and failed
    baseline: baseline.Comparison | None = None  # --baseline against the best (hptune.baseline)



def summarise(exp: ValidatedExperiment, handle: StudyHandle, setup: Setup) -> outputs.Summary:
    spec = exp.spec
    return outputs.summarise(
        handle.trials(), handle.goal, list(spec.search_space), setup.ctx.metrics, spec.cv.train_scores, spec.search_space,
        stages=spec.refine is not None,
    )


def refit_best(
    exp: ValidatedExperiment, setup: Setup, summary: outputs.Summary, early: Refit | None, refit: bool
) -> Refit | None:
    """The best trial refitted: the refit made while the last trials ran when it is of the
    best trial (even when no refit was asked for: it is done already), else a new one."""
    best = summary.best
    if best is None:
        return None
    if early is not None and early.trial == best.number:
        return early
    return refit_trial(exp, setup, best) if refit else None


def evaluate_nested(
    exp: ValidatedExperiment, handle: StudyHandle, setup: Setup, summary: outputs.Summary, stop: Stop | None,
    on_fold: Callable[[NestedProgress], None] | None,
) -> NestedEstimate | None:
    """Nested CV's estimate when the file asks for it and the search gave a best to compare it
    with (not after Ctrl-C, a failure limit, or every trial failing)."""
    if exp.spec.evaluation is None or summary.best is None:
        return None
    if stop is not None and stop.reason in (StopReason.INTERRUPTED, StopReason.FAILURES):
        return None
    return nested.evaluate_nested(exp, handle.study, setup, on_fold)


def _status(stop: Stop | None, summary: outputs.Summary, handle: StudyHandle, rules: StopRules) -> tuple[str, str | None]:
    """The run's status, and why it is partial when it is: complete means the budget is
    spent and no trial still runs (one may yet become the best)."""
    from optuna.trial import TrialState

    if stop is not None and stop.reason is StopReason.INTERRUPTED:
        return "interrupted", None
    if stop is not None and stop.reason is StopReason.FAILURES:
        return "stopped", None
    if summary.best is None:
        return ("infeasible" if summary.counts["complete"] else "failed"), None
    trials = handle.trials()
    running = [t for t in trials if t.state == TrialState.RUNNING]
    live = [t for t in running if _may_still_run(t, handle)]
    if live:
        return "partial", f"{len(live)} trial(s) of the study are still running (one may yet be the best)"
    if stop is not None and stop.reason in (StopReason.TIMEOUT, StopReason.TARGET, StopReason.PATIENCE):
        return "complete", None  # a rule the user set ended the search before the budget
    # A dead process's trial (failed when the study is next opened) did not spend its share.
    gone = {t.number for t in running} - {t.number for t in live}
    counted = [t for t in trials if t.number not in gone]
    target = rules.budget.target(rules.ledger(handle.study))
    if rules.ledger(handle.study, counted).started() < target:
        return "partial", f"the study has not spent its budget of {target} trials ({summary.counts['complete']} complete)"
    return "complete", None


def _may_still_run(trial: Any, handle: StudyHandle) -> bool:
    """A RUNNING trial of a journal whose process is gone will never finish (the next run
    fails it); on a database only the heartbeat can tell, so it may."""
    from hptune.processes import is_alive
    from hptune.trials import ATTR_WORKER

    worker = trial.user_attrs.get(ATTR_WORKER)
    return not handle.journal or worker is None or is_alive(str(worker), trial.datetime_start)


def write_outputs(
    exp: ValidatedExperiment,
    handle: StudyHandle,
    setup: Setup,
    summary: outputs.Summary,
    stop: Stop | None,
    rules: StopRules,
    fitted: Refit | None,
    started_at: datetime,
    timings: dict[str, float],
    estimate: NestedEstimate | None = None,
) -> RunResult:
    """Write the set of outputs (see hptune.outputs for the rule that keeps it coherent)."""
    spec = exp.spec
    goal = handle.goal
    best = summary.best
    status, partial_reason = _status(stop, summary, handle, rules)
    if fitted is not None:
        timings = {**timings, "refit": fitted.seconds}
    test_scores = fitted.test_scores if fitted is not None else {}
    test_score = test_scores.get(goal.metric)
    metadata = _metadata(exp, handle, setup, started_at, status, stop)
    document = None
    if best is not None:
        assert summary.cv_score is not None and summary.cv_std is not None
        document = results.best_document(
            name=spec.name,
            estimator=exp.estimator_path,
            preprocessing=spec.model.preprocessing,
            metric=goal.metric,
            trial_number=best.number,
            cv_score=summary.cv_score,
            cv_std=summary.cv_std,
            train_score=summary.train_score,
            test_score=test_score,
            params={**exp.fixed_params, **summary.best_params},
            stage=None if spec.refine is None else best.user_attrs.get(ATTR_STAGE, "search"),
            objectives=goal.objectives,
            select=goal.select,
        )
        metadata.update(
            best_trial=best.number,
            cv_score=summary.cv_score,
            cv_std=summary.cv_std,
            train_score=summary.train_score,
            test_score=test_score,
            test_scores=test_scores,
            model_refitted=fitted is not None,
        )
        if fitted is not None:
            metadata["refit_during_search"] = fitted.during_search
            metadata["refit_warnings"] = fitted.warnings
    trials = handle.trials()
    honesty = _honesty(goal, summary, trials, exp.spec.cv.train_scores)
    metadata.update({key: value for key, value in honesty.items() if key != "warning"})
    if goal.multi:
        metadata["objectives"] = goal.record(best, trials)
    if estimate is not None:
        metadata["nested"] = estimate.record(summary.cv_score)
        timings = {**timings, "nested": estimate.seconds}
    verdicts = judge(spec.gate, summary.cv_score, test_score)
    against = None if exp.baseline is None else baseline.compare(
        exp.baseline, trials, best, summary.best_params, goal.metric, test_train_ratio(setup.ctx.folds))
    if against is not None:
        metadata["baseline"] = against.record()
        verdicts += [v for v in [against.verdict()] if v is not None]
    if verdicts:
        metadata["gates"] = [verdict.record() for verdict in verdicts]
    if partial_reason is not None:
        metadata["partial_because"] = partial_reason
    finished_at = datetime.now(timezone.utc)
    metadata["finished_at"] = finished_at.isoformat(timespec="seconds")
    metadata["duration_seconds"] = round((finished_at - started_at).total_seconds(), 3)
    metadata["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
    metadata["trials"] = summary.counts
    metadata["budget"] = {"n_trials": rules.budget.target(rules.ledger(handle.study)),
                          "timeout_seconds": spec.strategy.timeout}
    files = outputs.write_set(exp.output_dir, summary, document, fitted, metadata, spec.output.model_format)
    if handle.journal:
        files["study"] = exp.output_dir / results.STUDY_FILE
    report_error = None
    if spec.output.report:
        report_error = _write_report(exp.output_dir, handle.study, files)
    return RunResult(
        output_dir=exp.output_dir,
        status=status,
        stop_reason=None if stop is None else stop.reason.value,
        stop_detail="" if stop is None else stop.detail,
        strategy=exp.spec.strategy.kind,
        auto_strategy=exp.auto_strategy,
        metric=goal.metric,
        best_trial=None if best is None else best.number,
        best_params=summary.best_params,
        cv_score=summary.cv_score,
        cv_std=summary.cv_std,
        train_score=summary.train_score,
        test_score=test_score,
        table=summary.table,
        counts=summary.counts,
        files=files,
        failures=summary.failures,
        refit_warnings=fitted.warnings if fitted is not None else [],
        model_trial=metadata.get("model_trial"),
        partial_reason=partial_reason,
        overfit_gap=summary.overfit_gap,
        overfit_warning=honesty.get("warning"),
        feasible=honesty["constraints"]["feasible"] if "constraints" in honesty else None,
        infeasible_because=honesty["constraints"].get("broken", []) if "constraints" in honesty else [],
        objectives=metadata.get("objectives"),
        gates=verdicts,
        fixed_params=dict(exp.fixed_params),
        nested=estimate,
        report_error=report_error,
        baseline=against,
    )


def _write_report(out: Path, study: Any, files: dict[str, Path]) -> str | None:
    """report.html, after the set (it is a view of it, not part of it: hptune.report). A page
    that cannot be drawn must not fail a run whose outputs are written: it is logged with its
    traceback (seen with --debug) and said in one line; `hptune report` draws it again."""
    from hptune.report import write_report

    try:
        files["report"] = write_report(out, study)
    except Exception as exc:  # noqa: BLE001 - the set is whole; only the view is missing
        log.info("report.html was not written", exc_info=True)  # the traceback, with --debug
        return f"report.html was not written ({type(exc).__name__}: {exc}); `hptune report {out}` tries again"
    return None


def _honesty(goal: Any, summary: outputs.Summary, trials: list[Any], train_scores: bool) -> dict[str, Any]:
    """run.json's ``overfit_gap`` (with its threshold) and ``constraints`` (the limits, how
    many complete trials kept them, and when none did, how each was broken); ``warning``:
    what the summary says when the best's gap is above the threshold."""
    from optuna.trial import TrialState

    from hptune.constraints import overfit_warning_threshold

    record: dict[str, Any] = {}
    if train_scores and summary.overfit_gap is not None and summary.cv_score is not None:
        limit = goal.limits.max_overfit_gap if goal.limits is not None else None
        threshold = overfit_warning_threshold(goal.metric, summary.cv_score, limit)
        record["overfit_gap"] = {"best": summary.overfit_gap, "warning_above": threshold}
        if summary.overfit_gap > threshold:
            record["warning"] = (
                f"overfitting: the best trial's train {goal.metric} is {summary.overfit_gap:.4g} above its cv "
                f"{goal.metric} (more than {threshold:.4g}); constraints: {{max_overfit_gap: {threshold:.3g}}} "
                "makes such trials infeasible, so the search looks for one that generalises"
            )
    if goal.limits is not None:
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        feasible = [t for t in complete if goal.limits.feasible(t)]
        record["constraints"] = {"limits": goal.limits.given, "complete": len(complete), "feasible": len(feasible)}
        if complete and not feasible:
            record["constraints"]["broken"] = goal.limits.broken(complete)
    return record


def _metadata(
    exp: ValidatedExperiment, handle: StudyHandle, setup: Setup, started_at: datetime, status: str, stop: Stop | None
) -> dict[str, Any]:
    spec = exp.spec
    return {
        "status": status,
        "stop_reason": None if stop is None else stop.reason.value,
        "stop_detail": None if stop is None else stop.detail,
        "hptune": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {
            name: _version(name)
            for name in ("scikit-learn", "optuna", "numpy", "pandas", "scipy", "pydantic", "joblib", "skops")
        },
        "experiment": {
            "name": spec.name,
            "file": str(exp.path),
            "file_sha256": exp.file_sha256,
            "fingerprint": digest(fingerprint_parts(exp)),
        },
        "data": {
            "source": exp.data.source,
            "sha256": exp.data.sha256,
            "rows": exp.data.n_rows,
            "features": int(exp.data.X.shape[1]),
            # What `hptune predict` checks new data against: the columns the model was fitted on,
            # the target (ignored when present) and the dropped columns (kept as identifiers).
            "columns": [str(column) for column in exp.data.X.columns],
            "target": exp.spec.data.target,
            "drop": list(exp.spec.data.drop),
            "train_rows": len(setup.split.y_train),
            "test_rows": 0 if setup.split.y_test is None else len(setup.split.y_test),
            # What each process could keep of the folds between trials (strategy.cache_mb).
            "fold_cache_mb_per_process": round(setup.ctx.cache_bytes / 2**20, 1),
            # Which rows each fold trains and scores on: two runs with the same value scored
            # their trials on the very same folds, so `compare` pairs their fold scores.
            "folds_sha256": folds_sha256(setup.ctx.X.index, setup.ctx.folds),
            "test_train_ratio": test_train_ratio(setup.ctx.folds),  # compare's standard error uses it
        },
        "study": {
            "name": spec.name,
            "storage": handle.where,  # a database URL with its password masked
            "sampler": spec.strategy.kind,
            "chosen_by_auto": exp.auto_strategy,  # why strategy.kind: auto chose it (null: not auto)
            "pruner": pruner_name(spec.strategy),
            "start_from": [point.source for point in exp.start_points],
            "workers": handle.workers,
        },
        "command": [_mask_argument(a) for a in sys.argv],
        "overrides": exp.sets,  # --set dotted.key=value, in the fingerprint like the file's values
        "started_at": started_at.isoformat(timespec="seconds"),
    }


def _mask_argument(argument: str) -> str:
    return storage_mod.mask_url(argument) if storage_mod.is_database_url(argument) else argument


def no_best_message(result: RunResult) -> str:
    """Why a run has no best trial: none kept every constraint, or none completed."""
    if result.infeasible_because:
        complete = result.counts["complete"]
        return "\n".join([f"no trial kept every constraint ({complete} complete trials):",
                          *(f"  {line}" for line in result.infeasible_because)])
    return _all_failed_message(result.failures)


def _all_failed_message(failures: list[tuple[str, int, str]]) -> str:
    total = sum(count for _, count, _ in failures)
    if not failures:
        return "no trial completed (the time budget may have run out before the first one finished)"
    message, count, _ = failures[0]
    lines = [
        f"all {total} trials failed; the model is likely misconfigured. "
        f"Most common error ({count} of {total}): {message}"
    ]
    for other, other_count, _ in failures[1:3]:
        lines.append(f"  also ({other_count}x): {other}")
    return "\n".join(lines)


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
