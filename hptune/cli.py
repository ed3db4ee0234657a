"""The command line: parse options, call one library function, render, map errors to exit codes.

This is the only module that talks to a terminal. Heavy libraries (scikit-learn, Optuna,
pandas) are imported inside the commands so that ``hptune --help`` is instant.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hptune import __version__
from hptune.errors import HptuneError, RunFailedError, RunInterruptedError, SpecError

if TYPE_CHECKING:
    from rich.console import Console

    from hptune.runner import Progress, RunResult
    from hptune.validate import ValidatedExperiment

#: Exit codes, named (as sqlfluff does): 1 means "ran, but the result failed".
EXIT_OK = 0
EXIT_FAIL = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="hptune",
    help="Tune a scikit-learn-compatible model from one YAML experiment file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

AllowModule = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-module",
        help="Also allow estimators from this top-level module (repeatable). "
        "By default only sklearn, xgboost, lightgbm and catboost.",
    ),
]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"hptune {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks and library logs.")] = False,
) -> None:
    if debug:
        os.environ["HPTUNE_DEBUG"] = "1"
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def _debug() -> bool:
    return os.environ.get("HPTUNE_DEBUG", "") not in ("", "0")


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    # rich colours only when writing to a terminal; NO_COLOR is honoured by rich itself.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn hptune's errors into one line each on stderr and the right exit code."""
    err = _console(stderr=True)
    try:
        yield
    except (HptuneError, KeyboardInterrupt) as exc:
        if _debug():
            err.print_exception()
        raise typer.Exit(_report(err, exc)) from None
    except OSError as exc:
        # The file system said no (an --out that is a file, no permission, a full disk): the
        # user can fix that, so it is one line and exit 2, not a traceback.
        if _debug():
            err.print_exception()
        where = f": {exc.filename}" if exc.filename else ""
        err.print(f"[red]error:[/red] {_escape(exc.strerror or str(exc))}{_escape(str(where))}")
        raise typer.Exit(EXIT_ERROR) from None


def _report(err: Console, exc: BaseException) -> int:
    if isinstance(exc, SpecError):
        for issue in exc.issues:
            err.print(f"[red]{_escape(str(issue))}[/red]")
        noun = "problem" if len(exc.issues) == 1 else "problems"
        err.print(f"{len(exc.issues)} {noun} found; nothing was trained.")
        return EXIT_ERROR
    if isinstance(exc, RunInterruptedError):
        err.print(_escape(str(exc)))
        return EXIT_INTERRUPTED
    if isinstance(exc, KeyboardInterrupt):
        err.print("interrupted; completed trials are kept in the study. Run the same command again to resume.")
        return EXIT_INTERRUPTED
    err.print(f"[red]error:[/red] {_escape(str(exc))}")
    return EXIT_FAIL if isinstance(exc, RunFailedError) else EXIT_ERROR


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _quiet_libraries() -> None:
    """Optuna logs every trial at INFO and every failure with a traceback; we show our own."""
    if _debug():
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.captureWarnings(False)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Experiment files to check.", show_default=False)],
    allow_module: AllowModule = None,
) -> None:
    """Check experiment files without training anything; report every problem at once."""
    from hptune.validate import load_experiment

    out = _console()
    all_issues = []
    for path in files:
        try:
            exp = load_experiment(path, tuple(allow_module or ()))
        except SpecError as exc:
            all_issues.extend(exc.issues)
            continue
        _print_warnings(exp)
        out.print(
            f"{path}: ok ({exp.task}, {exp.estimator_path}, {len(exp.spec.search_space)} parameters, "
            f"{exp.spec.strategy.kind} x {exp.n_trials} trials)"
        )
    if all_issues:
        with _user_errors():
            raise SpecError(all_issues)


def _print_warnings(exp: ValidatedExperiment) -> None:
    """What is probably a mistake but does not stop a run: one line each, on stderr."""
    err = _console(stderr=True)
    for warning in exp.warnings:
        err.print(f"[yellow]{_escape(str(warning))}[/yellow]")


def _check_storage(value: str | None) -> str | None:
    if value is not None and "://" not in value:
        raise typer.BadParameter(f"expected a database URL such as postgresql://user@host/db, found {value!r}")
    return value


StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        callback=_check_storage,
        help="Keep the study in this database (postgresql://..., mysql://...) so many machines share it.",
    ),
]


def _parse_timeout(value: str | None) -> float | None:
    if value is None:
        return None
    from hptune.spec import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="The experiment YAML file.", show_default=False)],
    n_trials: Annotated[int | None, typer.Option("--n-trials", min=1, help="Total trials for the study.")] = None,
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="Wall-clock budget: seconds, or 30s / 10m / 2h.")
    ] = None,
    n_jobs: Annotated[int | None, typer.Option("--n-jobs", help="Parallel trials (-1: all cores).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Overrides the file's seed.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default runs/<name>).")] = None,
    allow_module: AllowModule = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary.")] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Continue the study in the output folder (default). --no-resume refuses to touch an existing study.",
        ),
    ] = True,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start over: move the old study and outputs aside (never deleted).")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run the parameters of failed trials again.")
    ] = False,
    refit_on_interrupt: Annotated[
        bool, typer.Option("--refit-on-interrupt", help="After Ctrl-C, still refit the best model before exiting.")
    ] = False,
    storage: StorageOption = None,
    worker: Annotated[
        bool,
        typer.Option("--worker", help="Only run trials of the shared study (no refit, no output files), then exit."),
    ] = False,
    worker_index: Annotated[
        int | None,
        typer.Option(
            "--worker-index", min=0, help="This machine's index among workers (distinct sampler seeds); default: random."
        ),
    ] = None,
) -> None:
    """Validate, then tune the experiment and write trials.csv, best.yaml, model.joblib, run.json."""
    timeout_seconds = _parse_timeout(timeout)
    if n_jobs is not None and (n_jobs == 0 or n_jobs < -1):
        raise typer.BadParameter("must be -1 (all cores) or >= 1", param_hint="--n-jobs")
    from hptune.validate import Overrides, load_experiment

    with _user_errors(), _sigterm_as_interrupt():
        overrides = Overrides(n_trials, timeout_seconds, n_jobs, seed, str(out) if out else None, storage)
        exp = load_experiment(file, tuple(allow_module or ()), overrides)
        _print_warnings(exp)
        _quiet_libraries()
        from hptune.runner import RunOptions, run_experiment, run_worker

        _collect_garbage_from_now_on()

        options = RunOptions(
            resume=resume,
            fresh=fresh,
            retry_failed=retry_failed,
            refit_on_interrupt=refit_on_interrupt,
            worker_index=worker_index,
        )
        err = _console(stderr=True)
        if worker:
            with _ProgressView(err, exp.metric, enabled=not quiet) as view:
                counts = run_worker(exp, options, on_progress=view.update)
            _console().print(
                f"worker done: the study holds {counts['complete']} complete, {counts['fail']} failed, "
                f"{counts['pruned']} pruned trials; write the outputs with `hptune finalize`"
            )
            return
        try:
            with _ProgressView(err, exp.metric, enabled=not quiet) as view:
                result = run_experiment(exp, options, on_progress=view.update)
        except (RunFailedError, RunInterruptedError) as exc:
            partial = exc.result
            if partial is not None and getattr(partial, "best_trial", None) is not None:
                _render_summary(_console(), partial)  # type: ignore[arg-type]
            raise
        _render_summary(_console(), result)


@app.command()
def finalize(
    file: Annotated[Path, typer.Argument(help="The experiment YAML file.", show_default=False)],
    storage: StorageOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default runs/<name>).")] = None,
    allow_module: AllowModule = None,
) -> None:
    """Write trials.csv, best.yaml, model.joblib and run.json from an existing (shared) study."""
    from hptune.validate import Overrides, load_experiment

    with _user_errors():
        exp = load_experiment(file, tuple(allow_module or ()), Overrides(out=str(out) if out else None, storage=storage))
        _collect_garbage_from_now_on()
        _quiet_libraries()
        from hptune.runner import finalize_experiment

        result = finalize_experiment(exp)
        if result.status == "partial":
            _console(stderr=True).print(
                f"note: the study has not spent its budget of {exp.n_trials} trials; these outputs are partial"
            )
        _render_summary(_console(), result)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a scheduler or `kill`) like Ctrl-C: save what is complete, exit 130."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _ProgressView:
    """A rich progress bar on a terminal; a line every tenth of the budget elsewhere (CI logs)."""

    def __init__(self, console: Console, metric: str, enabled: bool) -> None:
        self.console, self.metric, self.enabled = console, metric, enabled
        self.progress = None
        self.task = None
        self.last_logged = 0

    def __enter__(self) -> _ProgressView:
        if self.enabled and self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("trials"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("best {task.fields[best]}"),
                console=self.console,
                transient=False,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, event: Progress) -> None:
        if not event.started and (event.resumed_from or event.requeued):
            # Said even with --quiet: a resumed run must never look like a fresh one.
            note = f"resuming: {event.resumed_from} of {event.total} trials done"
            if event.requeued:
                note += f"; {event.requeued} interrupted trial(s) queued to run again"
            self.console.print(note)
        if not self.enabled:
            return
        best = "-" if event.best_score is None else f"{self.metric} {event.best_score:.4f}"
        if self.progress is not None:
            if self.task is None:
                self.task = self.progress.add_task("trials", total=event.total, completed=event.done, best=best)
            self.progress.update(self.task, completed=event.done, best=best)
            return
        # Several workers may finish trials between two reports: log each tenth crossed once.
        step = max(1, event.total // 10)
        if event.started and event.done // step > self.last_logged:
            self.last_logged = event.done // step
            self.console.print(f"trial {event.done}/{event.total} done, best {best}")


def _render_summary(console: Console, result: RunResult) -> None:
    from rich.table import Table

    metric = result.metric
    table = result.table
    complete = table[table["state"] == "COMPLETE"].sort_values([f"rank_test_{metric}", "number"]).head(5)
    params = [c for c in table.columns if c.startswith("param_")]
    top = Table(title=f"top trials by {metric}", title_justify="left")
    for header in ("rank", "trial", f"cv {metric}", "train", *[p.removeprefix("param_") for p in params]):
        top.add_column(header)
    has_train = f"mean_train_{metric}" in table.columns
    for _, row in complete.iterrows():
        top.add_row(
            str(row[f"rank_test_{metric}"]),
            str(row["number"]),
            f"{row[f'mean_test_{metric}']:.4f} ± {row[f'std_test_{metric}']:.4f}",
            f"{row[f'mean_train_{metric}']:.4f}" if has_train else "-",
            *[_fmt(row[p]) for p in params],
        )
    console.print(top)
    counts = result.counts
    console.print(
        f"trials: {counts['complete']} complete, {counts['fail']} failed, {counts['pruned']} pruned"
        + (f", {counts['interrupted']} interrupted" if counts["interrupted"] else "")
        + (f" (resumed after {result.resumed_from})" if result.resumed_from else "")
    )
    if result.moved_aside is not None:
        console.print(f"the previous study and outputs were moved to {result.moved_aside}")
    for message, count, _ in result.failures[:3]:
        console.print(f"  failed {count}x: {_escape(message)}")
    if result.best_trial is None or result.cv_score is None or result.cv_std is None:
        return
    console.print(f"best trial {result.best_trial}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in result.best_params.items()))
    console.print(f"cv {metric}: {result.cv_score:.4f} ± {result.cv_std:.4f}")
    if result.train_score is not None:
        console.print(f"train {metric}: {result.train_score:.4f}")
    if result.test_score is not None:
        console.print(f"test {metric}: {result.test_score:.4f}")
    for warning in result.refit_warnings:
        short = warning if len(warning) <= 160 else warning[:157] + "..."
        console.print(f"refit warning: {_escape(short)} (whole in run.json)")
    for name, path in result.files.items():
        console.print(f"{name}: {path}")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "-" if value != value else f"{value:.4g}"
    return "-" if value is None else str(value)


def _collect_garbage_from_now_on() -> None:
    """Turn the garbage collector back on (see main), with every object that exists now (the
    imported libraries, the loaded data) frozen out of its collections: they live to the end,
    and forked workers then share their memory pages instead of copying them."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def main() -> None:
    """Console-script entry point. Anything that is not an HptuneError is a bug and keeps
    its traceback."""
    # Importing scikit-learn, SciPy and pandas creates objects fast enough to set off several
    # full collections over an ever larger heap (about 0.15 s per command, all wasted: nothing
    # they create is garbage). Collect nothing until the experiment is loaded.
    gc.disable()
    try:
        app()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        # Skip the interpreter's teardown: with scikit-learn, SciPy and pandas loaded it takes
        # about 0.3 s, and every file hptune writes is already closed, fsync'd and renamed.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
