"""The experiment file's schema: pydantic models, one per section, all with ``extra="forbid"``.

These models check shape (types, ranges, required keys). Checks that need the outside world
(does the estimator import, does the data have the target column) live in ``hptune.validate``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

Scalar = bool | int | float | str | None

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(value: Any) -> float:
    """Turn ``90``, ``"90s"``, ``"10m"`` or ``"2h"`` into seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 90, 30s, 10m or 2h, found {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration such as 90, 30s, 10m or 2h, found {value!r}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, found {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration, json_schema_input_type=float | str)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Section):
    dataset: Literal["iris", "wine", "breast_cancer", "digits", "diabetes"] | None = None
    path: str | None = None
    target: str | None = None
    drop: list[str] = []
    groups: str | None = None
    test_size: float = Field(0.2, ge=0.0, lt=1.0)
    #: The class binary metrics (f1, precision, average_precision, ...) score as positive.
    #: bool before int: YAML's true stays a boolean, not 1.
    positive_class: bool | int | float | str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of `dataset` (a bundled data set) or `path` (a file)")
        if self.path is not None and self.target is None:
            raise ValueError("`target` is required with `path`: name the column to predict")
        if self.dataset is not None and (self.target or self.drop or self.groups):
            raise ValueError("`target`, `drop` and `groups` apply to a `path`, not a bundled `dataset`")
        return self


class ModelSpec(_Section):
    estimator: str = Field(min_length=1)
    params: dict[str, Any] = {}
    preprocessing: Literal["auto", "none"] = "auto"


def _when_values(value: Any) -> Any:
    """``when: {kernel: poly}`` is shorthand for ``when: {kernel: [poly]}``."""
    if isinstance(value, dict):
        return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
    return value


When = Annotated[
    dict[str, list[Scalar]] | None, BeforeValidator(_when_values, json_schema_input_type=dict[str, list[Scalar] | Scalar] | None)
]


class FloatParam(_Section):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)
    grid: list[float] | None = Field(None, min_length=1)
    when: When = None

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        _check_range(self.low, self.high, self.log, self.step)
        return self


class IntParam(_Section):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int | None = Field(None, ge=1)
    grid: list[int] | None = Field(None, min_length=1)
    when: When = None

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        _check_range(self.low, self.high, self.log, self.step)
        return self


class CategoricalParam(_Section):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)
    when: When = None

    @field_validator("choices")
    @classmethod
    def _distinct(cls, choices: list[Any]) -> list[Any]:
        seen: list[Any] = []
        for choice in choices:
            if choice in seen:
                raise ValueError(f"choice {choice!r} is listed twice")
            seen.append(choice)
        return choices


def _check_range(low: float, high: float, log: bool, step: float | None) -> None:
    if low >= high:
        raise ValueError(f"low must be below high, found low={low!r}, high={high!r}")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, found low={low!r}")
    if log and step is not None:
        raise ValueError("`step` and `log: true` cannot be combined")
    if step is not None and step > high - low:
        raise ValueError(f"step {step!r} is larger than the range {low!r}..{high!r}")


def _categorical_shorthand(value: Any) -> Any:
    """A bare list is shorthand for ``{type: categorical, choices: [...]}``."""
    if isinstance(value, list):
        return {"type": "categorical", "choices": value}
    return value


Param = Annotated[
    FloatParam | IntParam | CategoricalParam,
    Field(discriminator="type"),
    # The schema accepts what the file may hold: a parameter, or a bare list of choices.
    BeforeValidator(_categorical_shorthand, json_schema_input_type=FloatParam | IntParam | CategoricalParam | list[Any]),
]


class CVSpec(_Section):
    kind: Literal["kfold", "stratified", "group", "timeseries", "shuffle"] | None = None
    folds: int = Field(5, ge=2)
    shuffle: bool = True
    repeats: int = Field(1, ge=1)
    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    train_scores: bool = True

    @model_validator(mode="after")
    def _repeats(self) -> CVSpec:
        if self.repeats > 1 and self.kind in ("group", "timeseries", "shuffle"):
            raise ValueError(f"`repeats` applies to kfold and stratified CV, not {self.kind}")
        return self


class StrategySpec(_Section):
    #: auto: grid when the space is finite with at most n_trials points, else bayesian.
    kind: Literal["grid", "random", "bayesian", "cmaes", "qmc", "auto"] = "bayesian"
    n_trials: int | None = Field(None, ge=1)
    timeout: Duration | None = None
    n_jobs: int = 1
    max_failures: int | None = Field(None, ge=0)
    max_failure_rate: float | None = Field(None, gt=0.0, le=1.0)
    threads_per_worker: int | None = Field(None, ge=1)
    #: Memory for the folds kept between trials (raw slices, preprocessed folds), in MB for all
    #: worker processes together; default: a quarter of the memory available when the run starts.
    cache_mb: int | None = Field(None, ge=0)
    #: Stop a trial after a fold when its running mean is poor (Optuna's pruners). Default:
    #: median, but none for grid (a grid must score every point as GridSearchCV does).
    pruner: Literal["none", "median", "percentile", "successive_halving", "hyperband"] | None = None
    #: best.yaml files whose parameters run first, each once (hptune.warmstart).
    start_from: list[str] = []
    #: For ``pruner: percentile``: keep the trials in the top this-many percent (Optuna's meaning).
    pruner_percentile: float = Field(25.0, gt=0.0, lt=100.0)

    @field_validator("pruner_percentile")
    @classmethod
    def _percentile_needs_its_pruner(cls, value: float, info: ValidationInfo) -> float:
        pruner = info.data.get("pruner")
        if pruner != "percentile":
            found = f", found pruner: {pruner}" if pruner else ""
            raise ValueError(f"is read only with pruner: percentile{found}")
        return value

    @field_validator("n_jobs")
    @classmethod
    def _n_jobs(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError(f"must be -1 (all cores) or >= 1, found {value}")
        return value


#: Trials when ``n_trials`` is not given (grid search runs the whole grid instead).
DEFAULT_N_TRIALS = 50


class MlflowSpec(_Section):
    """Log the run to MLflow (hptune.tracking): one run per study, a nested run per trial."""

    #: Where MLflow keeps runs (sqlite:///mlflow.db, http://host:5000, ...); default: MLflow's own
    #: (the MLFLOW_TRACKING_URI environment variable, else its local default).
    tracking_uri: str | None = Field(None, min_length=1)
    #: The MLflow experiment; default: the experiment's ``name``.
    experiment: str | None = Field(None, min_length=1)
    #: Where a new MLflow experiment keeps its artifacts (a folder or URI); default: MLflow's.
    artifact_location: str | None = Field(None, min_length=1)


class OutputSpec(_Section):
    dir: str | None = None
    storage: str | None = None
    report: bool = True  # write report.html at the end of a run (hptune.report); false: do not
    #: How the refitted model is saved: model.joblib (a pickle) or model.skops (skops.io, which
    #: loads without running arbitrary code). Not part of the fingerprint: how the model is
    #: stored, not what it is; changing it resumes the study and rewrites the model.
    model_format: Literal["joblib", "skops"] = "joblib"
    #: Not part of the fingerprint: where a copy of the results goes, not what they are.
    mlflow: MlflowSpec | None = None

    @field_validator("storage")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError(
                f"expected a database URL such as postgresql://user@host/db, found {value!r} "
                "(without `storage`, the study is a journal file in the output folder)"
            )
        return value


class StopSpec(_Section):
    """Stop before the budget is spent: at a target score, or when the search stalls."""

    #: Stop once the best CV score reaches this (in the metric's own terms, as the summary shows it).
    target: float | None = None
    #: Stop after this many finished trials in a row that did not improve the best by more than min_delta.
    patience: int | None = Field(None, ge=1)
    min_delta: float = Field(0.0, ge=0.0)


class RefineSpec(_Section):
    """After the main search, search again in a space narrowed around the best (hptune.refine)."""

    n_trials: int = Field(20, ge=1)
    shrink: float = Field(0.25, gt=0.0, le=1.0)  # each range's share of its width, around the best
    top: int = Field(5, ge=1)  # categoricals keep the choices these best trials took


class ConstraintsSpec(_Section):
    """Limits a trial must keep to be chosen (hptune.constraints); each optional."""

    #: Mean train score minus mean CV score of the metric, at most (needs cv.train_scores).
    max_overfit_gap: float | None = Field(None, ge=0.0)
    #: Mean fit time per fold, at most (seconds, or a duration such as 2s or 1m).
    max_fit_time: Duration | None = None
    #: The fitted pipeline's pickled size, at most, in MB (mean over the folds).
    max_model_mb: float | None = Field(None, gt=0.0)

    @model_validator(mode="after")
    def _some_limit(self) -> ConstraintsSpec:
        if self.max_overfit_gap is None and self.max_fit_time is None and self.max_model_mb is None:
            raise ValueError("sets no limit: give max_overfit_gap, max_fit_time or max_model_mb (or remove constraints)")
        return self


class EvaluationSpec(_Section):
    """Nested cross-validation of the whole tuning procedure (hptune.nested): each outer fold of
    the training part runs its own search and scores its best on the rows it never saw."""

    nested_folds: int = Field(5, ge=2)  # outer folds
    nested_trials: int = Field(30, ge=1)  # trials of each outer fold's search (a grid runs its points)


class GateSpec(_Section):
    """Quality gates: the run finished, but its model must be this good (else exit 3)."""

    #: The best trial's mean CV score must be at least this (the metric's own terms).
    min_cv_score: float | None = None
    #: The refitted model's held-out test score must be at least this (needs data.test_size > 0).
    min_test_score: float | None = None

    @model_validator(mode="after")
    def _some_gate(self) -> GateSpec:
        if self.min_cv_score is None and self.min_test_score is None:
            raise ValueError("sets no gate: give min_cv_score or min_test_score (or remove gate)")
        return self


class Experiment(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    seed: int = Field(0, ge=0, lt=2**32)
    data: DataSpec
    task: Literal["classification", "regression"] | None = None
    model: ModelSpec
    search_space: dict[str, Param] = Field(min_length=1)
    metric: str | None = None
    #: Instead of ``metric``: two or more scorers and measures (hptune.ranking.MEASURES).
    objectives: list[str] | None = Field(None, min_length=2)
    #: With objectives: which Pareto trial is the best: an objective's name, or knee.
    select: str | None = None
    extra_metrics: list[str] = []
    cv: CVSpec = CVSpec()
    strategy: StrategySpec = StrategySpec()
    stop: StopSpec = StopSpec()
    refine: RefineSpec | None = None
    constraints: ConstraintsSpec | None = None
    #: Not part of the fingerprint: it judges the result, it does not change the search.
    gate: GateSpec | None = None
    #: Not part of the fingerprint: it estimates the search, it does not change it.
    evaluation: EvaluationSpec | None = None
    output: OutputSpec = OutputSpec()
