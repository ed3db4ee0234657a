"""What every command shares: exit codes, consoles, and the one place errors become exit codes."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hptune.errors import HptuneError, RunFailedError, RunInterruptedError, SpecError

if TYPE_CHECKING:
    from rich.console import Console

    from hptune.validate import ValidatedExperiment

#: Exit codes, named (as sqlfluff does): 1 means "ran, but the result failed".
EXIT_OK = 0
EXIT_FAIL = 1
EXIT_ERROR = 2
EXIT_GATE = 3  # the run finished and wrote its outputs; its model is not good enough (gate:)
EXIT_INTERRUPTED = 130

#: What Ctrl-C before the first trial (while the data loads, say) leaves behind.
INTERRUPTED_BEFORE_TRIALS = "interrupted before any trial ran; nothing was trained"

AllowModule = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-module",
        help="Also allow estimators from this top-level module (repeatable). "
        "By default only sklearn, xgboost, lightgbm and catboost.",
    ),
]

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override one value of the file, e.g. strategy.n_trials=200 (repeatable; the value is read as YAML).",
    ),
]

BaselineOption = Annotated[
    Path | None,
    typer.Option(
        "--baseline",
        exists=True,
        dir_okay=False,
        metavar="BEST_YAML",
        help="Run this best.yaml's parameters first, on today's data and folds, and report the improvement over it.",
    ),
]
RequireImprovementOption = Annotated[
    bool,
    typer.Option(
        "--require-improvement",
        help="Exit 3 unless the best beats the --baseline by more than one standard error of the paired fold scores.",
    ),
]

ExperimentFile = Annotated[Path, typer.Argument(help="The experiment YAML file.", show_default=False)]
OutOption = Annotated[Path | None, typer.Option("--out", help="Output folder (default runs/<name>).")]


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


def debug_enabled() -> bool:
    return os.environ.get("HPTUNE_DEBUG", "") not in ("", "0")


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    # rich colours only when writing to a terminal; NO_COLOR is honoured by rich itself.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


@contextmanager
def user_errors(
    interrupted: str = INTERRUPTED_BEFORE_TRIALS, on_exit: Callable[[BaseException, int], None] | None = None
) -> Iterator[None]:
    """Turn hptune's errors into one line each on stderr and the right exit code.

    ``interrupted`` is what a bare Ctrl-C means at this point of the command (the runner turns
    an interruption during the trials into RunInterruptedError, with its own message).
    ``on_exit`` is told the error and the exit code before the exit (``--json`` prints its
    document there).
    """
    err = console(stderr=True)
    try:
        yield
    except (HptuneError, KeyboardInterrupt) as exc:
        if debug_enabled():
            err.print_exception()
        code = _report(err, exc, interrupted)
        if on_exit is not None:
            on_exit(exc, code)
        raise typer.Exit(code) from None
    except OSError as exc:
        # The file system said no (an --out that is a file, no permission, a full disk): the
        # user can fix that, so it is one line and exit 2, not a traceback.
        if debug_enabled():
            err.print_exception()
        where = f": {exc.filename}" if exc.filename else ""
        err.print(f"[red]error:[/red] {escape(exc.strerror or str(exc))}{escape(str(where))}")
        if on_exit is not None:
            on_exit(exc, EXIT_ERROR)
        raise typer.Exit(EXIT_ERROR) from None


def _report(err: Console, exc: BaseException, interrupted: str) -> int:
    if isinstance(exc, SpecError):
        for issue in exc.issues:
            err.print(f"[red]{escape(str(issue))}[/red]")
        noun = "problem" if len(exc.issues) == 1 else "problems"
        err.print(f"{len(exc.issues)} {noun} found; nothing was trained.")
        return EXIT_ERROR
    if isinstance(exc, RunInterruptedError):
        err.print(escape(str(exc)))
        return EXIT_INTERRUPTED
    if isinstance(exc, KeyboardInterrupt):
        err.print(interrupted)
        return EXIT_INTERRUPTED
    err.print(f"[red]error:[/red] {escape(str(exc))}")
    return EXIT_FAIL if isinstance(exc, RunFailedError) else EXIT_ERROR


def print_warnings(exp: ValidatedExperiment) -> None:
    """What is probably a mistake but does not stop a run: one line each, on stderr."""
    err = console(stderr=True)
    for warning in exp.warnings:
        err.print(f"[yellow]{escape(str(warning))}[/yellow]")


def quiet_libraries() -> None:
    """Optuna logs every trial at INFO and every failure with a traceback; we show our own."""
    if debug_enabled():
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # MLflow (output.mlflow) sets its logger's level when imported, from this variable: without
    # it, its database set-up notes would be printed.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.captureWarnings(False)


def collect_garbage_from_now_on() -> None:
    """Turn the garbage collector back on (see main), with every object that exists now (the
    imported libraries, the loaded data) frozen out of its collections: they live to the end,
    and forked workers then share their memory pages instead of copying them."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a scheduler, `docker stop` or `kill`) like Ctrl-C."""
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


def gates_missed(result: Any) -> bool:
    return any(not verdict.passed for verdict in result.gates)


def exit_if_a_gate_is_missed(result: Any) -> None:
    """After the summary: each missed gate on one line (stderr), and exit 3."""
    missed = [verdict for verdict in result.gates if not verdict.passed]
    if not missed:
        return
    err = console(stderr=True)
    for verdict in missed:
        err.print(f"[red]gate missed:[/red] {verdict.title}: {escape(verdict.describe(result.metric))}")
    raise typer.Exit(EXIT_GATE)
