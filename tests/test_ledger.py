"""The ledger keeps the budget's and the stop rules' counts up to date from new and unfinished
trials only; it must agree, after every change to a real study, with the plain definitions
that walk every trial (what hptune computed on every trial before the ledger)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hptune.ledger import Ledger
from hptune.ranking import Goal
from hptune.stopping import Budget
from hptune.trials import (
    ATTR_ERROR,
    ATTR_GRID_POINT,
    ATTR_INTERRUPTED,
    ATTR_RETRY_OF,
    ATTR_RETRY_REASON,
    ATTR_SKIPPED,
    INTERRUPTED_BY_SIGNAL,
    finished,
    holds_budget,
    requeue,
    work_key,
)

# -- the plain definitions: every trial, every time ----------------------------------------


def plain_counts(budget: Budget, trial: Any) -> bool:
    return holds_budget(trial) and budget.is_work(trial.user_attrs)


def plain_started(budget: Budget, trials: list[Any]) -> int:
    by_number = {t.number: t for t in trials}
    return len({work_key(t, by_number) for t in trials if t.state != TrialState.WAITING and plain_counts(budget, t)})


def plain_target(budget: Budget, trials: list[Any]) -> int:
    retries = {t.user_attrs.get(ATTR_RETRY_OF) for t in trials if t.user_attrs.get(ATTR_RETRY_REASON) == "failed"}
    return budget.n_trials + len(retries)


def plain_admission(budget: Budget, trial: Any, trials: list[Any]) -> tuple[bool, int]:
    """Whether another trial does ``trial``'s work, and how many pieces of other work are ahead."""
    by_number = {t.number: t for t in trials}
    key = work_key(trial, by_number)
    duplicate = False
    for other in trials:
        if other.number == trial.number or other.state == TrialState.WAITING or not plain_counts(budget, other):
            continue
        if work_key(other, by_number) == key and (other.state.is_finished() or other.number < trial.number):
            duplicate = True
    ahead = {work_key(t, by_number) for t in trials if t.number < trial.number and plain_counts(budget, t)}
    ahead.discard(key)
    return duplicate, len(ahead)


def plain_since_improvement(trials: list[Any], min_delta: float) -> int:
    """Finished trials numbered after the first complete trial within min_delta of the best."""
    done = finished(trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return len(done)
    best = max(t.value for t in complete)
    first = min(t.number for t in complete if t.value >= best - min_delta)
    return len([t for t in done if t.number > first])


def plain_best(trials: list[Any]) -> Any:
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return max(complete, key=lambda t: (t.value, -t.number)).number if complete else None


# -- a study that goes through everything a real one does ------------------------------------


def _churn(study: optuna.Study, rng: random.Random, grid: bool) -> None:
    """One change of the kinds hptune makes: queue grid points, start trials, finish them
    (complete, failed, interrupted, skipped), queue failures and interrupted trials again."""
    trials = study.get_trials(deepcopy=False)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    ended = [t for t in trials if t.state.is_finished()]
    move = rng.random()
    if grid and move < 0.1:
        point = rng.randrange(12)  # a point queued twice happens when machines race
        study.enqueue_trial({"x": float(point)}, user_attrs={ATTR_GRID_POINT: point})
    elif move < 0.45 or not running:
        trial = optuna.trial.Trial(study, study._pop_waiting_trial_id() or study._storage.create_new_trial(study._study_id))
        trial.suggest_float("x", 0, 12)
    elif move < 0.85:
        trial = rng.choice(running)
        storage, trial_id = study._storage, trial._trial_id
        outcome = rng.random()
        if outcome < 0.5:
            storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [float(rng.randrange(6)) / 2])
        elif outcome < 0.6:
            storage.set_trial_state_values(trial_id, TrialState.PRUNED, [float(rng.randrange(6)) / 2])
        elif outcome < 0.75:
            storage.set_trial_user_attr(trial_id, ATTR_ERROR, "ValueError: bad")
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        elif outcome < 0.9:
            storage.set_trial_user_attr(trial_id, ATTR_INTERRUPTED, True)
            storage.set_trial_user_attr(trial_id, ATTR_ERROR, INTERRUPTED_BY_SIGNAL)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
            requeue(study, storage.get_trial(trial_id), "interrupted")
        else:
            storage.set_trial_user_attr(trial_id, ATTR_SKIPPED, True)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
    else:
        failed = [t for t in ended if t.state == TrialState.FAIL and ATTR_ERROR in t.user_attrs
                  and t.user_attrs[ATTR_ERROR] != INTERRUPTED_BY_SIGNAL]
        if failed:
            requeue(study, rng.choice(failed), "failed")


@pytest.mark.parametrize("grid", [False, True], ids=["sampled", "grid"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_ledger_agrees_with_every_trial_counted_after_every_change(tmp_path: Path, grid: bool, seed: int) -> None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    study = optuna.create_study(storage=storage, study_name="ledger")
    if grid:
        for point in range(8):
            study.enqueue_trial({"x": float(point)}, user_attrs={ATTR_GRID_POINT: point})
    budget = Budget(n_trials=10, grid=grid)
    goal = Goal("accuracy")
    min_delta = 0.5 * seed  # 0, 0.5, 1.0: improvements that count, and ones that do not
    kept = Ledger(budget.is_work, goal.rank_key, min_delta)  # brought up to date after every change
    rng = random.Random(seed)
    seen_states: set[str] = set()
    for _ in range(250):
        _churn(study, rng, grid)
        trials = study.get_trials(deepcopy=False)
        kept.update(trials)
        fresh = Ledger(budget.is_work, goal.rank_key, min_delta).update(trials)
        for ledger in (kept, fresh):
            assert ledger.started() == plain_started(budget, trials)
            assert budget.target(ledger) == plain_target(budget, trials)
            assert ledger.finished == len(finished(trials))
            assert ledger.failed == sum(t.state == TrialState.FAIL for t in finished(trials))
            assert (ledger.best.number if ledger.best else None) == plain_best(trials)
            # The same whatever order the trials were seen to finish in (kept) or all at once (fresh).
            assert ledger.since_improvement == plain_since_improvement(trials, min_delta)
            for trial in trials:
                if trial.state != TrialState.RUNNING or not budget.is_work(trial.user_attrs):
                    continue
                key = ledger.open[trial.number].key
                duplicate, ahead = plain_admission(budget, trial, trials)
                assert (ledger.done_elsewhere(trial.number, key), ledger.work_ahead(trial.number, key)) == (duplicate, ahead)
                expected = "duplicate" if duplicate else "run" if ahead < plain_target(budget, trials) else "spent"
                assert budget.admit(trial, ledger).value == expected
        seen_states |= {t.state.name for t in trials}
    assert seen_states >= {"WAITING", "RUNNING", "COMPLETE", "PRUNED", "FAIL"}  # the churn did reach every state


def test_a_ledger_is_kept_up_to_date_only_from_the_study_s_full_list(tmp_path: Path) -> None:
    study = optuna.create_study()
    for value in (1.0, 2.0, 3.0):
        study.add_trial(optuna.trial.create_trial(value=value))
    goal = Goal("accuracy")
    budget = Budget(n_trials=5, grid=False)
    trials = study.get_trials(deepcopy=False)
    # A selection is fine for a new ledger (one look) ...
    selection = Ledger(budget.is_work, goal.rank_key).update([trials[0], trials[2]])
    assert selection.finished == 2 and selection.best.number == 2
    # ... but a kept one must see the whole study, or it would miss trials for good.
    kept = Ledger(budget.is_work, goal.rank_key).update(trials[:1])
    with pytest.raises(ValueError, match="full list"):
        kept.update([trials[0], trials[2]])
