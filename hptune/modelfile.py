"""The refitted model's file: written as ``output.model_format`` asks, proved, and loaded back.

``joblib`` writes model.joblib, a pickle: loading one runs whatever code it names, so it is
only as safe as whoever wrote it. ``skops`` writes model.skops with ``skops.io``, which stores
the same objects as data and, when loading, builds only the types it is told to trust. hptune
trusts the types it produces itself (``is_trusted``) and names any other; the caller (``hptune
predict --trust TYPE``) may accept those one by one. Nothing here passes ``trusted=True``.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hptune import results
from hptune.errors import HptuneError


class ModelFileError(HptuneError):
    """Raised when the model cannot be saved in the format asked (skops refuses one of its
    objects), or when a model.skops holds types hptune does not produce and nobody trusted."""


#: Types trusted by exact name: containers and the boosters the xgboost and lightgbm aliases'
#: estimators hold (their classes themselves are checked against ``hptune.estimators.ALIASES``).
TRUSTED_TYPES = frozenset({"collections.OrderedDict", "xgboost.core.Booster", "lightgbm.basic.Booster"})
#: Packages whose every class is trusted: scikit-learn's estimators, transformers and their
#: Cython helpers (trees, KD-trees, distance metrics), and hptune's own.
TRUSTED_PACKAGES = ("sklearn", "hptune")


def dumps(model: Any, model_format: str) -> tuple[str, bytes]:
    """The model's file name and bytes in ``model_format``. A skops file is loaded back before
    it is returned (skops writes some objects it cannot rebuild: a lambda, say), so a file
    that is written is one that loads."""
    if model_format == "joblib":
        import joblib

        buffer = io.BytesIO()
        joblib.dump(model, buffer)
        return results.MODEL_FILE, buffer.getvalue()
    import skops.io as sio

    try:
        data = sio.dumps(model)
        sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    except Exception as exc:  # noqa: BLE001 - whatever skops refuses, the answer is the same
        detail = " ".join(str(exc).split())[:200]
        raise ModelFileError(
            f"the model cannot be saved as skops ({type(exc).__name__}: {detail}); "
            "set output.model_format: joblib to save it as a pickle (every trial is kept in the study)"
        ) from None
    return results.SKOPS_MODEL_FILE, data


def model_format(path: Path) -> str:
    return "skops" if path.name == results.SKOPS_MODEL_FILE else "joblib"


def load(path: Path, trust: Iterable[str] = ()) -> Any:
    """The model in ``path``. A model.skops is built only when each type it needs is one hptune
    produces or is in ``trust``; otherwise ModelFileError names the others. A model.joblib is a
    pickle: it runs code when loaded, so only load one from a run you trust."""
    if model_format(path) == "joblib":
        import joblib

        return joblib.load(path)
    import skops.io as sio

    data = path.read_bytes()
    needed = sio.get_untrusted_types(data=data)
    accepted = set(trust)
    refused = [name for name in needed if name not in accepted and not is_trusted(name)]
    if refused:
        options = " ".join(f"--trust {name}" for name in refused)
        raise ModelFileError(
            f"{path} holds {'types' if len(refused) > 1 else 'a type'} hptune does not produce: "
            f"{', '.join(refused)}; if you trust this run, pass {options}"
        )
    return sio.loads(data, trusted=needed)


def needed_types(path: Path) -> list[str]:
    """The types beyond skops's own defaults that loading the model.skops in ``path`` builds."""
    import skops.io as sio

    return list(sio.get_untrusted_types(file=path))


def is_trusted(name: str) -> bool:
    """Whether ``name`` (``module.Class``, as skops reports it) is a type hptune produces: a
    class of scikit-learn or hptune; a numpy dtype or scalar type or a scipy sparse matrix
    (data, not every numpy or scipy class: numpy.memmap, built from a file, opens and writes
    files); one of ``TRUSTED_TYPES``; or an alias's estimator class (xgboost, lightgbm, catboost)."""
    if name in TRUSTED_TYPES:
        return True
    top = name.split(".", 1)[0]
    if top in TRUSTED_PACKAGES:
        return _defined_as(name) is not None
    if top == "numpy":
        import numpy as np

        found = _defined_as(name)
        return found is not None and issubclass(found, (np.dtype, np.generic))
    if top == "scipy":
        found = _defined_as(name)
        return found is not None and name.startswith("scipy.sparse.") and _is_sparse(found)
    return name in _alias_classes(top)


def _defined_as(name: str) -> type | None:
    """The class ``name`` names, when it is defined under that very name: a class a trusted
    package merely imports (``sklearn.datasets._lfw.Memory`` is joblib's) is not that package's."""
    found = _resolve(name)
    if not isinstance(found, type) or f"{found.__module__}.{found.__qualname__}" != name:
        return None
    return found


def _resolve(name: str) -> Any:
    """The object ``module.path.Qual.Name`` names (None when it does not exist): the longest
    importable module prefix, then attributes. Only called for trusted packages' names, and
    never for a dunder segment: importing ``hptune.__main__`` (or numpy.f2py's) runs a CLI."""
    parts = name.split(".")
    # No dunder module (importing ``hptune.__main__`` runs the CLI), and no test helpers
    # (``sklearn.conftest`` imports pytest): a model never needs them.
    if any(part.startswith("__") or part in ("conftest", "tests") for part in parts):
        return None
    for cut in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute, None)
        return found
    return None


def _is_sparse(cls: type) -> bool:
    from scipy import sparse

    return issubclass(cls, (sparse.spmatrix, sparse.sparray))


def _alias_classes(top: str) -> set[str]:
    """The defining names (``xgboost.sklearn.XGBClassifier``) of the aliases' estimator classes
    in the package ``top``; importing them only when a model names that package."""
    from hptune.estimators import ALIASES

    paths = {path for target in ALIASES.values() for path in ((target,) if isinstance(target, str) else target)}
    names = set()
    for path in sorted(p for p in paths if p.split(".", 1)[0] == top):
        cls = _resolve(path)
        if isinstance(cls, type):
            names.add(f"{cls.__module__}.{cls.__qualname__}")
    return names
