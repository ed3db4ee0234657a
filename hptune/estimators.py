"""Find the estimator a spec names, and build the pipeline that is tuned.

Only modules on an allow-list can be imported: an experiment file must not be able to make
hptune import ``os`` or ``subprocess``. The check runs on the name, before any import.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Top-level packages a spec may import estimators from without ``--allow-module``.
ALLOWED_MODULES = ("sklearn", "xgboost", "lightgbm", "catboost")

#: Short names; a pair means (classifier, regressor), chosen by the task.
ALIASES: dict[str, str | tuple[str, str]] = {
    "svc": "sklearn.svm.SVC",
    "svr": "sklearn.svm.SVR",
    "linear_svc": "sklearn.svm.LinearSVC",
    "linear_svr": "sklearn.svm.LinearSVR",
    "logistic_regression": "sklearn.linear_model.LogisticRegression",
    "linear_regression": "sklearn.linear_model.LinearRegression",
    "ridge": "sklearn.linear_model.Ridge",
    "ridge_classifier": "sklearn.linear_model.RidgeClassifier",
    "lasso": "sklearn.linear_model.Lasso",
    "elastic_net": "sklearn.linear_model.ElasticNet",
    "sgd_classifier": "sklearn.linear_model.SGDClassifier",
    "sgd_regressor": "sklearn.linear_model.SGDRegressor",
    "naive_bayes": "sklearn.naive_bayes.GaussianNB",
    "knn": ("sklearn.neighbors.KNeighborsClassifier", "sklearn.neighbors.KNeighborsRegressor"),
    "decision_tree": ("sklearn.tree.DecisionTreeClassifier", "sklearn.tree.DecisionTreeRegressor"),
    "random_forest": (
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble.RandomForestRegressor",
    ),
    "extra_trees": ("sklearn.ensemble.ExtraTreesClassifier", "sklearn.ensemble.ExtraTreesRegressor"),
    "gradient_boosting": (
        "sklearn.ensemble.GradientBoostingClassifier",
        "sklearn.ensemble.GradientBoostingRegressor",
    ),
    "hist_gradient_boosting": (
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "sklearn.ensemble.HistGradientBoostingRegressor",
    ),
    "adaboost": ("sklearn.ensemble.AdaBoostClassifier", "sklearn.ensemble.AdaBoostRegressor"),
    "mlp": ("sklearn.neural_network.MLPClassifier", "sklearn.neural_network.MLPRegressor"),
    "xgboost": ("xgboost.XGBClassifier", "xgboost.XGBRegressor"),
    "lightgbm": ("lightgbm.LGBMClassifier", "lightgbm.LGBMRegressor"),
    "catboost": ("catboost.CatBoostClassifier", "catboost.CatBoostRegressor"),
}

#: Models whose results depend on feature scale; ``preprocessing: auto`` standardises for them.
_SCALE_SENSITIVE_MODULES = (
    "sklearn.svm",
    "sklearn.linear_model",
    "sklearn.neighbors",
    "sklearn.neural_network",
    "sklearn.gaussian_process",
    "sklearn.kernel_ridge",
)

#: Pipeline step names; tuned names are the estimator's own, mapped to ``model__<name>``.
MODEL_STEP = "model"
PREPROCESS_STEP = "preprocess"


class EstimatorLookupError(ValueError):
    """The estimator named in a spec cannot be used; the message says why."""


def resolve_name(name: str, task: str | None) -> str:
    """Turn an alias into a dotted path (a dotted path is returned unchanged)."""
    target = ALIASES.get(name)
    if target is None:
        return name
    if isinstance(target, tuple):
        return target[1] if task == "regression" else target[0]
    return target


def import_estimator(dotted_path: str, allow_modules: tuple[str, ...] = ()) -> type:
    """Import and return the estimator class at ``dotted_path``, refusing other modules."""
    if "." not in dotted_path:
        from difflib import get_close_matches

        hint = get_close_matches(dotted_path, ALIASES, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        raise EstimatorLookupError(
            f"unknown estimator {dotted_path!r}: expected an alias (svc, random_forest, ...) "
            f"or a dotted path such as sklearn.svm.SVC{suggestion}"
        )
    module_name, _, class_name = dotted_path.rpartition(".")
    top = module_name.split(".")[0]
    allowed = ALLOWED_MODULES + tuple(allow_modules)
    if top not in allowed:
        raise EstimatorLookupError(
            f"estimator {dotted_path!r} is outside the allowed modules ({', '.join(allowed)}); "
            f"pass --allow-module {top} to trust it"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EstimatorLookupError(f"cannot import {module_name!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise EstimatorLookupError(f"module {module_name!r} has no {class_name!r}")
    if not isinstance(cls, type) or not all(hasattr(cls, m) for m in ("fit", "get_params")):
        raise EstimatorLookupError(
            f"{dotted_path!r} is not a scikit-learn-compatible estimator (no fit/get_params)"
        )
    return cls


def default_params(cls: type) -> dict[str, Any]:
    """The parameters ``cls`` accepts, with their defaults."""
    try:
        return cls().get_params(deep=False)
    except Exception as exc:  # noqa: BLE001 - any failure here means "cannot be used as is"
        raise EstimatorLookupError(
            f"{cls.__module__}.{cls.__name__} cannot be created with default arguments: {exc}"
        ) from None


def takes_kwargs(cls: type) -> bool:
    """Whether ``cls(**params)`` takes names ``get_params()`` does not list (LightGBM's and
    XGBoost's scikit-learn classes pass them on to the library as they are)."""
    import inspect

    try:
        parameters = inspect.signature(cls.__init__).parameters.values()
    except (TypeError, ValueError):  # a C extension without a signature: assume the strict case
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def is_scale_sensitive(cls: type) -> bool:
    return cls.__module__.startswith(_SCALE_SENSITIVE_MODULES)


def build_pipeline(cls: type, fixed_params: dict[str, Any], preprocessing: str, X: Any) -> Any:
    """A Pipeline of the preprocessing ``preprocessing`` asks for, then ``cls(**fixed_params)``.

    The pipeline is always a Pipeline (one step with ``preprocessing: none``) so that
    parameter names map the same way, ``model__<name>``, whatever the preprocessing.
    """
    from sklearn.pipeline import Pipeline

    steps: list[tuple[str, Any]] = []
    if preprocessing == "auto":
        steps.append((PREPROCESS_STEP, _auto_preprocessor(X, scale=is_scale_sensitive(cls))))
    steps.append((MODEL_STEP, cls(**fixed_params)))
    return Pipeline(steps)


def _auto_preprocessor(X: Any, scale: bool) -> Any:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in X.columns if is_numeric_dtype(X[c]) and not is_bool_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    numeric_steps: list[Any] = [SimpleImputer(strategy="median")]
    if scale:
        numeric_steps.append(StandardScaler())
    transformers: list[tuple[str, Any, list[Any]]] = []
    if numeric:
        transformers.append(("numeric", make_pipeline(*numeric_steps), numeric))
    if categorical:
        transformers.append(
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical,
            )
        )
    return ColumnTransformer(transformers, remainder="drop")


def pipeline_params(params: dict[str, Any]) -> dict[str, Any]:
    """Map estimator parameter names to the pipeline's ``model__<name>``."""
    return {f"{MODEL_STEP}__{name}": value for name, value in params.items()}


def cap_n_jobs(pipeline: Any, threads: int) -> Any:
    """Cap the model step's ``n_jobs`` (when set: unset means one) at ``threads``; return the
    value it had, to put back on a fitted copy."""
    model = pipeline.named_steps[MODEL_STEP]
    current = model.get_params(deep=False).get("n_jobs")
    if current is not None and (current < 0 or current > threads):
        model.set_params(n_jobs=threads)
    return current
