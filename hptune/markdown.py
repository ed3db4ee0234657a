"""A run's summary as Markdown, for a CI job's page (GitHub Actions' ``GITHUB_STEP_SUMMARY``):
the best scores, the gate verdicts, the baseline and what changed from it, the top trials. Plain data in, text out; the CLI appends it."""

from __future__ import annotations

from typing import Any

TOP = 5


def run_summary(result: Any, experiment: str, exit_code: int, error: str | None = None) -> str:
    metric = result.metric
    lines = [f"### hptune: {experiment} ({result.status}, exit {exit_code})", ""]
    if error:
        lines += [f"> {_cell(error)}", ""]
    rows = [("stopped by", f"{result.stop_reason} ({result.stop_detail})" if result.stop_detail else result.stop_reason)]
    counts = result.counts
    rows.append(("trials", ", ".join(f"{n} {state}" for state, n in counts.items() if n)))
    if result.best_trial is not None:
        rows += [("best trial", str(result.best_trial)), (f"cv {metric}", f"{result.cv_score:.4f} ± {result.cv_std:.4f}")]
        if result.train_score is not None:
            rows.append((f"train {metric}", f"{result.train_score:.4f}"))
        if result.test_score is not None:
            rows.append((f"test {metric}", f"{result.test_score:.4f}"))
    lines += ["| | |", "|---|---|", *[f"| {_cell(k)} | {_cell(v)} |" for k, v in rows], ""]
    if result.gates:
        lines += ["**Gates**", ""]
        for verdict in result.gates:
            bar = "" if verdict.detail else f" {verdict.threshold:g}"
            lines.append(f"- {'✅ passed' if verdict.passed else '❌ missed'}: `{verdict.gate}`{bar} "
                         f"({_cell(verdict.describe(metric))})")
        lines.append("")
    lines += _baseline_section(result.baseline)
    table = result.table
    if table is not None and not table.empty and f"rank_test_{metric}" in table.columns:
        complete = table[table["state"] == "COMPLETE"].sort_values([f"rank_test_{metric}", "number"]).head(TOP)
        params = [c for c in table.columns if c.startswith("param_")]
        if not complete.empty:
            header = ["rank", "trial", f"cv {metric}", *[p.removeprefix("param_") for p in params]]
            lines += [f"**Top {len(complete)} trials**", "", "| " + " | ".join(header) + " |",
                      "|" + "---|" * len(header)]
            for _, row in complete.iterrows():
                cells = [str(row[f"rank_test_{metric}"]), str(row["number"]),
                         f"{row[f'mean_test_{metric}']:.4f} ± {row[f'std_test_{metric}']:.4f}",
                         *[format_value(row[p]) for p in params]]
                lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"


def _baseline_section(against: Any) -> list[str]:
    """The baseline's score and the parameters the best changed (what a reviewer of the
    proposed best.yaml reads first)."""
    if against is None:
        return []
    lines = ["**Baseline**", "", f"{_cell(against.describe())}", ""]
    if against.changes and against.trial != against.best_trial:
        lines += ["| parameter | baseline | best |", "|---|---|---|"]
        lines += [f"| {_cell(name)} | {_cell(format_value(old))} | {_cell(format_value(new))} |"
                  for name, old, new in against.changes]
        lines.append("")
    return lines


def error_summary(experiment: str, exit_code: int, error: str) -> str:
    return f"### hptune: {experiment} (exit {exit_code})\n\n> {_cell(error)}\n\n"


def format_value(value: Any) -> str:
    """A parameter's value in a table: 4 significant digits, '-' for none or NaN."""
    if isinstance(value, float):
        return "-" if value != value else f"{value:.4g}"
    return "-" if value is None else str(value)


def _cell(text: Any) -> str:
    """One table cell: no newlines, no column separators."""
    return " ".join(str(text).split()).replace("|", "\\|")
