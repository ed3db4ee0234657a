"""`hptune run FILE`: validate, tune, refit, write the outputs (or, with --worker, only tune)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hptune.cli._app import app
from hptune.cli.common import (
    EXIT_FAIL,
    EXIT_GATE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    AllowModule,
    BaselineOption,
    ExperimentFile,
    OutOption,
    RequireImprovementOption,
    SetOption,
    StorageOption,
    collect_garbage_from_now_on,
    console,
    exit_if_a_gate_is_missed,
    gates_missed,
    print_warnings,
    quiet_libraries,
    sigterm_as_interrupt,
    user_errors,
)
from hptune.cli.render import ProgressView, render_summary, say_if_partial
from hptune.errors import RunFailedError, RunInterruptedError


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
    file: ExperimentFile,
    n_trials: Annotated[int | None, typer.Option("--n-trials", min=1, help="Total trials for the study.")] = None,
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="Wall-clock budget: seconds, or 30s / 10m / 2h.")
    ] = None,
    n_jobs: Annotated[int | None, typer.Option("--n-jobs", help="Parallel trials (-1: all cores).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, max=2**32 - 1, help="Overrides the file's seed.")] = None,
    out: OutOption = None,
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
    start_from: Annotated[
        list[Path] | None,
        typer.Option(
            "--start-from",
            exists=True,
            dir_okay=False,
            metavar="BEST_YAML",
            help="Run this best.yaml's parameters first, once (repeatable; added to strategy.start_from).",
        ),
    ] = None,
    worker: Annotated[
        bool,
        typer.Option("--worker", help="Only run trials of the shared study (no refit, no output files), then exit."),
    ] = False,
    set_values: SetOption = None,
    baseline: BaselineOption = None,
    require_improvement: RequireImprovementOption = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout (the result); every human line goes to stderr."),
    ] = False,
    fail_under: Annotated[
        float | None,
        typer.Option("--fail-under", metavar="SCORE", help="Exit 3 when the best CV score is below SCORE (gate.min_cv_score)."),
    ] = None,
    worker_index: Annotated[
        int | None,
        typer.Option(
            "--worker-index",
            min=0,
            max=99_999,  # indices claimed in the study start above (hptune.study.CLAIMED_MACHINES_FROM)
            help="This machine's index among workers (distinct sampler seeds); default: claimed in the study.",
        ),
    ] = None,
) -> None:
    """Validate, then tune the experiment and write trials.csv, best.yaml, model.joblib, run.json."""
    timeout_seconds = _parse_timeout(timeout)
    if n_jobs is not None and (n_jobs == 0 or n_jobs < -1):
        raise typer.BadParameter("must be -1 (all cores) or >= 1", param_hint="--n-jobs")
    if fresh and worker:
        # Other workers may be running this study's trials: moving it aside would pull it from under them.
        raise typer.BadParameter("cannot be combined with --worker (start the study over with `run --fresh` first)", param_hint="--fresh")
    if baseline is not None and worker:
        raise typer.BadParameter("is for the run that writes the outputs (a worker runs the baseline's trial when it is "
                                 "queued)", param_hint="--baseline")
    if require_improvement and baseline is None:
        raise typer.BadParameter("needs --baseline BEST_YAML: the config the best must improve on",
                                 param_hint="--require-improvement")
    def on_exit(exc: BaseException, code: int) -> None:
        _github_summary(file, getattr(exc, "result", None), code, " ".join(str(exc).split()) or type(exc).__name__)
        if as_json:
            _json_on_exit(exc, code)

    with user_errors(on_exit=on_exit), sigterm_as_interrupt():
        from hptune.overrides import Overrides
        from hptune.validate import load_experiment

        overrides = Overrides(
            n_trials, timeout_seconds, n_jobs, seed, str(out) if out else None, storage, [str(path) for path in start_from or []],
            fail_under, list(set_values or []), str(baseline) if baseline else None, require_improvement,
        )
        exp = load_experiment(file, tuple(allow_module or ()), overrides)
        print_warnings(exp)
        quiet_libraries()
        from hptune.runner import RunOptions, run_experiment, run_worker

        collect_garbage_from_now_on()

        options = RunOptions(
            resume=resume,
            fresh=fresh,
            retry_failed=retry_failed,
            refit_on_interrupt=refit_on_interrupt,
            worker_index=worker_index,
        )
        err = console(stderr=True)
        if worker:
            with ProgressView(err, exp.metric, enabled=not quiet) as view:
                counts = run_worker(exp, options, on_progress=view.update)
            console(stderr=as_json).print(
                f"worker done: the study holds {counts['complete']} complete, {counts['fail']} failed, "
                f"{counts['pruned']} pruned trials; write the outputs with `hptune finalize`"
            )
            if as_json:
                from hptune.documents import failure_document

                typer.echo(json.dumps({**failure_document("run", EXIT_OK, "worker_done", None), "trials": counts}, indent=2))
            return
        try:
            with ProgressView(err, exp.metric, enabled=not quiet) as view:
                result = run_experiment(exp, options, on_progress=view.update, on_nested=view.nested)
        except (RunFailedError, RunInterruptedError) as exc:
            partial = exc.result
            if partial is not None and getattr(partial, "best_trial", None) is not None:
                render_summary(console(stderr=as_json), partial)  # type: ignore[arg-type]
            raise
        say_if_partial(result)
        render_summary(console(stderr=as_json), result)
        _github_summary(file, result, EXIT_GATE if gates_missed(result) else EXIT_OK)
        if as_json:
            from hptune.documents import run_document

            typer.echo(json.dumps(run_document(result, EXIT_GATE if gates_missed(result) else EXIT_OK), indent=2))
        exit_if_a_gate_is_missed(result)


def _json_on_exit(exc: BaseException, code: int) -> None:
    """``run --json`` when the run did not end well: the run's document when it wrote its
    outputs (a failed or interrupted run), else the failure's (an invalid file, say)."""
    from hptune.documents import failure_document, run_document
    from hptune.errors import SpecError

    result = getattr(exc, "result", None)
    message = " ".join(str(exc).split()) or type(exc).__name__
    if result is not None:
        document = run_document(result, code, message)
    elif isinstance(exc, SpecError):
        document = failure_document("run", code, "invalid", None, exc.issues)
    else:
        status = "interrupted" if code == EXIT_INTERRUPTED else ("failed" if code == EXIT_FAIL else "error")
        document = failure_document("run", code, status, message)
    typer.echo(json.dumps(document, indent=2))


def _github_summary(file: Path, result: object, code: int, error: str | None = None) -> None:
    """On GitHub Actions (GITHUB_STEP_SUMMARY set): append the run's summary, as Markdown, to
    the job's page. A summary that cannot be written is not worth failing the run for."""
    import os

    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    from hptune.markdown import error_summary, run_summary

    text = run_summary(result, file.name, code, error) if result is not None else error_summary(file.name, code, error or "")
    try:
        with open(target, "a", encoding="utf-8") as summary:
            summary.write(text)
    except OSError as exc:
        console(stderr=True).print(f"note: could not append to GITHUB_STEP_SUMMARY ({exc.strerror or exc})")
