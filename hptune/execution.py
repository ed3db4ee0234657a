"""Running trials until a stop rule holds: in this process, or in worker processes that share
the study through its storage (Optuna's own distributed design: no scheduler of ours).

The parent creates the study once and forks ``n_jobs`` workers, which inherit the loaded data;
it reports progress through a callback (the library never prints), fails the trial of a
worker that died, and may refit the best trial on a core a finished worker freed.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hptune import housekeeping
from hptune.crossval import Setup
from hptune.objective import caused_by_interrupt
from hptune.ranking import Goal
from hptune.refine import AllowedChoices, Stage
from hptune.refit import Refit, refit_trial
from hptune.samplers import make_sampler, pruner_name
from hptune.stopping import StopRules
from hptune.storage import sync_journals
from hptune.study import StudyHandle, available_cores, load_for_worker
from hptune.trials import ATTR_WORKER, finished, is_skipped
from hptune.validate import ValidatedExperiment

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Sent to the progress callback at the start, as trials finish, and while waiting."""

    done: int
    total: int
    best_score: float | None
    started: bool = True
    resumed_from: int = 0
    requeued: int = 0
    #: Trials other machines still run that this command waits for before writing outputs,
    #: one line each ("trial 12 on host-b:4242, running for 35 s"); empty when not waiting.
    waiting_for: list[str] = field(default_factory=list)


class Search:
    """Runs the trials of one opened study until a stop rule holds (or Ctrl-C)."""

    def __init__(
        self,
        handle: StudyHandle,
        setup: Setup,
        rules: StopRules,
        on_progress: Callable[[Progress], None] | None = None,
        resumed_from: int = 0,
        requeued: int = 0,
        refit_ahead: bool = False,
        wait_for_others: bool = True,
        stage: Stage | None = None,
    ) -> None:
        self.handle, self.setup, self.rules = handle, setup, rules
        self.stage = stage  # the refine stage's space (None: the file's)
        self.progress = _ProgressReporter(handle, rules, on_progress, resumed_from, requeued)
        # Refit the best so far on a core a worker freed once the budget is spent (a run that
        # refits afterwards asks for this; a --worker does not).
        self.refit_ahead = refit_ahead
        # Wait for the trials other processes run before returning (a run that writes the
        # outputs does; a --worker leaves as soon as its own work is done).
        self.wait_for_others = wait_for_others
        self.early_refit: Refit | None = None
        self._forked = False
        self._first_seen: dict[int, float] = {}  # trial id -> when this process first saw it silent

    def run(self) -> None:
        self.progress.send(started=False)
        while True:
            before = self._state()
            self._run_trials()
            # With a shared database, other machines' trials may still run; one whose worker
            # died is failed and queued again, so keep working until the budget is really spent.
            waited = self.wait_for_others and self._wait_for_others()
            if self.rules.check(self.handle.study) is not None:
                break
            if not waited and self._state() == before:
                break  # nothing ran, nothing was queued, nothing runs elsewhere: nothing to do
        self.progress.send()

    def _state(self) -> tuple[int, int]:
        """How many trials the study holds (skipped ones aside) and how many have finished."""
        trials = self.handle.trials()
        return len([t for t in trials if not is_skipped(t)]), len(finished(trials))

    def _run_trials(self) -> None:
        handle = self.handle
        if handle.workers > 1 and not self._forked:
            # Fork once: after this, this process may have started OpenMP pools (a refit, a
            # trial), and a fork from it could hang.
            self._forked = True
            self._run_in_workers()
            if self.rules.check(handle.study) is None:
                housekeeping.fail_dead_trials(handle)
            # A worker that died leaves budget unspent (its trial was queued again): finish
            # here, sampling with a seed of this process's own, not worker 0's.
            handle.study.sampler = make_sampler(
                handle.exp.spec.strategy.kind, handle.worker_seed(handle.workers), parallel=True
            )
        optimize_here(
            handle.study, handle.exp, self.setup, handle.goal, self.rules, None, [self.progress.callback], self.stage
        )

    def _run_in_workers(self) -> None:
        import multiprocessing
        from multiprocessing.connection import wait

        handle = self.handle
        # fork: workers inherit the loaded data and imported libraries, so they start at once
        # (no OpenMP pool has run in this process yet, which is what makes fork unsafe).
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        threads = handle.exp.spec.strategy.threads_per_worker or max(1, available_cores() // handle.workers)
        processes = [
            context.Process(
                target=_worker_main,
                args=(handle.exp, self.setup, handle.goal, self.rules, handle.worker_seed(index), threads, self.stage),
                name=f"hptune-worker-{index}",
            )
            for index in range(handle.workers)
        ]
        log.info("starting %d worker processes (%s), %d thread(s) each", handle.workers, method, threads)
        for process in processes:
            process.start()
        try:
            last_tidy = time.monotonic()
            live = list(processes)
            while live:
                ended = wait([p.sentinel for p in live], timeout=0.5)
                # is_alive() reaps an ended worker: until then its pid is a zombie and looks alive.
                live = [p for p in live if p.is_alive()]
                self.progress.send()
                # A worker that ended (killed, perhaps) may leave its trial RUNNING: fail it and
                # queue it again at once, so the workers still running pick it up.
                if handle.journal and (ended or time.monotonic() - last_tidy > 5):
                    housekeeping.fail_dead_trials(handle)
                    last_tidy = time.monotonic()
                if self.refit_ahead and self.early_refit is None and 0 < len(live) < len(processes):
                    self._refit_while_the_last_trials_run(threads)
        except KeyboardInterrupt:
            _stop(processes)
            raise
        finally:
            for process in processes:
                process.join(timeout=5)

    def _refit_while_the_last_trials_run(self, threads: int) -> None:
        """A worker stopped because every trial of the budget has started: while the others
        finish theirs, refit the best trial so far on the core it freed. If that trial is still
        the best at the end, the refit is done already (the usual case); if not, it is redone."""
        handle = self.handle
        if not self.rules.spent(handle.study):
            return
        best = handle.goal.best_trial(handle.trials())
        if best is None:
            return
        try:
            self.early_refit = refit_trial(handle.exp, self.setup, best, threads=threads, during_search=True)
        except Exception:  # the refit after the search reports it, if it fails again
            log.debug("refit during the search failed", exc_info=True)

    def _wait_for_others(self) -> bool:
        """Wait for the trials other processes still run: other machines on a database (bounded
        by Optuna's heartbeat: a dead worker's trial fails after the grace period), other
        processes of this machine on a journal (a dead one's trial fails at once). True if any
        was waited for."""
        waited = False
        while True:
            running = housekeeping.running_elsewhere(self.handle, self._first_seen)
            if not running or self.rules.timed_out():  # the timeout bounds the wait too
                break
            waited = True
            self.progress.send(waiting_for=[_describe_running(t) for t in running])
            time.sleep(1)
        if waited:
            self.progress.send(waiting_for=[])
        return waited


def refine_after(
    search: Search, rules: StopRules, on_progress: Callable[[Progress], None] | None, refit_ahead: bool
) -> tuple[StopRules, Search]:
    """The refine stage after ``search`` (unless a failure limit stopped it): its rules and its
    Search, or the main ones when there is nothing to refine."""
    from hptune.refine import refine_stage
    from hptune.stopping import StopReason

    handle = search.handle
    stop = rules.check(handle.study)
    found = None if stop is not None and stop.reason is StopReason.FAILURES else refine_stage(handle, rules)
    if found is None:
        return rules, search
    stage, refine_rules = found
    refined = Search(handle, search.setup, refine_rules, on_progress, refit_ahead=refit_ahead,
                     wait_for_others=search.wait_for_others, stage=stage)
    refined.run()
    return refine_rules, refined


def optimize_here(
    study: Any,
    exp: ValidatedExperiment,
    setup: Setup,
    goal: Goal,
    rules: StopRules,
    threads: int | None,
    callbacks: list[Any],
    stage: Stage | None = None,
) -> None:
    """Run trials in this process until a stop rule holds (in ``stage``'s space when given)."""
    from hptune.objective import Objective

    if rules.nothing_to_run(study):
        return
    limits: Any = nullcontext()
    if threads is not None:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(limits=threads)

    def stop_when_a_rule_holds(study: Any, trial: Any) -> None:
        if rules.check(study) is not None:
            study.stop()

    objective = Objective(
        setup.ctx, exp.spec.search_space if stage is None else stage.space, goal, grid=exp.grid is not None,
        rules=rules, report_folds=pruner_name(exp.spec.strategy) != "none",
        stage="search" if stage is None else stage.name, tell_constraints=exp.spec.strategy.kind != "cmaes",
    )
    if stage is not None and stage.allowed and not isinstance(study.sampler, AllowedChoices):
        study.sampler = AllowedChoices(study.sampler, stage.allowed, seed=exp.spec.seed)
    with limits, _interrupts_as_keyboard_interrupt():
        study.optimize(
            objective,
            n_trials=None,
            timeout=rules.seconds_left(),
            catch=(Exception,),
            callbacks=[stop_when_a_rule_holds, *callbacks],
        )
    if objective.fatal is not None:
        raise objective.fatal


def _worker_main(
    exp: ValidatedExperiment, setup: Setup, goal: Goal, rules: StopRules, seed: int, threads: int,
    stage: Stage | None = None,
) -> None:
    """A worker process: its own storage connection and sampler seed, limited threads."""
    import signal

    import optuna

    from hptune.estimators import cap_n_jobs

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = load_for_worker(exp, seed)
    cap_n_jobs(setup.ctx.pipeline, threads)  # this worker's share of the cores
    try:
        optimize_here(study, exp, setup, goal, rules, threads, callbacks=[], stage=stage)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        sync_journals()  # now, not when the exit has waited for the pending fsync


def _describe_running(trial: Any) -> str:
    worker = trial.user_attrs.get(ATTR_WORKER, "a worker that has not said which")
    started = trial.datetime_start
    age = f", running for {int((datetime.now() - started).total_seconds())} s" if started else ""
    return f"trial {trial.number} on {worker}{age}"


@contextmanager
def _interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """Let an interrupt that Optuna garbled reach the callers as the KeyboardInterrupt it is."""
    try:
        yield
    except Exception as exc:
        if caused_by_interrupt(exc):
            raise KeyboardInterrupt from exc
        raise


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop(processes: list[Any]) -> None:
    """Ctrl-C reaches every worker from the terminal; SIGTERM reached only us: pass it on."""
    import signal

    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(p.is_alive() for p in processes):
        time.sleep(0.05)
    for process in processes:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGINT)
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


class _ProgressReporter:
    """Counts finished trials of the whole study (all workers) and forwards them."""

    def __init__(
        self,
        handle: StudyHandle,
        rules: StopRules,
        sink: Callable[[Progress], None] | None,
        resumed_from: int,
        requeued: int,
    ) -> None:
        self.handle, self.rules, self.sink = handle, rules, sink
        self.resumed_from, self.requeued = resumed_from, requeued
        self.last: tuple[int, float | None] | None = None

    def send(self, started: bool = True, waiting_for: list[str] | None = None) -> None:
        if self.sink is None:
            return
        ledger = self.rules.ledger(self.handle.study)
        done = ledger.finished
        state = (done, None if ledger.best is None else self.rules.goal.score(ledger.best))
        if started and waiting_for is None and state == self.last:
            return
        self.last = state
        self.sink(
            Progress(
                done=done,
                total=max(done, self.rules.budget.target(ledger)),
                best_score=state[1],
                started=started,
                resumed_from=self.resumed_from,
                requeued=self.requeued,
                waiting_for=list(waiting_for or []),
            )
        )

    def callback(self, study: Any, trial: Any) -> None:
        self.send()
