"""``hptune init``: a commented starter experiment for a data set and a model.

The default search spaces live here and nowhere else: one per model alias, ranges that are
sensible on standardised tabular data (log scales for regularisation and learning rates, the
depths and leaf sizes that matter), small enough that 50 TPE trials explore them. Without a
model, the starter uses histogram gradient boosting: fast, strong on tabular data, and it takes
missing values and needs no scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hptune.errors import UsageError

#: A model alias's search space, as the file writes it (flow-style YAML per parameter).
SPACES: dict[str, dict[str, str]] = {
    "hist_gradient_boosting": {
        "learning_rate": "{type: float, low: 0.01, high: 0.3, log: true}",
        "max_leaf_nodes": "{type: int, low: 8, high: 128, log: true}",
        "min_samples_leaf": "{type: int, low: 5, high: 100, log: true}",
        "l2_regularization": "{type: float, low: 1.0e-6, high: 10, log: true}",
    },
    "random_forest": {
        "n_estimators": "{type: int, low: 50, high: 400, log: true}",
        "max_depth": "{type: int, low: 3, high: 30}",
        "min_samples_leaf": "{type: int, low: 1, high: 20, log: true}",
        "max_features": "[sqrt, log2, 0.5, 1.0]",
    },
    "extra_trees": {
        "n_estimators": "{type: int, low: 50, high: 400, log: true}",
        "max_depth": "{type: int, low: 3, high: 30}",
        "min_samples_leaf": "{type: int, low: 1, high: 20, log: true}",
    },
    "logistic_regression": {"C": "{type: float, low: 1.0e-3, high: 100, log: true}"},
    "ridge": {"alpha": "{type: float, low: 1.0e-3, high: 1000, log: true}"},
    "lasso": {"alpha": "{type: float, low: 1.0e-4, high: 10, log: true}"},
    "elastic_net": {
        "alpha": "{type: float, low: 1.0e-4, high: 10, log: true}",
        "l1_ratio": "{type: float, low: 0.05, high: 0.95}",
    },
    "svc": {
        "C": "{type: float, low: 0.01, high: 1000, log: true}",
        "gamma": "{type: float, low: 1.0e-5, high: 1, log: true}",
    },
    "svr": {
        "C": "{type: float, low: 0.01, high: 1000, log: true}",
        "gamma": "{type: float, low: 1.0e-5, high: 1, log: true}",
        "epsilon": "{type: float, low: 0.01, high: 10, log: true}",
    },
    "knn": {
        "n_neighbors": "{type: int, low: 1, high: 50, log: true}",
        "weights": "[uniform, distance]",
    },
    "decision_tree": {
        "max_depth": "{type: int, low: 2, high: 20}",
        "min_samples_leaf": "{type: int, low: 1, high: 50, log: true}",
    },
    "mlp": {
        "alpha": "{type: float, low: 1.0e-6, high: 1.0e-1, log: true}",
        "learning_rate_init": "{type: float, low: 1.0e-4, high: 1.0e-1, log: true}",
        "hidden_layer_sizes": "[[64], [128], [64, 32]]",
    },
}
#: Fixed parameters a starter needs to run well as it is.
FIXED: dict[str, str] = {"logistic_regression": "{max_iter: 2000}", "mlp": "{max_iter: 500, early_stopping: true}"}
#: Aliases that only make sense for one task.
TASK_OF = {"logistic_regression": "classification", "svc": "classification", "ridge": "regression",
           "lasso": "regression", "elastic_net": "regression", "svr": "regression"}
DEFAULT_MODEL = "hist_gradient_boosting"


@dataclass
class Starter:
    text: str  # the experiment file
    task: str
    model: str
    metric: str


def starter(dataset: str | None, data: Path | None, target: str | None, model: str | None, output: Path) -> Starter:
    """The starter experiment for the bundled ``dataset`` or the file ``data`` (its column
    ``target``), with ``model``'s default space; paths are written relative to ``output``."""
    import os

    from hptune.data import BUNDLED_TASKS, _read_table, infer_task

    notes: list[str] = []
    if (dataset is None) == (data is None):
        raise UsageError("give --dataset NAME or --data FILE --target COLUMN")
    if dataset is not None:
        if dataset not in BUNDLED_TASKS:
            raise UsageError(f"--dataset: expected one of {', '.join(BUNDLED_TASKS)}, found {dataset!r}")
        task, y, source = BUNDLED_TASKS[dataset], None, f"dataset: {dataset}"
    else:
        if target is None:
            raise UsageError("--data needs --target, the column to predict")
        frame, _ = _read_table(data, str(data))
        if target not in frame.columns:
            raise UsageError(f"--target: {data} has no column {target!r}")
        y = frame[target]
        task = infer_task(y)
        path = os.path.relpath(data.resolve(), output.resolve().parent)
        source = f"path: {path}\n  target: {target}"
        from hptune.datacheck import suspicious_columns

        notes = suspicious_columns(frame.drop(columns=[target]), y, target)
    name = model or DEFAULT_MODEL
    if name not in SPACES:
        raise UsageError(f"--model: no starter space for {name!r}; models with one: {', '.join(sorted(SPACES))}")
    if TASK_OF.get(name, task) != task:
        raise UsageError(f"--model {name} is for {TASK_OF[name]}, but the data's task is {task}")
    metric = _metric(task, y, dataset)
    return Starter(_text(output, source, task, name, metric, notes, data is not None), task, name, metric)


def _metric(task: str, y: Any, dataset: str | None) -> str:
    """ROC AUC for two classes (it ranks, so it needs no threshold or positive class), F1 macro
    for more (every class counts), RMSE for regression (in the target's own units)."""
    if task == "regression":
        return "neg_root_mean_squared_error"
    classes = {"breast_cancer": 2}.get(dataset or "", 3) if y is None else y.nunique()
    return "roc_auc" if classes == 2 else "f1_macro"


def _text(output: Path, source: str, task: str, model: str, metric: str, notes: list[str], from_file: bool) -> str:
    stem = output.stem if output.stem not in ("", "experiment") else "experiment"
    lines = [
        "# yaml-language-server: $schema=hptune.schema.json",
        f"# A starter experiment written by `hptune init`: {model} for {task}. Edit it, then",
        f"#   hptune validate {output.name} && hptune run {output.name}",
        "# Every key, with its default: the README's 'The experiment file'.",
        f"name: {stem}",
        "seed: 0",
        "data:",
        f"  {source}",
    ]
    if from_file:
        lines.append("  # drop: [id]                  # columns to leave out (an id is kept beside predictions)")
    for note in notes:
        lines.append(f"  # validate says: {note}")
    lines += [
        "  test_size: 0.2                # held out, scored once on the refitted model",
        f"task: {task}",
        "model:",
        f"  estimator: {model}",
    ]
    if model in FIXED:
        lines.append(f"  params: {FIXED[model]}")
    lines.append("search_space:                   # the default space for this model (hptune/starters.py)")
    lines += [f"  {param}: {space}" for param, space in SPACES[model].items()]
    lines += [
        f"metric: {metric}",
        "cv: {folds: 5}",
        "strategy:",
        "  kind: bayesian                # TPE",
        "  n_trials: 50",
        "  # n_jobs: -1                  # all cores",
        "",
    ]
    return "\n".join(lines)
