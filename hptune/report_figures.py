"""The figures of report.html, each from the library that already draws it.

Optuna's ``optuna.visualization`` draws what it knows of a study (history, importances,
parallel coordinates, slices, contour, intermediate values, Pareto front); plotly draws the
two pictures only hptune's records hold (train vs CV score per trial, the fold-score spread of
the top trials), from trials.csv. A figure that cannot be drawn for this study (one trial, no
numeric parameter, every trial failed) becomes a note saying why, never an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: How many of the best trials the fold-spread figure shows.
TOP_TRIALS = 10
#: fANOVA's forest: Optuna's default (64 trees, depth 64) took 53 s on 2,000 trials; 16 trees
#: of depth 8 ranked that study's parameters in the same order in a third of a second.
FANOVA_TREES, FANOVA_DEPTH = 16, 8
#: The contour's colour grid, at most this many cells a side (see _coarsen).
CONTOUR_CELLS = 60


@dataclass
class Section:
    """One block of the page: a title, what it shows, and a figure or a note why there is none."""

    key: str
    title: str
    about: str
    figure: Any | None = None
    note: str | None = None


def study_view(study: Any, infeasible: set[int] | None = None) -> Any:
    """An in-memory copy of the study holding only the trials that ran (complete, pruned,
    failed): queued and skipped trials (hptune_skipped) never ran and must not show. Trials
    that broke a ``constraints:`` limit (``infeasible``: their numbers) carry the constraint
    value Optuna's figures read, so they show as infeasible and are never the best so far."""
    import copy

    import optuna
    from optuna.trial import TrialState

    from hptune.trials import is_skipped

    ran = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in ran and not is_skipped(t)]
    if infeasible is not None:
        marked = []
        for trial in trials:
            trial = copy.copy(trial)
            trial.system_attrs = dict(trial.system_attrs)  # the study's own trial stays as it is
            trial.set_constraint("hptune_constraints", 1.0 if trial.number in infeasible else 0.0)
            marked.append(trial)
        trials = marked
    view = optuna.create_study(directions=study.directions, study_name=study.study_name)
    view.add_trials(trials)
    return view


def _cached_importance(seed: int) -> Any:
    """Optuna's fANOVA evaluator, computed once per target: the importance figure and the
    choice of the contour's parameters ask for the same numbers."""
    from optuna.importance import BaseImportanceEvaluator, FanovaImportanceEvaluator

    class CachedFanova(BaseImportanceEvaluator):
        def __init__(self) -> None:
            self._evaluator = FanovaImportanceEvaluator(n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH, seed=seed)
            self._done: dict[Any, dict[str, float]] = {}

        def evaluate(self, study: Any, params: Any = None, *, target: Any = None) -> dict[str, float]:
            key = (tuple(params) if params else None, target)
            if key not in self._done:
                self._done[key] = self._evaluator.evaluate(study, params=params, target=target)
            return self._done[key]

    return CachedFanova()


def build_sections(view: Any, table: Any, metric: str | None, objectives: list[str], seed: int) -> list[Section]:
    """Every section of the report, in page order."""
    from optuna.trial import TrialState

    complete = view.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    multi = len(objectives) > 1
    names = objectives if multi else [metric or "objective"]
    target = (lambda t: t.values[0]) if multi else None
    name = names[0]
    importance = _cached_importance(seed)
    ranked = _importances(view, importance, target, complete)
    sections = [
        *_history(view, names, multi, complete),
        _importance_section(view, importance, target, name, complete, multi),
        _try(Section("parallel", "Parallel coordinates", f"Each line is a complete trial, coloured by {name}."),
             complete, lambda: _parallel(view, target, name)),
        *_slices(view, target, name, complete),
        _contour(view, target, name, complete, ranked),
        _train_vs_cv(table, metric),
        _fold_spread(table, metric),
    ]
    if any(t.intermediate_values for t in view.get_trials(deepcopy=False)) and not multi:
        from optuna.visualization import plot_intermediate_values

        sections.append(_try(Section(
            "intermediate", "Intermediate values",
            "The running mean CV score each trial reported after each fold; pruned trials stop early.",
        ), [True], lambda: plot_intermediate_values(view)))
    if multi:
        sections.append(_pareto(view, objectives, complete))
    return sections


def _try(section: Section, needed: list[Any], draw: Any, why: str = "no trial completed") -> Section:
    """Draw the section's figure, or say why not: no trial to draw, or Optuna refused."""
    if not needed:
        section.note = why
        return section
    try:
        section.figure = draw()
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        log.info("report: %s not drawn: %s", section.key, exc)
        section.note = f"not drawn: {exc}"
    return section


def _history(view: Any, names: list[str], multi: bool, complete: list[Any]) -> list[Section]:
    from optuna.visualization import plot_optimization_history

    about = "Each complete trial's score, and the best so far."
    if not multi:
        return [_try(Section("history", "Optimisation history", about),
                     complete, lambda: plot_optimization_history(view, target_name=names[0]))]
    sections = []
    for i, name in enumerate(names):
        sections.append(_try(
            Section(f"history-{i}", f"Optimisation history: {name}", f"Each complete trial's {name}, and the best so far."),
            complete,
            lambda i=i, name=name: _with_best_so_far(
                plot_optimization_history(view, target=lambda t: t.values[i], target_name=name),
                complete, i, view.directions[i].name == "MINIMIZE"),
        ))
    return sections


def _with_best_so_far(fig: Any, complete: list[Any], i: int, minimise: bool) -> Any:
    """Optuna draws the best-so-far line only for one objective; with several, each
    objective's history gets its own (its best alone, not the Pareto choice)."""
    import plotly.graph_objects as go

    numbers, best, current = [], [], None
    for trial in sorted(complete, key=lambda t: t.number):
        value = trial.values[i]
        current = value if current is None else (min(current, value) if minimise else max(current, value))
        numbers.append(trial.number)
        best.append(current)
    fig.add_trace(go.Scatter(x=numbers, y=best, mode="lines", name="Best Value", line={"shape": "hv"}))
    return fig


def _importances(view: Any, importance: Any, target: Any, complete: list[Any]) -> dict[str, float]:
    if len(complete) < 2:
        return {}
    try:
        return importance.evaluate(view, target=target)
    except (ValueError, RuntimeError) as exc:
        log.info("report: importances not computed: %s", exc)
        return {}


def _importance_section(
    view: Any, importance: Any, target: Any, name: str, complete: list[Any], multi: bool
) -> Section:
    from optuna.visualization import plot_param_importances

    section = Section("importance", "Parameter importances",
                      "How much of the score's variation each parameter explains (fANOVA), over the parameters "
                      "every complete trial has (a conditional parameter counts where it is always set).")
    kwargs: dict[str, Any] = {"evaluator": importance}
    if multi:
        kwargs.update(target=target, target_name=name)
    return _try(section, complete if len(complete) >= 2 else [], lambda: plot_param_importances(view, **kwargs),
                "fewer than 2 complete trials")


def _parallel(view: Any, target: Any, name: str) -> Any:
    from optuna.visualization import plot_parallel_coordinate

    return plot_parallel_coordinate(view, target=target, target_name=name)


def _param_names(trials: list[Any]) -> list[str]:
    names: dict[str, None] = {}
    for trial in trials:
        names.update(dict.fromkeys(trial.params))
    return list(names)


def _slices(view: Any, target: Any, name: str, complete: list[Any]) -> list[Section]:
    from optuna.visualization import plot_slice

    params = _param_names(complete)
    if not params:
        return [_try(Section("slice", "Slice plots", "Each parameter's values against the score."), [], None)]
    return [
        _try(Section(f"slice-{i}", f"Slice: {param}", f"{name} against {param}, one point per complete trial "
                     "that has it (coloured by trial number)."),
             complete, lambda param=param: plot_slice(view, params=[param], target=target, target_name=name))
        for i, param in enumerate(params)
    ]


def _contour(view: Any, target: Any, name: str, complete: list[Any], ranked: dict[str, float]) -> Section:
    from optuna.distributions import CategoricalDistribution
    from optuna.visualization import plot_contour

    numeric: dict[str, int] = {}  # numeric parameter -> how many complete trials have it
    for trial in complete:
        for n, d in trial.distributions.items():
            if not isinstance(d, CategoricalDistribution):
                numeric[n] = numeric.get(n, 0) + 1
    # fANOVA ranks only the parameters every trial has; conditional ones follow, most set first.
    order = [p for p in ranked if p in numeric] + sorted(set(numeric) - set(ranked), key=lambda p: -numeric[p])
    pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]
             if sum(1 for t in complete if a in t.params and b in t.params) >= 2]
    section = Section("contour", "Contour of the two most important numeric parameters", "")
    if not pairs:
        section.note = ("no two numeric parameters were tuned together in two complete trials" if complete
                        else "no trial completed")
        return section
    pair = list(pairs[0])
    section.about = f"{name} over {pair[0]} and {pair[1]}, interpolated between the complete trials that have both."
    minimise = view.directions[0].name == "MINIMIZE"
    return _try(section, complete,
                lambda: _coarsen(plot_contour(view, params=pair, target=target, target_name=name), minimise))


def _coarsen(fig: Any, minimise: bool) -> Any:
    """Optuna's contour colours a grid of every distinct x by every distinct y: 2,000 trials
    make 4 million cells (40 MB of page, and a browser that hangs). Blocks of neighbouring
    values are merged into one cell holding their best score, at most CONTOUR_CELLS a side;
    the trials' points are kept as Optuna drew them."""
    import numpy as np

    for trace in fig.data:
        if trace.type != "contour" or trace.z is None:
            continue
        z = np.asarray(trace.z, dtype=float)
        if max(z.shape) <= CONTOUR_CELLS:
            continue
        rows = np.array_split(np.arange(z.shape[0]), min(CONTOUR_CELLS, z.shape[0]))
        cols = np.array_split(np.arange(z.shape[1]), min(CONTOUR_CELLS, z.shape[1]))
        best = np.nanmin if minimise else np.nanmax
        cells = np.full((len(rows), len(cols)), np.nan)
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                block = z[np.ix_(r, c)]
                if np.isfinite(block).any():
                    cells[i, j] = best(block)
        x, y = np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)
        trace.update(z=cells, x=[float(np.median(x[c])) for c in cols], y=[float(np.median(y[r])) for r in rows])
    return fig


def _pareto(view: Any, objectives: list[str], complete: list[Any]) -> Section:
    from optuna.visualization import plot_pareto_front

    shown = objectives[:3]
    about = "Complete trials by objective; the Pareto front (no trial better on every objective) stands out."
    if len(objectives) > 3:
        about += f" The first three objectives of {len(objectives)}."

    def draw() -> Any:
        if len(objectives) > 3:
            return plot_pareto_front(view, targets=lambda t: t.values[:3], target_names=shown)
        return plot_pareto_front(view, target_names=shown)

    return _try(Section("pareto", "Pareto front", about), complete, draw)


# -- from trials.csv: what only hptune records -------------------------------------------------

def _train_vs_cv(table: Any, metric: str | None) -> Section:
    section = Section("overfit", "Train vs CV score per trial",
                      f"Each complete trial's mean train and mean CV {metric}: a wide gap is overfitting.")
    train, test = f"mean_train_{metric}", f"mean_test_{metric}"
    if metric is None or table.empty or train not in table.columns:
        section.note = "no train scores were recorded (cv.train_scores: false)" if metric else "no trial completed"
        return section
    rows = table[(table["state"] == "COMPLETE") & table[test].notna()]
    if rows.empty:
        section.note = "no trial completed"
        return section
    import plotly.graph_objects as go

    fig = go.Figure()
    for column, label in ((train, "train"), (test, "CV")):
        fig.add_trace(go.Scatter(x=rows["number"], y=rows[column], mode="markers", name=f"{label} {metric}"))
    fig.update_layout(title="Train vs CV score", xaxis_title="trial", yaxis_title=metric)
    section.figure = fig
    return section


def _fold_spread(table: Any, metric: str | None) -> Section:
    section = Section("folds", f"Fold scores of the top {TOP_TRIALS} trials",
                      f"The {metric} of each fold for the best-ranked complete trials: a wide box is a score "
                      "that depends on the split.")
    rank = f"rank_test_{metric}"
    if metric is None or table.empty or rank not in table.columns:
        section.note = "no trial completed"
        return section
    splits = [c for c in table.columns if c.startswith("split") and c.endswith(f"_test_{metric}")]
    top = table[table["state"] == "COMPLETE"].sort_values([rank, "number"]).head(TOP_TRIALS)
    if top.empty or not splits:
        section.note = "no trial completed"
        return section
    import plotly.graph_objects as go

    fig = go.Figure()
    for _, row in top.iterrows():
        scores = [row[c] for c in splits if row[c] == row[c]]  # NaN != NaN: a fold not scored
        fig.add_trace(go.Box(y=scores, name=f"trial {int(row['number'])}", boxpoints="all", showlegend=False))
    fig.update_layout(title=f"Fold {metric} of the top trials (best first)", yaxis_title=metric)
    section.figure = fig
    return section
