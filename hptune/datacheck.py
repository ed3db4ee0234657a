"""Feature columns that are probably a mistake: warned about at validate and run, never refused.

Each finding is cheap on a big table: a column is first examined on an evenly spaced sample
of at most ``SAMPLE_ROWS`` rows, and read whole only to confirm what the sample suggests.
"""

from __future__ import annotations

from typing import Any

from hptune.data import show_value

#: A text column with a distinct value on at least this share of its (non-empty) rows is an
#: identifier: one-hot encoding it makes a column per row, which costs time and memory and
#: generalises to no new row. 0.95 rather than 1.0: identifiers often repeat a little (a
#: customer with two orders), while real categories repeat a lot.
IDENTIFIER_SHARE = 0.95
#: Below this many non-empty rows, distinct text says little (30 city names in 30 rows).
IDENTIFIER_MIN_ROWS = 50
#: Rows a column is first examined on.
SAMPLE_ROWS = 100_000


def suspicious_columns(X: Any, y: Any, target: str) -> list[str]:
    """One message per suspicious feature column of ``X`` (``y`` is the target column)."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    step = max(1, -(-len(X) // SAMPLE_ROWS))
    sample_y = y.iloc[::step]
    messages = []
    for name in X.columns:
        column = X[name]
        sample = column.iloc[::step]
        if sample.nunique(dropna=False) <= 1 and column.nunique(dropna=False) <= 1:
            value = column.iloc[0]
            held = "is empty on every row" if value != value else f"holds one value on every row ({show_value(value)})"
            messages.append(f"column {name!r} {held}: it cannot help the model; add it to data.drop")
            continue
        if _same(sample, sample_y) and _same(column, y):
            messages.append(f"column {name!r} is a copy of the target {target!r}: a model would learn it and "
                            "nothing else; add it to data.drop")
            continue
        if is_numeric_dtype(column) or is_bool_dtype(column):
            continue
        filled = sample.dropna()
        distinct = filled.nunique()
        if len(filled) >= IDENTIFIER_MIN_ROWS and distinct >= IDENTIFIER_SHARE * len(filled):
            rows = f"{len(filled):,} rows" if step == 1 else f"a sample of {len(filled):,} of {len(column):,} rows"
            messages.append(f"column {name!r} looks like an identifier (text, {distinct:,} distinct values in "
                            f"{rows}): one-hot encoding it costs time and memory and teaches the model nothing; "
                            "add it to data.drop")
    return messages


def text_without_preprocessing(X: Any, most: int = 4) -> list[str]:
    """With ``preprocessing: none``, the columns that are neither numbers nor booleans (which
    ``auto`` would encode): almost no estimator fits them, so every trial would fail."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    text = [str(name) for name in X.columns if not (is_numeric_dtype(X[name]) or is_bool_dtype(X[name]))]
    if not text:
        return []
    names = ", ".join(repr(c) for c in text[:most]) + (f" and {len(text) - most} more" if len(text) > most else "")
    return [f"is none, but columns {names} hold text, which most estimators cannot fit (every trial would fail): "
            "use preprocessing: auto, or add them to data.drop"]


def _same(column: Any, y: Any) -> bool:
    """Equal values row by row, whatever the dtypes (1 and 1.0 are the same label)."""
    import numpy as np

    if column.isna().any():
        return False  # the target has no empty rows (they are dropped when loading)
    try:
        return bool(np.array_equal(column.to_numpy(dtype=object), y.to_numpy(dtype=object)))
    except (TypeError, ValueError):
        return False
