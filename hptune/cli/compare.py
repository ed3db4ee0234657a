"""`hptune compare A B`: two results side by side, and whether they differ beyond the noise."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hptune.cli._app import app
from hptune.cli.common import console, escape, user_errors
from hptune.cli.render import fmt_value

Side = Annotated[Path, typer.Argument(help="A run's output folder, or a best.yaml.")]


@app.command()
def compare(a: Side, b: Side) -> None:
    """Compare two runs (or best.yaml files): parameters, and the CV score difference against
    its standard error from the fold scores."""
    with user_errors():
        from hptune.compare import NOISE_MULTIPLE
        from hptune.compare import compare as compare_results

        result = compare_results(a, b)
    from rich.table import Table

    out = console()
    metric = result.metric
    table = Table(title="parameters", title_justify="left")
    for header in ("", "A", "B"):
        table.add_column(header)
    for name, left, right in result.params:
        mark = "" if left == right else " *"
        table.add_row(escape(name + mark), escape(fmt_value(left)), escape(fmt_value(right)))
    table.add_row(f"cv {escape(metric)}", _score(result.a.best), _score(result.b.best))
    if result.test_difference is not None:
        table.add_row(f"test {escape(metric)}", f"{result.a.best['test_score']:.4f}", f"{result.b.best['test_score']:.4f}")
    out.print(f"A: {escape(result.a.label)}\nB: {escape(result.b.label)}")
    out.print(table)
    line = f"cv {metric}: B - A = {result.cv_difference:+.4f}"
    if result.standard_error is None:
        out.print(escape(line + "; the noise is unknown: a best.yaml without its run's trials.csv has no fold scores"))
    else:
        how = "paired over the same folds" if result.paired else "the two runs' folds differ: unpaired"
        verdict = "larger than the noise" if result.beyond_noise else "within the noise"
        out.print(escape(f"{line} ± {result.standard_error:.4f} (standard error, {how}): {verdict} "
                         f"(more than {NOISE_MULTIPLE:g} standard errors is larger)"))
    if result.test_difference is not None:
        out.print(escape(f"test {metric}: B - A = {result.test_difference:+.4f} (one held-out set: no error bar)"))


def _score(best: dict) -> str:
    return f"{best['cv_score']:.4f} ± {best['cv_std']:.4f}"
