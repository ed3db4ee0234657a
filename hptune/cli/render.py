"""What a person sees: the progress of a search, and the summary at its end."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hptune.cli.common import escape
from hptune.markdown import format_value as fmt_value

if TYPE_CHECKING:
    from rich.console import Console

    from hptune.runner import NestedProgress, Progress, RunResult


class ProgressView:
    """A rich progress bar on a terminal; a line every tenth of the budget elsewhere (CI logs)."""

    def __init__(self, console: Console, metric: str, enabled: bool) -> None:
        self.console, self.metric, self.enabled = console, metric, enabled
        self.progress = None
        self.task = None
        self.last_logged = 0
        self.waiting_for: list[str] = []

    def __enter__(self) -> ProgressView:
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
        self._say_what_we_wait_for(event.waiting_for)
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

    def nested(self, event: NestedProgress) -> None:
        """One line per outer fold of nested CV (the progress bar is the main search's)."""
        if self.enabled:
            say_nested_fold(self.console, self.metric, event)

    def _say_what_we_wait_for(self, waiting_for: list[str]) -> None:
        """Said even with --quiet, once per change: a run that seems to hang must say why."""
        numbers = [line.split(" on ")[0] for line in waiting_for]
        if numbers == [line.split(" on ")[0] for line in self.waiting_for]:
            return
        self.waiting_for = waiting_for
        if waiting_for:
            self.console.print(
                f"waiting for {len(waiting_for)} trial(s) other machines are running, before writing the outputs: "
                + "; ".join(escape(line) for line in waiting_for)
            )


def say_nested_fold(console: Console, metric: str, event: NestedProgress) -> None:
    fold = event.fold
    head = f"nested cv: outer fold {fold.index} done ({event.done} of {event.total})"
    if fold.error is not None:
        console.print(f"{head}: failed: {escape(fold.error)}")
    elif fold.reused:
        console.print(f"{head}: {metric} {fold.score:.4f} (kept in the study from an earlier run)")
    else:
        console.print(f"{head}: {metric} {fold.score:.4f}; its search's best cv {fold.inner_cv_score:.4f} "
                      f"after {fold.trials} trials ({fold.seconds:.1f} s)")


def nested_summary(result: RunResult) -> str | None:
    """``nested cv accuracy: 0.9510 ± 0.0210 (5 outer folds × 30 trials); tuned cv 0.9670: optimism +0.0160``"""
    estimate = result.nested
    if estimate is None:
        return None
    head = f"nested cv {result.metric}"
    if estimate.error is not None or estimate.mean is None or estimate.std is None:
        return f"{head}: not estimated: {escape(estimate.error or '')}"
    trials = f"{estimate.trials_per_fold}" + (f"+{estimate.refine_trials_per_fold}" if estimate.refine_trials_per_fold else "")
    line = f"{head}: {estimate.mean:.4f} ± {estimate.std:.4f} ({len(estimate.folds)} outer folds × {trials} trials)"
    if result.cv_score is not None:
        line += f"; tuned cv {result.cv_score:.4f}: optimism {result.cv_score - estimate.mean:+.4f}"
    return line


def say_if_partial(result: RunResult) -> None:
    """A run or finalize that wrote partial outputs says why, on stderr, before the summary."""
    if result.status == "partial" and result.partial_reason:
        from hptune.cli.common import console

        console(stderr=True).print(f"note: {escape(result.partial_reason)}; these outputs are partial")


def render_summary(console: Console, result: RunResult) -> None:
    from rich.table import Table

    if result.report_error is not None:
        from hptune.cli.common import console as make_console

        make_console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(result.report_error)}")

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
            *[fmt_value(row[p]) for p in params],
        )
    console.print(top)
    say_mlflow(console, result)
    counts = result.counts
    console.print(
        f"trials: {counts['complete']} complete, {counts['fail']} failed, {counts['pruned']} pruned"
        + (f", {counts['interrupted']} interrupted" if counts["interrupted"] else "")
        + (f" (resumed after {result.resumed_from})" if result.resumed_from else "")
    )
    if result.feasible is not None:
        console.print(f"feasible: {result.feasible} of {counts['complete']} complete trials keep every constraint")
    if result.auto_strategy is not None:
        console.print(f"strategy: {result.strategy} (auto: {result.auto_strategy})")
    if result.stop_reason is not None:
        console.print(f"stopped: {result.stop_reason}" + (f" ({escape(result.stop_detail)})" if result.stop_detail else ""))
    if result.moved_aside is not None:
        console.print(f"the previous study and outputs were moved to {result.moved_aside}")
    for message, count, _ in result.failures[:3]:
        console.print(f"  failed {count}x: {escape(message)}")
    if result.best_trial is None or result.cv_score is None or result.cv_std is None:
        return
    console.print(f"best trial {result.best_trial}: " + ", ".join(f"{k}={fmt_value(v)}" for k, v in result.best_params.items()))
    if result.objectives is not None and result.objectives["best_values"] is not None:
        values = ", ".join(f"{name} {fmt_value(value)}" for name, value in result.objectives["best_values"].items())
        front = len(result.objectives["pareto_trials"])
        console.print(f"pareto front: {front} trial(s), in pareto.csv; select {result.objectives['select']}: {values}")
    console.print(f"cv {metric}: {result.cv_score:.4f} ± {result.cv_std:.4f}")
    if result.train_score is not None:
        console.print(f"train {metric}: {result.train_score:.4f}")
    if result.overfit_warning is not None:
        console.print(f"[yellow]warning:[/yellow] {escape(result.overfit_warning)}")
    nested = nested_summary(result)
    if nested is not None:
        console.print(nested)
    if result.test_score is not None:
        console.print(f"test {metric}: {result.test_score:.4f}")
    if result.baseline is not None:
        console.print(f"baseline: {escape(result.baseline.describe())}")
        if result.baseline.changes and result.baseline.trial != result.best_trial:
            changes = ", ".join(f"{name} {fmt_value(old)} -> {fmt_value(new)}" for name, old, new in result.baseline.changes)
            console.print(f"  changed from the baseline: {escape(changes)}")
    for verdict in result.gates:
        console.print(f"gate {verdict.title}: {'passed' if verdict.passed else 'MISSED'} ({escape(verdict.describe(metric))})")
    for warning in result.refit_warnings:
        short = warning if len(warning) <= 160 else warning[:157] + "..."
        console.print(f"refit warning: {escape(short)} (whole in run.json)")
    for name, path in result.files.items():
        console.print(f"{name}: {path}")
    if "model" in result.files and result.model_trial != result.best_trial:
        which = "an unknown trial" if result.model_trial is None else f"trial {result.model_trial}"
        console.print(
            f"note: {result.files['model'].name} is {which}'s, from an earlier run; the best is trial {result.best_trial} "
            f"(not refitted: run again to refit it)"
        )


def say_mlflow(console: Console, result: RunResult) -> None:
    """Where the run went in MLflow, or one line on why it did not (the outputs are written)."""
    record = result.mlflow
    if record is None:
        return
    if record["error"] is not None:
        console.print(f"[yellow]warning:[/yellow] mlflow: not logged: {escape(record['error'])} (the outputs are written)")
        return
    console.print(f"mlflow: run {record['run_id']} in {escape(record['tracking_uri'])}, "
                  f"{record['nested_runs_logged']} new trial run(s)")
