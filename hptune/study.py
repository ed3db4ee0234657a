"""Opening a study: its storage, its sampler, the check that it holds this experiment, --fresh.

The study lives in Optuna storage: a journal file in the output folder by default, or a
database (``output.storage``) that workers on many machines share. Opening never runs a
trial and never writes an output file; tidying the study is ``hptune.housekeeping``'s job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from hptune import results
from hptune import storage as storage_mod
from hptune.crossval import worker_count
from hptune.errors import StudyMismatchError
from hptune.fingerprint import VERSION, changed_parts, digest, fingerprint_parts
from hptune.ranking import Goal
from hptune.samplers import make_pruner, make_sampler, pruner_name, sampler_seed
from hptune.trials import STUDY_FINGERPRINT, STUDY_FINGERPRINT_PARTS, STUDY_FINGERPRINT_VERSION, STUDY_PRUNER
from hptune.validate import ValidatedExperiment

log = logging.getLogger(__name__)


def claim_prefix(name: str) -> str:
    """Claims are empty studies named after the experiment's (see ``storage.claim``)."""
    return f"{name}.hptune-"


def grid_claim_name(name: str, points: int) -> str:
    """The claim for enqueuing the grid up to ``points`` points (raising n_trials extends it)."""
    return f"{claim_prefix(name)}grid-claim-{points}"


def _machine_claim_name(name: str, index: int) -> str:
    return f"{claim_prefix(name)}machine-{index}"


#: Machine indices claimed in the study start above this; --worker-index values stay below it.
CLAIMED_MACHINES_FROM = 100_000


def available_cores() -> int:
    return worker_count(-1)


@dataclass
class StudyHandle:
    """A study this process opened, with what every later step needs to know about it."""

    exp: ValidatedExperiment
    study: Any
    storage: Any
    where: str  # the journal's path, or the database URL with its password masked
    goal: Goal
    workers: int  # worker processes this command runs (1: trials run in this process)
    machine: int  # this machine's index among the study's machines (0 on one machine)
    moved_aside: str | None = None  # what --fresh moved, and where

    @property
    def journal(self) -> bool:
        return not self.exp.spec.output.storage

    def worker_seed(self, worker: int = 0) -> int:
        return sampler_seed(self.exp.spec.seed, self.machine, worker)

    def trials(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False)


def open_storage(exp: ValidatedExperiment) -> Any:
    from hptune.trials import requeue_dead

    url = exp.spec.output.storage
    if url:
        return storage_mod.database_storage(url, on_stale_trial=requeue_dead)
    exp.output_dir.mkdir(parents=True, exist_ok=True)
    return storage_mod.journal_storage(exp.output_dir / results.STUDY_FILE)


def describe_storage(exp: ValidatedExperiment) -> str:
    url = exp.spec.output.storage
    return storage_mod.mask_url(url) if url else str(exp.output_dir / results.STUDY_FILE)


def open_study(
    exp: ValidatedExperiment,
    *,
    create: bool = True,
    resume: bool = True,
    fresh: bool = False,
    worker: bool = False,
    machine_index: int | None = None,
) -> StudyHandle:
    """Open (creating if ``create``) the study of ``exp`` and check it is this experiment's.

    ``fresh`` first moves an existing study and outputs aside; ``resume=False`` refuses a
    study that holds trials. A process that shares the study with other machines (a database,
    or ``worker``) samples with seeds no other machine uses.
    """
    import optuna

    spec = exp.spec
    moved = _move_aside(exp) if fresh else None
    storage = open_storage(exp)
    workers = worker_count(spec.strategy.n_jobs)
    shared = bool(spec.output.storage) or worker
    names = optuna.get_all_study_names(storage)
    existed = spec.name in names
    if not existed and not create:
        raise StudyMismatchError(f"{describe_storage(exp)} holds no study named {spec.name!r}; run the experiment first")
    # finalize (create=False) samples nothing, and must not write to the study.
    claim = shared and create and machine_index is None
    machine = machine_index if machine_index is not None else (_claim_machine(storage, spec.name, names) if claim else 0)
    goal = Goal.for_experiment(exp)
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec.strategy.kind, sampler_seed(spec.seed, machine), parallel=workers > 1 or shared),
        pruner=make_pruner(spec.strategy, None if exp.folds is None else len(exp.folds)),
        directions=goal.directions,
        load_if_exists=True,
    )
    where = describe_storage(exp)
    if existed and not resume and study.get_trials(deepcopy=False):
        raise StudyMismatchError(
            f"{where} already holds a study with {len(study.get_trials(deepcopy=False))} trials "
            f"and --no-resume was given; use --fresh to start over (the old study is moved aside) "
            f"or choose another --out"
        )
    new_study = STUDY_FINGERPRINT_PARTS not in study.user_attrs
    _check_fingerprint(study, exp, where)
    _settle_pruner(study, exp, new_study, may_write=create)
    return StudyHandle(exp, study, storage, where, goal, workers, machine, moved)


def _settle_pruner(study: Any, exp: ValidatedExperiment, new_study: bool, may_write: bool) -> None:
    """The pruner the study runs with, written into ``exp``'s strategy for every process.

    The file's ``strategy.pruner`` when it names one; else the one the study was created with
    (recorded in the study); a study made before hptune pruned (none recorded) goes on without
    pruning, as it ran, so an upgrade does not change how an existing study is searched.
    """
    strategy = exp.spec.strategy
    recorded = study.user_attrs.get(STUDY_PRUNER)
    if new_study and may_write:
        study.set_user_attr(STUDY_PRUNER, pruner_name(strategy))
        recorded = pruner_name(strategy)
    name = strategy.pruner or recorded or ("none" if not new_study else pruner_name(strategy))
    exp.spec = exp.spec.model_copy(update={"strategy": strategy.model_copy(update={"pruner": name})})
    study.pruner = make_pruner(exp.spec.strategy, None if exp.folds is None else len(exp.folds))


def _check_fingerprint(study: Any, exp: ValidatedExperiment, where: str) -> None:
    parts = fingerprint_parts(exp)
    stored = study.user_attrs.get(STUDY_FINGERPRINT_PARTS)
    if stored is None:
        study.set_user_attr(STUDY_FINGERPRINT_PARTS, parts)
        study.set_user_attr(STUDY_FINGERPRINT, digest(parts))
        study.set_user_attr(STUDY_FINGERPRINT_VERSION, VERSION)
        return
    version = int(study.user_attrs.get(STUDY_FINGERPRINT_VERSION, 1))
    if version > VERSION:
        raise StudyMismatchError(
            f"{where} holds a study made by a newer hptune (fingerprint version {version}); upgrade hptune to continue it"
        )
    changed = changed_parts(stored, parts)
    if changed:
        raise StudyMismatchError(
            f"{where} holds a study of a different experiment (changed: {', '.join(changed)}); "
            f"use --fresh to start over (the old study is moved aside) or choose another --out"
        )


def _claim_machine(storage: Any, name: str, names: list[str]) -> int:
    """The next machine index no other process of this study has claimed.

    Claims are atomic in every storage, so two machines starting together never share an
    index, hence never a sampler seed. Indices are not given back: they only need to differ.
    Claimed indices start above ``CLAIMED_MACHINES_FROM``, so they never meet the small ones
    people give with --worker-index (0, 1, ... or a Slurm array index).
    """
    prefix = _machine_claim_name(name, 0)[:-1]
    taken = [int(n[len(prefix):]) for n in names if n.startswith(prefix) and n[len(prefix):].isdigit()]
    index = max(taken, default=CLAIMED_MACHINES_FROM) + 1
    while not storage_mod.claim(storage, _machine_claim_name(name, index)):
        index += 1
    log.info("sampling as machine %d of study %s", index, name)
    return index


def load_for_worker(exp: ValidatedExperiment, seed: int) -> Any:
    """The study, opened again by a forked worker process with its own connection and seed."""
    import optuna

    return optuna.load_study(
        study_name=exp.spec.name,
        storage=open_storage(exp),
        sampler=make_sampler(exp.spec.strategy.kind, seed, parallel=True),
        pruner=make_pruner(exp.spec.strategy, None if exp.folds is None else len(exp.folds)),
    )


def _refuse_while_trials_run(exp: ValidatedExperiment, storage: Any, url: str) -> None:
    """--fresh on a shared database: the same command on every machine must not move the
    study from under machines that run its trials (a dead machine's trial does not count once
    Optuna's heartbeat has failed it)."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=exp.spec.name, storage=storage)
    storage_mod.fail_stale_trials(study)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if running:
        raise StudyMismatchError(
            f"--fresh: study {exp.spec.name!r} in {storage_mod.mask_url(url)} has {len(running)} trial(s) running on "
            f"other machines; stop them first (or give this experiment another name)"
        )


def _refuse_while_local_trials_run(exp: ValidatedExperiment, journal: Any) -> None:
    """--fresh on a journal another live process of this machine writes to (a --worker): it
    would go on writing into the moved file's successor, the new study."""
    import optuna
    from optuna.trial import TrialState

    from hptune.processes import is_alive
    from hptune.trials import ATTR_WORKER

    storage = storage_mod.journal_storage(journal)
    if exp.spec.name not in optuna.get_all_study_names(storage):
        return
    study = optuna.load_study(study_name=exp.spec.name, storage=storage)
    running = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if ATTR_WORKER in t.user_attrs and is_alive(str(t.user_attrs[ATTR_WORKER]), t.datetime_start)
    ]
    if running:
        raise StudyMismatchError(
            f"--fresh: {journal} has {len(running)} trial(s) running in other live processes; "
            f"stop them first (or choose another --out)"
        )


def _move_aside(exp: ValidatedExperiment) -> str | None:
    """--fresh: keep the old study and outputs under another name; never delete them."""
    import optuna

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = exp.output_dir
    moved: str | None = None
    url = exp.spec.output.storage
    if url:
        from hptune.trials import requeue_dead

        # The refusal check fails dead machines' trials: they are queued again, as anywhere.
        storage = storage_mod.database_storage(url, on_stale_trial=requeue_dead)
        names = optuna.get_all_study_names(storage)
        if exp.spec.name in names:
            _refuse_while_trials_run(exp, storage, url)
            moved = f"{exp.spec.name}.old-{stamp}"
            optuna.copy_study(from_study_name=exp.spec.name, from_storage=storage, to_storage=storage, to_study_name=moved)
            for name in names:
                if name == exp.spec.name or name.startswith(claim_prefix(exp.spec.name)):
                    optuna.delete_study(study_name=name, storage=storage)
            moved = f"study {moved} in {storage_mod.mask_url(url)}"
    present = [out / name for name in results.OWNED_FILES if (out / name).exists()]
    if not url and (out / results.STUDY_FILE).exists():
        _refuse_while_local_trials_run(exp, out / results.STUDY_FILE)
    if present:
        target = out.parent / f"{out.resolve().name}.old-{stamp}"
        suffix = 1
        while target.exists():
            suffix += 1
            target = out.parent / f"{out.resolve().name}.old-{stamp}-{suffix}"
        target.mkdir(parents=True)
        for path in present:
            path.rename(target / path.name)
        moved = str(target) if moved is None else f"{moved} and {target}"
    return moved
