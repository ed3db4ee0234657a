"""Scikit-learn scorers: which exist, and which task each one suits.

Every scikit-learn scorer is "greater is better" (losses are negated, ``neg_...``), so the
study always maximises and ranks are comparable with ``cv_results_``.
"""

from __future__ import annotations

from typing import Any

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


# -- binary metrics: the positive class, and targets with more than two classes ------------

def uses_pos_label(name: str) -> bool:
    """Whether scorer ``name`` scores one class as positive (f1, precision, average_precision,
    neg_brier_score, ...). The averaged variants (f1_macro, ...) set ``pos_label=None``."""
    import inspect

    from sklearn.metrics import get_scorer

    scorer = get_scorer(name)
    score_func = getattr(scorer, "_score_func", None)
    if score_func is None:
        return False
    return "pos_label" in inspect.signature(score_func).parameters and "pos_label" not in scorer._kwargs


def build_scorer(estimator: Any, metrics: list[str], positive_class: Any = None) -> Any:
    """One multi-metric scorer for ``metrics`` (computing each prediction once for all), with
    ``positive_class`` as the ``pos_label`` of the metrics that score a positive class."""
    from sklearn.metrics import check_scoring

    if positive_class is None:
        return check_scoring(estimator, scoring=list(metrics))  # exactly as before the key existed
    return check_scoring(estimator, scoring={name: _with_pos_label(name, positive_class) for name in metrics})


def _with_pos_label(name: str, positive_class: Any) -> Any:
    from sklearn.metrics import get_scorer, make_scorer

    scorer = get_scorer(name)
    if not uses_pos_label(name):
        return scorer
    # make_scorer has no "copy with other kwargs": rebuild it from the named scorer's parts.
    return make_scorer(
        scorer._score_func,
        response_method=scorer._response_method,
        greater_is_better=scorer._sign > 0,
        **{**scorer._kwargs, "pos_label": positive_class},
    )


def check_metric_labels(name: str, y: Any, positive_class: Any = None) -> str | None:
    """A problem with scoring ``y``'s labels by metric ``name``, or None.

    The scorer the trials will use scores a prior-predicting dummy on one row of each label:
    what cannot score that fails every trial, so it is refused here, with the reason said in
    the file's terms. The probe follows the installed scikit-learn (which metrics accept more
    than two classes changes between releases) instead of a list kept by hand.
    """
    from hptune.data import show_labels

    labels = y.drop_duplicates()
    problem = _probe(name, labels, positive_class)
    if problem is None:
        return None
    shown = show_labels(labels.tolist())
    if name.endswith("_samples"):
        base = name.removesuffix("_samples")
        return (f"{name!r} averages over each row's labels, for multilabel targets; hptune's have one label "
                f"a row{_variants(base, labels, positive_class)}")
    if len(labels) > 2:
        return f"{name!r} scores two classes, but the target has {len(labels)} ({shown}){_variants(name, labels, positive_class)}"
    if positive_class is None and uses_pos_label(name):
        return f"{name!r} needs to know which class is positive; the target's labels are {shown}: set data.positive_class"
    return f"{name!r} cannot score this target (labels {shown}): {problem}"


def _probe(name: str, labels: Any, positive_class: Any) -> str | None:
    import warnings

    import numpy as np
    import pandas as pd
    from sklearn.dummy import DummyClassifier

    y = pd.concat([labels, labels], ignore_index=True)
    X = np.zeros((len(y), 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero division and the like: the probe's predictions are dummy
        try:
            dummy = DummyClassifier(strategy="prior").fit(X, y)
            build_scorer(dummy, [name], positive_class)(dummy, X, y)
        except (ValueError, TypeError) as exc:
            return " ".join(str(exc).split()) or type(exc).__name__
    return None


def _variants(name: str, labels: Any, positive_class: Any) -> str:
    """``: use f1_macro, f1_micro or f1_weighted``: the variants of ``name`` that score ``labels``."""
    found = [
        other for other in scorer_names()
        if other.startswith(f"{name}_") and not other.endswith("_samples") and _probe(other, labels, positive_class) is None
    ]
    if not found:
        return ""
    return ": use " + (found[0] if len(found) == 1 else f"{', '.join(found[:-1])} or {found[-1]}")


def check_positive_class(value: Any, y: Any) -> str | None:
    """A problem with ``data.positive_class: value`` for target ``y``, or None.

    YAML gives a bool, an int, a float or a string; the label must match in kind as well as
    in value (True == 1 in Python, and YAML reads an unquoted ``yes`` as true).
    """
    from difflib import get_close_matches

    import numpy as np
    from pandas.api.types import is_numeric_dtype

    from hptune.data import show_labels, show_value

    labels = y.drop_duplicates().tolist()
    shown = show_labels(labels)
    if len(labels) != 2:
        return f"applies to a target with two classes; this one has {len(labels)}: {shown}"
    if all(isinstance(v, (bool, np.bool_)) for v in labels):
        kind_ok = isinstance(value, bool)
    elif is_numeric_dtype(y):
        if isinstance(value, bool):
            return f"{show_value(value)} is a boolean, but the target's labels are numbers: {shown}"
        if isinstance(value, str):
            return f"{value!r} is text, but the target's labels are numbers: {shown}; write it without quotes"
        kind_ok = True
    else:
        if isinstance(value, bool):
            spelled = {True: ("yes", "true", "on", "y"), False: ("no", "false", "off", "n")}[value]
            guess = next((v for v in labels if isinstance(v, str) and v.lower() in spelled), None)
            quote = f"positive_class: {guess!r}" if guess is not None else "positive_class: 'label'"
            return (f"{show_value(value)} is a boolean (YAML reads unquoted yes, no, on, off, true and false as "
                    f"booleans), but the target's labels are text: {shown}; quote it: {quote}")
        if not isinstance(value, str) and str(value) in labels:
            return f"{value!r} is a number, but the target's labels are text: {shown}; quote it: positive_class: '{value}'"
        kind_ok = isinstance(value, str)
    if kind_ok and value in labels:
        return None
    close = get_close_matches(str(value), [str(v) for v in labels], n=1) if isinstance(value, str) else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{show_value(value)} is not one of the target's labels: {shown}{hint}"
