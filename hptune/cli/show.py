"""`hptune show RUN_DIR`: the summary table and the best, read from the output files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hptune.cli._app import app
from hptune.cli.common import console, escape, user_errors
from hptune.cli.render import fmt_value


@app.command()
def show(
    run_dir: Annotated[Path, typer.Argument(help="A run's output folder (the one holding run.json).")],
    top: Annotated[int, typer.Option("--top", min=1, help="How many of the best trials to list.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead.")] = False,
) -> None:
    """Show a finished run from its files: no study needed, so it works on another machine."""
    with user_errors():
        from hptune.show import describe_run

        described = describe_run(run_dir, top)
    if as_json:
        typer.echo(json.dumps(described, indent=2, sort_keys=False))
        return
    _render(described)


def _render(described: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    metric = described["metric"]
    head = f"{described['experiment']}: {described['status']}"
    if described["stop_reason"]:
        head += f", stopped by {described['stop_reason']}"
        if described["stop_detail"]:
            head += f" ({described['stop_detail']})"
    out.print(escape(head))
    counts = described["trials"]
    out.print(", ".join(f"{count} {state}" for state, count in counts.items() if count) or "no trials")
    if described["top"]:
        params = list(dict.fromkeys(name for row in described["top"] for name in row["params"]))
        table = Table(title=f"top trials by {metric}", title_justify="left")
        for header in ("rank", "trial", f"cv {metric}", "train", *params):
            table.add_column(escape(header))
        for row in described["top"]:
            train = "-" if row["train_score"] is None else f"{row['train_score']:.4f}"
            table.add_row(str(row["rank"]), str(row["trial"]), f"{row['cv_score']:.4f} ± {row['cv_std']:.4f}", train,
                          *[escape(fmt_value(row["params"].get(name))) for name in params])
        out.print(table)
    best = described["best"]
    if best is None:
        out.print("no best trial: " + ("no trial kept every constraint" if described["status"] == "infeasible"
                                       else "no trial completed"))
        return
    out.print(f"best trial {best['trial']}: " + escape(", ".join(f"{k}={fmt_value(v)}" for k, v in best["params"].items())))
    out.print(f"cv {metric}: {best['cv_score']:.4f} ± {best['cv_std']:.4f}")
    for label, key in (("train", "train_score"), ("test", "test_score")):
        if best[key] is not None:
            out.print(f"{label} {metric}: {best[key]:.4f}")
    against = described.get("baseline")
    if against is not None:
        line = f"baseline {against['file']} (trial {against['trial']}, {against['state']})"
        if against["improvement"] is not None:
            line += (f": cv {against['cv_score']:.4f}, improvement {against['improvement']:+.4f} ± "
                     f"{against['standard_error'] or 0:.4f} (one standard error)")
        out.print(escape(line))
    for verdict in described.get("gates", []):
        from hptune.gates import Verdict

        judged = Verdict(**verdict)
        out.print(escape(f"gate {judged.title}: {'passed' if judged.passed else 'MISSED'} ({judged.describe(metric)})"))

