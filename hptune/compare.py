"""What ``hptune compare A B`` says about two results: their parameters side by side, and
whether the CV score difference is larger than the noise of the folds.

Each side is a run folder or a ``best.yaml``. The fold scores of its best trial come from the
trials.csv beside it (a committed best.yaml alone has none). When both runs scored on the same
folds (``run.json``'s ``data.folds_sha256`` agree) the difference is paired fold by fold; else
the two sides' fold scores are independent samples. Either way the variance is Nadeau and
Bengio's correction for cross-validation (folds share training rows, so the plain standard
error is too small): the fold variance times (1/n + n_test/n_train) for n fold scores, with the
folds' own n_test/n_train (run.json's ``data.test_train_ratio``: 1/(k-1) for k-fold CV, repeated
or not; 1/(n-1) for runs that did not record it). "Larger than the noise" means more than two standard
errors, about a 95% two-sided test.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hptune.errors import HptuneError
from hptune.results import BEST_FILE, RUN_FILE, TRIALS_FILE

#: How many standard errors a difference must exceed to be called larger than the noise.
NOISE_MULTIPLE = 2.0


class CompareError(HptuneError):
    """Raised when a side cannot be read or the two cannot be compared."""


@dataclass
class Side:
    """One result: its best.yaml, and its best trial's fold scores when they can be found."""

    label: str
    best: dict[str, Any]
    fold_scores: list[float] | None = None
    folds_sha256: str | None = None
    test_train_ratio: float | None = None  # run.json's data.test_train_ratio (None: not recorded)


@dataclass
class Comparison:
    a: Side
    b: Side
    metric: str
    params: list[tuple[str, Any, Any]] = field(default_factory=list)  # (name, A's, B's), all names
    cv_difference: float = 0.0  # B minus A, "greater is better"
    standard_error: float | None = None  # None: no fold scores for one side
    paired: bool = False
    test_difference: float | None = None

    @property
    def beyond_noise(self) -> bool | None:
        if self.standard_error is None:
            return None
        return abs(self.cv_difference) > NOISE_MULTIPLE * self.standard_error


def compare(a: Path, b: Path) -> Comparison:
    side_a, side_b = read_side(a), read_side(b)
    metric = side_a.best.get("metric")
    if metric != side_b.best.get("metric"):
        raise CompareError(f"{a} is scored by {metric!r} and {b} by {side_b.best.get('metric')!r}: "
                           "CV scores of different metrics cannot be compared")
    names = sorted(set(side_a.best["params"]) | set(side_b.best["params"]))
    missing = object()
    params = [(name, side_a.best["params"].get(name, missing), side_b.best["params"].get(name, missing)) for name in names]
    result = Comparison(side_a, side_b, metric,
                        [(n, None if x is missing else x, None if y is missing else y) for n, x, y in params],
                        float(side_b.best["cv_score"]) - float(side_a.best["cv_score"]))
    if side_a.best.get("test_score") is not None and side_b.best.get("test_score") is not None:
        result.test_difference = float(side_b.best["test_score"]) - float(side_a.best["test_score"])
    fa, fb = side_a.fold_scores, side_b.fold_scores
    if fa and fb and len(fa) > 1 and len(fb) > 1:
        result.paired = side_a.folds_sha256 is not None and side_a.folds_sha256 == side_b.folds_sha256 and len(fa) == len(fb)
        ra, rb = side_a.test_train_ratio, side_b.test_train_ratio
        if result.paired:
            differences = [y - x for x, y in zip(fa, fb, strict=True)]
            result.standard_error = math.sqrt(corrected_variance(differences, ra))
        else:
            result.standard_error = math.sqrt(corrected_variance(fa, ra) + corrected_variance(fb, rb))
    return result


def corrected_variance(scores: list[float], test_train_ratio: float | None = None) -> float:
    """The variance of the mean of n fold scores, with Nadeau and Bengio's correction:
    the scores' variance times (1/n + n_test/n_train). ``test_train_ratio`` is the folds' own
    (``folds.test_train_ratio``; run.json's ``data.test_train_ratio``); without it, 1/(n-1), as
    for n plain folds (runs written before hptune recorded it)."""
    n = len(scores)
    mean = sum(scores) / n
    variance = sum((s - mean) ** 2 for s in scores) / (n - 1)
    return variance * (1 / n + (1 / (n - 1) if test_train_ratio is None else test_train_ratio))


def read_side(path: Path) -> Side:
    """A run folder (its best.yaml, run.json and trials.csv, checked against each other) or a
    best.yaml file (with the fold scores from a trials.csv beside it, if there is one)."""
    import yaml

    if path.is_dir():
        from hptune.outputs import load_run

        finished = load_run(path)
        if finished.best is None:
            raise CompareError(f"{path} has no best trial (status {finished.run.get('status')!r}): nothing to compare")
        data = finished.run.get("data") or {}
        return Side(str(path), finished.best, _fold_scores(finished.table, finished.best),
                    data.get("folds_sha256"), data.get("test_train_ratio"))
    try:
        best = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CompareError(f"{path} does not exist: give a run folder or a best.yaml") from None
    except yaml.YAMLError as exc:
        raise CompareError(f"{path} is not YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(best, dict) or not isinstance(best.get("params"), dict) or "cv_score" not in best:
        raise CompareError(f"{path} is not a best.yaml (no `params:` and `cv_score:`)")
    side = Side(str(path), best)
    beside = path.parent / TRIALS_FILE
    if path.name == BEST_FILE and beside.exists():
        import pandas as pd

        side.fold_scores = _fold_scores(pd.read_csv(beside), best)
        try:
            data = json.loads((path.parent / RUN_FILE).read_text()).get("data") or {}
            side.folds_sha256, side.test_train_ratio = data.get("folds_sha256"), data.get("test_train_ratio")
        except (OSError, ValueError):
            pass
    return side


def _fold_scores(table: Any, best: dict[str, Any]) -> list[float] | None:
    """The best trial's test score on each fold, from trials.csv."""
    metric, number = best.get("metric"), best.get("trial")
    rows = table[table["number"] == number] if "number" in table.columns else table.iloc[0:0]
    if rows.empty:
        return None
    row = rows.iloc[0]
    scores = []
    k = 0
    while f"split{k}_test_{metric}" in table.columns:
        value = row[f"split{k}_test_{metric}"]
        if value != value:  # NaN: a fold the trial did not run
            return None
        scores.append(float(value))
        k += 1
    return scores or None
