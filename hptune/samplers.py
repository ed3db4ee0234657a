"""Optuna samplers and pruners, from one factory, and the seed each process samples with."""

from __future__ import annotations

from typing import Any

#: Seeds are 32-bit (NumPy's limit); each machine gets a block of this many worker seeds.
SEED_SPACE = 2**32
WORKERS_PER_MACHINE = 1000


def sampler_seed(seed: int, machine: int, worker: int = 0) -> int:
    """The sampling seed of worker process ``worker`` on machine ``machine``.

    Machine 0 worker 0 samples with the experiment's own seed, so a run on one machine is
    reproducible; distinct (machine, worker) pairs never share a seed (machine indices are
    claimed in the study, see ``hptune.study``), and every seed stays within 0..2**32-1.
    """
    return (seed + WORKERS_PER_MACHINE * machine + worker) % SEED_SPACE


def nested_seed(seed: int, outer_fold: int) -> int:
    """The sampling seed of nested CV's search in outer fold ``outer_fold`` (hptune.nested): from
    the experiment's seed and the fold alone, never from the process that runs it, so the outer
    folds give the same searches in any order and at any n_jobs."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"hptune-nested:{seed}:{outer_fold}".encode()).digest()[:4], "big")


def make_sampler(kind: str, seed: int, parallel: bool = False) -> Any:
    import optuna

    if kind == "bayesian":
        # constant_liar keeps parallel workers from all proposing the same promising point.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=parallel)
    if kind == "cmaes":
        # Categorical parameters are outside CMA-ES; they fall back to random sampling.
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if kind == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    # random, and grid: every grid trial is enqueued, so the sampler never draws a value.
    return optuna.samplers.RandomSampler(seed=seed)


#: Trials that run every fold before a pruner compares against them.
PRUNER_STARTUP_TRIALS = 5


def pruner_name(strategy: Any) -> str:
    """The pruner a strategy uses: the one it names, else median (none for a grid, which must
    score every point as GridSearchCV does)."""
    return strategy.pruner or ("none" if strategy.kind == "grid" else "median")


def make_pruner(strategy: Any, folds: int | None) -> Any:
    """Optuna's pruner for ``strategy``. A trial reports the running mean of its main metric
    after each fold, at step 1, 2, ... ``folds`` (the folds done: the pruners' resource)."""
    import optuna

    name = pruner_name(strategy)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=0)
    if name == "percentile":
        return optuna.pruners.PercentilePruner(strategy.pruner_percentile, n_startup_trials=PRUNER_STARTUP_TRIALS)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto" if folds is None else folds)
    return optuna.pruners.NopPruner()
