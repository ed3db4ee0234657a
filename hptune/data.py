"""Load the data an experiment names, fingerprint it, and split off the held-out test set."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hptune.errors import DataError
from hptune.spec import DataSpec

#: Bundled data sets and the task each one is.
BUNDLED_TASKS = {
    "iris": "classification",
    "wine": "classification",
    "breast_cancer": "classification",
    "digits": "classification",
    "diabetes": "regression",
}


@dataclass
class Dataset:
    """Features, target and (optionally) groups, as pandas objects with a shared index."""

    X: Any
    y: Any
    groups: Any | None
    sha256: str
    source: str

    @property
    def n_rows(self) -> int:
        return len(self.y)


class DataFieldError(DataError):
    """A data problem that belongs to one key of the ``data`` section (for file:line messages)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def load_dataset(spec: DataSpec, base_dir: Path) -> Dataset:
    """Load the bundled data set or the file ``spec`` names; paths are relative to ``base_dir``."""
    if spec.dataset is not None:
        return _load_bundled(spec.dataset)
    assert spec.path is not None and spec.target is not None  # guaranteed by DataSpec
    path = (base_dir / spec.path).resolve()
    frame, digest = _read_table(path, spec.path)
    missing = [c for c in [spec.target, *spec.drop, spec.groups] if c and c not in frame.columns]
    if missing:
        from difflib import get_close_matches

        problems = []
        for column in missing:
            close = get_close_matches(column, [str(c) for c in frame.columns], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{column!r}{hint}")
        field = "target" if spec.target in missing else ("groups" if spec.groups in missing else "drop")
        raise DataFieldError(
            field,
            f"{spec.path} has no column {', '.join(problems)}; "
            f"columns are {', '.join(map(str, frame.columns[:12]))}"
            + (" ..." if len(frame.columns) > 12 else ""),
        )
    frame = frame[frame[spec.target].notna()].reset_index(drop=True)
    if frame.empty:
        raise DataFieldError("target", f"target column {spec.target!r} has no values")
    y = frame[spec.target]
    groups = frame[spec.groups] if spec.groups else None
    X = frame.drop(columns=[c for c in {spec.target, spec.groups, *spec.drop} if c])
    if X.shape[1] == 0:
        raise DataFieldError("drop", "no feature columns are left after removing target, groups and drop")
    return Dataset(X, y, groups, digest, spec.path)


def _read_table(path: Path, shown: str) -> tuple[Any, str]:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise DataFieldError("path", f"{shown}: expected a .csv or .parquet file, found {suffix or 'no extension'!r}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFieldError("path", f"data file not found: {shown} (paths are relative to the experiment file)") from None
    except IsADirectoryError:
        raise DataFieldError("path", f"{shown} is a directory, expected a .csv or .parquet file") from None
    except OSError as exc:
        raise DataFieldError("path", f"cannot read {shown}: {exc.strerror}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if not raw.strip():
        raise DataFieldError("path", f"{shown} is empty")
    import io

    try:
        if suffix == ".csv":
            frame = pd.read_csv(io.BytesIO(raw))
        else:
            frame = pd.read_parquet(io.BytesIO(raw))
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for a malformed file
        kind = "CSV" if suffix == ".csv" else "Parquet"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataFieldError("path", f"{shown} is not a readable {kind} file: {reason}") from None
    if frame.empty:
        raise DataFieldError("path", f"{shown} has a header but no rows")
    return frame, digest


def _load_bundled(name: str) -> Dataset:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
    X, y = bunch.data, bunch.target
    digest = hashlib.sha256()
    digest.update(X.to_numpy().tobytes())
    digest.update(y.to_numpy().tobytes())
    return Dataset(X, y, None, digest.hexdigest(), f"sklearn.datasets.load_{name}")


#: A numeric target with more distinct values than this is taken as a regression target.
MAX_CLASSES_INFERRED = 20


def infer_task(y: Any) -> str:
    """``classification`` for text, booleans, or numbers with few distinct values; else ``regression``.

    scikit-learn's ``type_of_target`` calls integral floats (151.0, 75.0, ...) "multiclass",
    which would make most regression targets read from a file look like classes.
    """
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if not is_numeric_dtype(y) or is_bool_dtype(y):
        return "classification"
    values = y.dropna()
    if (values != values.round()).any():
        return "regression"
    return "classification" if values.nunique() <= MAX_CLASSES_INFERRED else "regression"


@dataclass
class Split:
    X_train: Any
    y_train: Any
    groups_train: Any | None
    X_test: Any | None
    y_test: Any | None


def split_holdout(data: Dataset, test_size: float, seed: int, task: str, ordered: bool = False) -> Split:
    """Hold out ``test_size`` of the rows: stratified for classification, whole groups if
    grouped, and the last rows when the data is ordered in time (``ordered``)."""
    if test_size == 0:
        return Split(data.X, data.y, data.groups, None, None)
    import numpy as np
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    rows = np.arange(data.n_rows)
    if ordered:
        # Time series: the test set is the future, never rows shuffled in from the past.
        cut = data.n_rows - max(1, int(round(data.n_rows * test_size)))
        train, test = rows[:cut], rows[cut:]
    elif data.groups is not None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        train, test = next(splitter.split(rows, groups=data.groups))
    else:
        stratify = data.y if task == "classification" else None
        try:
            train, test = train_test_split(rows, test_size=test_size, random_state=seed, stratify=stratify)
        except ValueError:
            # Too few rows of some class to stratify; a plain split is still a fair hold-out.
            train, test = train_test_split(rows, test_size=test_size, random_state=seed)
    train, test = np.sort(train), np.sort(test)
    take = lambda obj, idx: None if obj is None else obj.iloc[idx].reset_index(drop=True)  # noqa: E731
    return Split(take(data.X, train), take(data.y, train), take(data.groups, train), take(data.X, test), take(data.y, test))


def show_value(value: Any) -> str:
    """A label as the experiment file would write it: 'text' quoted, numbers bare, true/false."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # a NumPy scalar: 1, not np.int64(1)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def show_labels(labels: Any, limit: int = 10) -> str:
    """Sorted labels, ``'no', 'yes'``; long lists end with how many more there are."""
    values = sorted(labels, key=lambda v: (str(type(v)), v))
    shown = ", ".join(show_value(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")
