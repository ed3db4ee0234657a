"""What hptune records on Optuna trials, and how it reads them back.

Attribute names live here, with the predicates built on them, so the objective that writes
them, the runner that counts them and the results that show them agree.
"""

from __future__ import annotations

from typing import Any

#: Trial user attributes.
ATTR_CV = "cv"  # fold-by-fold scores and timings
ATTR_ERROR = "error"  # "ExceptionType: message" of a failed trial
ATTR_TRACEBACK = "traceback"
ATTR_WARNINGS = "warnings"  # distinct warnings a failed trial raised (first few; see trial_warnings)
ATTR_WORKER = "hptune_worker"  # the process running the trial (hptune.processes; once "host:pid")
ATTR_INTERRUPTED = "hptune_interrupted"  # cut short by Ctrl-C, SIGTERM or a dead process
ATTR_SKIPPED = "hptune_skipped"  # asked for after the budget was spent; never ran
ATTR_GRID_POINT = "hptune_grid_point"  # index of an enqueued grid point
ATTR_RETRY_OF = "hptune_retry_of"  # number of the trial whose parameters this one re-runs
ATTR_RETRY_REASON = "hptune_retry_reason"  # interrupted | died | failed
ATTR_WORK = "hptune_work"  # which piece of work a re-queued trial does (see work_key)
ATTR_START = "hptune_start_from"  # a warm-start point's key (hptune.warmstart)
ATTR_BASELINE = "hptune_baseline"  # the --baseline trial's key (hptune.baseline): it costs no budget
ATTR_STAGE = "hptune_stage"  # "refine" on the refine stage's trials (none: the main search)

#: The error of a trial cut short by Ctrl-C or SIGTERM (its process lived on).
INTERRUPTED_BY_SIGNAL = "interrupted: stopped by Ctrl-C or SIGTERM"

#: Study user attributes.
STUDY_FINGERPRINT = "hptune_fingerprint"
STUDY_FINGERPRINT_PARTS = "hptune_fingerprint_parts"
STUDY_GRID_QUEUED = "hptune_grid_queued"  # how many grid points are queued
STUDY_RETRIED_FAILURES = "hptune_retried_failures"  # 0.1.0: failed trials re-queued by --retry-failed
STUDY_EXTRA_BUDGET = "hptune_extra_budget"  # 0.1.0: trials added to n_trials by --retry-failed
STUDY_FINGERPRINT_VERSION = "hptune_fingerprint_version"
STUDY_PRUNER = "hptune_pruner"  # the pruner the study was created with (none recorded: made before pruning)
#: Prefix of the attributes that keep nested CV's outer folds, one each: ``hptune_nested_fold_0``
#: holds fold 0's result with the key of what it was computed from (hptune.nested).
STUDY_NESTED_FOLD = "hptune_nested_fold_"
STUDY_MLFLOW_RUN = "hptune_mlflow_run"  # the id of the study's MLflow run (hptune.tracking)

#: Where Optuna keeps the parameters a trial was queued with (``Study.enqueue_trial``).
OPTUNA_FIXED_PARAMS = "fixed_params"


def is_interrupted(trial: Any) -> bool:
    """Cut short by Ctrl-C, SIGTERM or a process that died: it does not count as run.

    A failed trial without an error message failed outside the objective: Optuna's heartbeat
    found its worker dead.
    """
    from optuna.trial import TrialState

    if trial.user_attrs.get(ATTR_INTERRUPTED):
        return True
    return trial.state == TrialState.FAIL and ATTR_ERROR not in trial.user_attrs and not is_skipped(trial)


def is_skipped(trial: Any) -> bool:
    return bool(trial.user_attrs.get(ATTR_SKIPPED))


def holds_budget(trial: Any) -> bool:
    """Counts toward n_trials: finished, running or queued, but not interrupted or skipped."""
    return not is_interrupted(trial) and not is_skipped(trial)


def finished(trials: list[Any]) -> list[Any]:
    """Trials that ran to an end: complete, pruned, or failed because they raised."""
    return [t for t in trials if t.state.is_finished() and holds_budget(t)]


def shown(trials: list[Any]) -> list[Any]:
    """Trials that belong in the results table: all but queued and skipped ones."""
    from optuna.trial import TrialState

    return [t for t in trials if t.state != TrialState.WAITING and not is_skipped(t)]


def count_states(trials: list[Any]) -> dict[str, int]:
    """Trials by outcome; interrupted ones apart from those that failed by raising."""
    counts = {"complete": 0, "fail": 0, "pruned": 0, "interrupted": 0, "running": 0}
    for trial in shown(trials):
        state = trial.state.name.lower()
        if is_interrupted(trial):
            counts["interrupted"] += 1
        elif state in counts:
            counts[state] += 1
    return counts


def died(trial: Any) -> bool:
    """Cut short because its process died (killed, crashed, out of memory), not by a signal."""
    return is_interrupted(trial) and not str(trial.user_attrs.get(ATTR_ERROR, "")).startswith(INTERRUPTED_BY_SIGNAL)


def failed_by_raising(trial: Any) -> bool:
    """A trial that ran and raised (not one cut short, not a skipped one)."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and not is_interrupted(trial) and not is_skipped(trial)


def error_text(trial: Any) -> str | None:
    if ATTR_ERROR in trial.user_attrs:
        return trial.user_attrs[ATTR_ERROR]
    if is_interrupted(trial):
        return "interrupted: its worker stopped sending heartbeats (killed or crashed)"
    return None


def trial_warnings(trial: Any) -> list[str]:
    """The distinct warnings a trial raised, one line each: kept with its scores when it ran to
    an end (or was pruned), apart when it failed (and always apart in studies of hptune 0.1.0)."""
    attrs = trial.user_attrs
    return list(attrs.get(ATTR_WARNINGS) or (attrs.get(ATTR_CV) or {}).get(ATTR_WARNINGS) or [])


def work_key(trial: Any, by_number: dict[int, Any] | None = None) -> str:
    """Which piece of work a trial does: trials with the same key are the same work, of which
    only one may hold the budget (see ``stopping.Budget``).

    A grid point is ``grid:<index>``; the re-run of failed trial N (--retry-failed) is
    ``retry:<N>``; a sampled trial is ``trial:<number>``. A trial queued again after it was cut
    short carries the key of the work it was doing (``ATTR_WORK``), so the re-run of an
    interrupted retry is still that retry, not the grid point the failed trial held. hptune
    0.1.0 did not record that key: such a re-run takes the key of the trial it re-runs, found
    in ``by_number`` (the study's trials by number).
    """
    attrs = trial.user_attrs
    if ATTR_WORK in attrs:
        return str(attrs[ATTR_WORK])
    reason, source = attrs.get(ATTR_RETRY_REASON), attrs.get(ATTR_RETRY_OF)
    if reason in ("interrupted", "died") and by_number is not None and source in by_number:
        return work_key(by_number[source], by_number)
    if reason == "failed":
        return f"retry:{source}"
    if ATTR_GRID_POINT in attrs:
        return f"grid:{attrs[ATTR_GRID_POINT]}"
    return f"trial:{trial.number}"


def requeue(study: Any, trial: Any, reason: str) -> None:
    """Queue ``trial``'s parameters to run again (as a new trial that says which it re-runs).

    A trial cut short while its parameters were being suggested holds only some of them; the
    ones it was queued with (a grid point's) are taken from the queue entry, so a re-queued
    grid point is the whole point, never a part of it with the rest sampled at random.
    """
    if ATTR_BASELINE in trial.user_attrs:
        return  # never queued: the next `run --baseline` runs it (hptune.baseline)
    attrs = {ATTR_RETRY_OF: trial.number, ATTR_RETRY_REASON: reason}
    if reason != "failed":  # the same work again; a retry of a failure is new work
        by_number = None
        if ATTR_RETRY_OF in trial.user_attrs and ATTR_WORK not in trial.user_attrs:
            by_number = {t.number: t for t in study.get_trials(deepcopy=False)}  # a 0.1.0 re-run
        attrs[ATTR_WORK] = work_key(trial, by_number)
    if ATTR_GRID_POINT in trial.user_attrs:
        attrs[ATTR_GRID_POINT] = trial.user_attrs[ATTR_GRID_POINT]
    params = {**trial.system_attrs.get(OPTUNA_FIXED_PARAMS, {}), **trial.params}
    study.enqueue_trial(params, user_attrs=attrs)


def requeue_dead(study: Any, trial: Any) -> None:
    """Re-run a dead worker's trial, once: not if it was itself the re-run of a dead one,
    so parameters that kill their worker (out of memory, say) cannot loop forever."""
    if trial.user_attrs.get(ATTR_RETRY_REASON) == "died":
        return
    requeue(study, trial, "died")
