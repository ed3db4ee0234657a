"""Keeping a study whole: dead trials failed and re-run, failed trials retried, the grid queued.

Every step is safe to repeat and safe when several processes (or machines) do it at once:
a crash at any instant is repaired by the next process that opens the study.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hptune import storage as storage_mod
from hptune.processes import is_alive
from hptune.study import StudyHandle, grid_claim_name
from hptune.trials import (
    ATTR_ERROR,
    ATTR_GRID_POINT,
    ATTR_INTERRUPTED,
    ATTR_RETRY_OF,
    ATTR_RETRY_REASON,
    ATTR_WORKER,
    STUDY_GRID_QUEUED,
    STUDY_RETRIED_FAILURES,
    died,
    failed_by_raising,
    finished,
    holds_budget,
    requeue,
    requeue_dead,
)
from hptune.warmstart import queue_start_points

log = logging.getLogger(__name__)

#: A RUNNING trial with no worker recorded is taken as dead only after this long (seconds):
#: a live worker records itself a moment after Optuna creates the trial.
UNCLAIMED_TRIAL_AGE = 30
#: How long to wait for another worker to enqueue the grid before giving up (seconds).
GRID_WAIT = 120


@dataclass(frozen=True)
class Tidied:
    requeued: int  # trials of dead processes failed and queued again
    resumed_from: int  # trials that had run to an end before this command


def tidy(handle: StudyHandle, retry_failed: bool) -> Tidied:
    """Once, when a command opens the study: fail trials whose process died (re-running them
    once), queue failed trials again on --retry-failed, and queue the grid (or repair it)."""
    requeued = fail_dead_trials(handle)
    if requeued:
        log.info("failed %d trial(s) left running by dead processes; queued them again", requeued)
    if retry_failed:
        retry_failures(handle)
    if handle.exp.grid is not None:
        enqueue_grid(handle)
    if handle.exp.start_points:
        queued = queue_start_points(handle.study, handle.exp.spec.search_space, handle.exp.start_points)
        if queued:
            log.info("queued %d warm-start point(s) to run first", queued)
    return Tidied(requeued, len(finished(handle.trials())))


def fail_dead_trials(handle: StudyHandle) -> int:
    """Journal storage: a RUNNING trial whose process on this machine is gone is failed as
    interrupted and queued to run again. (Databases do this with Optuna's heartbeat.)"""
    if not handle.journal:
        storage_mod.fail_stale_trials(handle.study)
        return 0
    from optuna.trial import TrialState

    now = datetime.now()
    count = 0
    for trial in handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(ATTR_WORKER)
        if worker is None:
            started = trial.datetime_start or now
            if now - started < timedelta(seconds=UNCLAIMED_TRIAL_AGE):
                continue
        elif is_alive(str(worker), trial.datetime_start):
            continue  # alive, or another host's, which is not ours to judge
        if _fail_and_requeue(handle, trial, "the process running this trial stopped (killed or crashed)"):
            count += 1
    return count


def _fail_and_requeue(handle: StudyHandle, trial: Any, why: str) -> bool:
    """Fail a dead process's trial as interrupted and queue it again (once); False when
    another process got there first (and queued it)."""
    import optuna
    from optuna.trial import TrialState

    storage = handle.storage
    try:
        storage.set_trial_user_attr(trial._trial_id, ATTR_INTERRUPTED, True)
        storage.set_trial_user_attr(trial._trial_id, ATTR_ERROR, f"interrupted: {why}")
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    # A kill right here leaves the trial failed but not queued again: for a grid point,
    # enqueue_grid's repair puts it back; a sampled trial's budget is not lost either way.
    requeue_dead(handle.study, trial)
    return True


def retry_failures(handle: StudyHandle) -> int:
    """Queue every failed trial's parameters again, each failed trial once in all.

    A failed trial that some trial already re-runs is left alone. Machines that give
    --retry-failed at the same moment may both queue one; the two are the same work
    (``trials.work_key``), so only one of them runs and the budget grows by one.
    """
    study = handle.study
    done_in_0_1_0 = set(study.user_attrs.get(STUDY_RETRIED_FAILURES, []))
    trials = handle.trials()
    retried_already = {t.user_attrs.get(ATTR_RETRY_OF) for t in trials if t.user_attrs.get(ATTR_RETRY_REASON) == "failed"}
    retried = 0
    for trial in trials:
        if not failed_by_raising(trial) or trial.number in done_in_0_1_0 or trial.number in retried_already:
            continue
        requeue(study, trial, "failed")
        retried += 1
    return retried


def enqueue_grid(handle: StudyHandle) -> None:
    """Queue the grid's first n_trials points, once in total, in ParameterGrid order: each
    point runs exactly once however many workers pop the queue, and ties break as in
    GridSearchCV. Raising n_trials later queues the points not yet queued. A point whose
    trial was cut short and never queued again (a kill between the two) is queued again."""
    exp, study = handle.exp, handle.study
    assert exp.grid is not None
    wanted = min(exp.n_trials, len(exp.grid))
    if int(study.user_attrs.get(STUDY_GRID_QUEUED, 0)) < wanted:
        # Whichever process wins the claim enqueues; the others wait until it is done. If it
        # never finishes (killed), the repair below queues what it left out.
        if not storage_mod.claim(handle.storage, grid_claim_name(exp.spec.name, wanted)):
            deadline = time.monotonic() + GRID_WAIT
            while int(study.user_attrs.get(STUDY_GRID_QUEUED, 0)) < wanted and time.monotonic() < deadline:
                time.sleep(0.2)
    repaired = _queue_missing_points(handle, wanted)
    if int(study.user_attrs.get(STUDY_GRID_QUEUED, 0)) < wanted:
        study.set_user_attr(STUDY_GRID_QUEUED, wanted)
    elif repaired:
        log.info("queued %d grid point(s) again that an interruption had left out", repaired)


def _queue_missing_points(handle: StudyHandle, wanted: int) -> int:
    """Queue each point below ``wanted`` that no trial holds (queued, running or finished).

    Two processes repairing at once may queue a point twice; the budget lets only one of
    the two run (``stopping.Budget.admit``)."""
    from hptune.space import encode_params

    exp, study = handle.exp, handle.study
    assert exp.grid is not None
    trials = handle.trials()
    held = {t.user_attrs[ATTR_GRID_POINT] for t in trials if ATTR_GRID_POINT in t.user_attrs and holds_budget(t)}
    # A point whose re-run after its worker died killed its worker again (out of memory, say)
    # is not queued again: run after run, it would only kill workers.
    given_up = {
        t.user_attrs[ATTR_GRID_POINT] for t in trials
        if ATTR_GRID_POINT in t.user_attrs and t.user_attrs.get(ATTR_RETRY_REASON) == "died" and died(t)
    }
    missing = [index for index in range(wanted) if index not in held and index not in given_up]
    for index in missing:
        study.enqueue_trial(encode_params(exp.spec.search_space, exp.grid[index]), user_attrs={ATTR_GRID_POINT: index})
    return len(missing)


def running_elsewhere(handle: StudyHandle, first_seen: dict[int, float]) -> list[Any]:
    """Trials other processes still run, after failing the ones whose process is gone.

    On a database: Optuna's heartbeat check, plus trials that never sent a heartbeat at all.
    On a journal: dead processes of this machine (``fail_dead_trials``); the trials returned
    are this machine's live ones (another host's cannot be judged from here, and a journal
    has no heartbeat, so waiting for them could be forever). ``first_seen`` is this process's
    memory of when it first saw each silent trial, kept by the caller between calls.
    """
    from optuna.trial import TrialState

    if handle.journal:
        fail_dead_trials(handle)
        running = handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [t for t in running if _on_this_machine(t)]
    storage_mod.fail_stale_trials(handle.study)
    _fail_silent_trials(handle, first_seen)
    return handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def _on_this_machine(trial: Any) -> bool:
    """A live trial of this machine that can be waited for: one recorded in full (an old
    host:pid record cannot prove its process is the one that holds the pid now)."""
    from hptune.processes import parse

    worker = trial.user_attrs.get(ATTR_WORKER)
    if worker is None:  # a process that has just created it, and not yet said which
        return True
    try:
        recorded = parse(str(worker))
    except ValueError:
        return False
    return recorded.host == socket.gethostname() and recorded.start is not None


def _fail_silent_trials(handle: StudyHandle, first_seen: dict[int, float]) -> None:
    """Fail (and queue again, once) RUNNING trials that never sent a heartbeat, twice the
    heartbeat grace period after they started: their worker died before its first beat.

    "After they started" by the creating machine's clock, or, when that clock runs ahead of
    ours (another time zone, a wrong clock), since this process first saw the trial silent.
    """
    from optuna.trial import TrialState

    silent = set(storage_mod.trials_without_heartbeat(handle.storage, handle.study))
    if not silent:
        return
    now, limit = time.monotonic(), 2 * storage_mod.HEARTBEAT_GRACE
    for trial in handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id not in silent:
            continue
        seen_for = now - first_seen.setdefault(trial._trial_id, now)
        started = trial.datetime_start
        age = (datetime.now() - started).total_seconds() if started is not None else 0.0
        if max(age, seen_for) >= limit:
            _fail_and_requeue(handle, trial, "its worker never sent a heartbeat (killed or crashed)")
