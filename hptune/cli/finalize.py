"""`hptune finalize FILE`: write the outputs from an existing (shared) study."""

from __future__ import annotations

import typer

from hptune.cli._app import app
from hptune.cli.common import (
    AllowModule,
    BaselineOption,
    ExperimentFile,
    OutOption,
    RequireImprovementOption,
    StorageOption,
    collect_garbage_from_now_on,
    console,
    exit_if_a_gate_is_missed,
    quiet_libraries,
    user_errors,
)
from hptune.cli.render import render_summary, say_if_partial


@app.command()
def finalize(
    file: ExperimentFile,
    storage: StorageOption = None,
    out: OutOption = None,
    allow_module: AllowModule = None,
    baseline: BaselineOption = None,
    require_improvement: RequireImprovementOption = False,
) -> None:
    """Write trials.csv, best.yaml, model.joblib and run.json from an existing (shared) study."""
    if require_improvement and baseline is None:
        raise typer.BadParameter("needs --baseline BEST_YAML: the config the best must improve on",
                                 param_hint="--require-improvement")
    # Nested CV's outer folds done before a Ctrl-C are kept in the study; its trials never change.
    with user_errors(interrupted="interrupted; the study's trials are unchanged: run finalize again to write the outputs"):
        from hptune.overrides import Overrides
        from hptune.validate import load_experiment

        exp = load_experiment(file, tuple(allow_module or ()), Overrides(
            out=str(out) if out else None, storage=storage, baseline=str(baseline) if baseline else None,
            require_improvement=require_improvement,
        ))
        collect_garbage_from_now_on()
        quiet_libraries()
        from functools import partial

        from hptune.cli.render import say_nested_fold
        from hptune.runner import finalize_experiment

        result = finalize_experiment(exp, on_nested=partial(say_nested_fold, console(stderr=True), exp.metric))
        say_if_partial(result)
        render_summary(console(), result)
        exit_if_a_gate_is_missed(result)
