"""Scikit-learn scorers: which exist, and which task each one suits.

Every scikit-learn scorer is "greater is better" (losses are negated, ``neg_...``), so the
study always maximises and ranks are comparable with ``cv_results_``.
"""

from __future__ import annotations

DEFAULT_METRIC = {"classification": "accuracy", "regression": "r2"}

_TASK_BY_MODULE = {
    "sklearn.metrics._classification": "classification",
    "sklearn.metrics._ranking": "classification",
    "sklearn.metrics._regression": "regression",
    "sklearn.metrics.cluster._supervised": "clustering",
    "sklearn.metrics.cluster._unsupervised": "clustering",
}


def scorer_names() -> list[str]:
    from sklearn.metrics import get_scorer_names

    return sorted(get_scorer_names())


def metric_task(name: str) -> str | None:
    """The task a scorer is meant for, or None when we cannot tell (then we allow it)."""
    from sklearn.metrics import get_scorer

    score_func = getattr(get_scorer(name), "_score_func", None)
    return _TASK_BY_MODULE.get(getattr(score_func, "__module__", ""))


def check_metric(name: str, task: str | None) -> str | None:
    """Return a problem with metric ``name`` for ``task``, or None when it is fine."""
    names = scorer_names()
    if name not in names:
        from difflib import get_close_matches

        close = get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; see sklearn.metrics.get_scorer_names()"
        return f"unknown metric {name!r}{hint}"
    suited = metric_task(name)
    if task is not None and suited is not None and suited != task:
        return f"metric {name!r} is for {suited}, but the task is {task}"
    return None
