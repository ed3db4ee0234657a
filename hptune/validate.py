"""Turn an experiment file into a checked, ready-to-run experiment, or every reason it is not.

Checks run in two layers and all problems are collected before anything is raised:
shape (pydantic, section by section so one bad section does not hide the others' problems)
and meaning (the estimator imports and accepts every parameter, the metric suits the task,
the data has the columns, the grid is finite). Each problem becomes a :class:`SpecIssue`
located at the line and column of the key it is about.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from hptune.baseline import Baseline
from hptune.data import BUNDLED_TASKS, DataFieldError, Dataset, Split, infer_task, load_dataset
from hptune.datacheck import suspicious_columns, text_without_preprocessing
from hptune.errors import DataError, SpecError, SpecIssue, SpecWarning
from hptune.estimators import (
    EstimatorLookupError,
    default_params,
    import_estimator,
    resolve_name,
    takes_kwargs,
)
from hptune.folds import Folds, check_folds
from hptune.metrics import DEFAULT_METRIC, check_metric, check_metric_labels, check_positive_class
from hptune.overrides import Overrides, apply_overrides
from hptune.shape_errors import raw_path, translate
from hptune.spec import DEFAULT_N_TRIALS, Experiment
from hptune.validate_search import SearchChecks
from hptune.warmstart import StartPoint
from hptune.yamlio import LoadedYaml, Path_, dotted, load_yaml

#: How close (difflib's ratio) an unlisted name passed to **kwargs must be to a listed one to
#: be called a likely typo: 'n_estimator' for 'n_estimators' (0.96) is, LightGBM's own
#: 'verbose' or 'max_bin' are not close to anything listed.
KWARGS_TYPO_CUTOFF = 0.85


@dataclass
class ValidatedExperiment:
    """An experiment that passed every check, with everything resolved that a run needs."""

    path: Path
    spec: Experiment
    task: str
    metric: str
    estimator_path: str
    estimator_class: type
    fixed_params: dict[str, Any]
    data: Dataset
    n_trials: int
    grid: list[dict[str, Any]] | None = None
    file_sha256: str = ""  # of the experiment file as it was read, not as it is later
    #: The held-out split and the folds, built by validation exactly as a run builds them.
    split: Split | None = None
    folds: Folds | None = None
    #: What is probably a mistake but does not stop a run, sorted by line.
    warnings: list[SpecWarning] = field(default_factory=list)
    #: Why ``strategy.kind: auto`` chose the kind the spec now holds (None: not auto).
    auto_strategy: str | None = None
    start_points: list[StartPoint] = field(default_factory=list)  # strategy.start_from, --start-from
    baseline: Baseline | None = None  # --baseline (hptune.baseline)
    sets: list[str] = field(default_factory=list)  # --set overrides, as given (run.json records them)

    @property
    def objectives(self) -> list[str]:
        """What the study optimises: the file's objectives, or the metric alone."""
        return list(self.spec.objectives or [self.metric])

    @property
    def metrics(self) -> list[str]:
        """The scorers every trial computes: the main metric, the other scorer objectives,
        the extra metrics."""
        from hptune.ranking import MEASURES

        named = [self.metric, *(o for o in self.objectives if o not in MEASURES), *self.spec.extra_metrics]
        return list(dict.fromkeys(named))

    @property
    def output_dir(self) -> Path:
        return Path(self.spec.output.dir or f"runs/{self.spec.name}")


def load_experiment(
    path: Path, allow_modules: tuple[str, ...] = (), overrides: Overrides | None = None
) -> ValidatedExperiment:
    """Read, check and resolve the experiment at ``path``; raise SpecError with every issue."""
    overrides = overrides or Overrides()
    loaded = load_yaml(path)
    problems = loaded.apply_sets(overrides.sets)
    checker = _Checker(loaded, path.parent, allow_modules)
    result = checker.run(overrides)
    if problems or checker.issues or result is None:
        raise SpecError(problems + checker.issues)
    result.warnings = sorted(set(checker.warnings))
    result.sets = list(overrides.sets)
    return result


class _Checker(SearchChecks):
    def __init__(self, loaded: LoadedYaml, base_dir: Path, allow_modules: tuple[str, ...]) -> None:
        self.loaded = loaded
        self.base_dir = base_dir
        self.allow_modules = allow_modules
        self.issues: list[SpecIssue] = []
        self.warnings: list[SpecWarning] = []
        #: Search-space entries dropped for shape errors; conditions on them are not re-reported.
        self.pruned_params: set[str] = set()

    def add(self, path: Path_, message: str) -> None:
        self.issues.append(self.loaded.issue(path, message))

    def warn(self, path: Path_, message: str) -> None:
        issue = self.loaded.issue(path, message)
        self.warnings.append(SpecWarning(issue.file, issue.line, issue.column, issue.path, issue.message))

    # -- shape -------------------------------------------------------------------------
    def sections(self) -> tuple[Experiment | None, dict[str, Any]]:
        """Validate the whole file; on failure, keep what is valid to check the rest.

        Each key with a shape error is removed (a search-space entry as a whole) and the
        sections are validated again one by one, so one typo does not hide other problems.
        """
        try:
            spec = Experiment.model_validate(self.loaded.data)
            return spec, {name: getattr(spec, name) for name in Experiment.model_fields}
        except ValidationError as exc:
            errors = exc.errors()
        raw = copy.deepcopy(self.loaded.data)
        for error in errors:
            self.issues.append(translate(error, self.loaded))
            self._prune(raw, raw_path(tuple(error["loc"]), self.loaded.data, keep_last=False))
        parsed: dict[str, Any] = {}
        for name, info in Experiment.model_fields.items():
            try:
                if name in raw:
                    parsed[name] = TypeAdapter(info.annotation).validate_python(raw[name])
                elif not info.is_required():
                    parsed[name] = info.get_default(call_default_factory=True)
            except ValidationError:
                pass  # already reported by the whole-file pass
        return None, parsed

    def _prune(self, raw: Any, path: Path_) -> None:
        if len(path) >= 2 and path[0] == "search_space" and isinstance(raw.get("search_space"), dict):
            raw["search_space"].pop(path[1], None)
            self.pruned_params.add(str(path[1]))
            return
        parent = raw
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None  # may be pruned already
        if path and isinstance(parent, dict):
            parent.pop(path[-1], None)

    # -- meaning -----------------------------------------------------------------------
    def run(self, overrides: Overrides) -> ValidatedExperiment | None:
        spec, sec = self.sections()
        if spec is not None:
            spec = apply_overrides(spec, overrides)
            sec = {name: getattr(spec, name) for name in Experiment.model_fields}
        seed = overrides.seed if overrides.seed is not None else sec.get("seed", 0)

        data = self.check_data(sec.get("data"))
        task = self.check_task(sec.get("task"), sec.get("data"), data)
        estimator = self.check_estimator(sec.get("model"), task)
        if data is not None and sec.get("model") is not None and sec["model"].preprocessing == "none":
            for message in text_without_preprocessing(data.X):
                self.warn(("model", "preprocessing"), message)
        search_space = sec.get("search_space")
        fixed: dict[str, Any] = {}
        if estimator is not None:
            fixed = self.check_params(estimator, sec.get("model"), search_space, seed)
        if search_space is not None:
            self.check_conditions(search_space)
        metric = self.check_metrics(sec.get("metric"), sec.get("extra_metrics"), task, sec.get("objectives"))
        if data is not None and sec.get("data") is not None:
            self.check_labels(sec["data"].positive_class, metric, sec.get("extra_metrics"), task, data)
        self.check_cv(sec.get("cv"), sec.get("data"), task, data)
        metric = self.check_objectives(sec, metric, task, data)
        grid, auto, points = self.check_search(sec, metric, search_space, fixed, overrides)
        if spec is not None:  # as checked and resolved: what auto chose, the pruner objectives allow
            spec = spec.model_copy(update={"strategy": sec["strategy"]})
        if spec is None or self.issues or data is None or estimator is None or task is None:
            return None
        # Last, on a file valid in every other way: the real split, as the run will make it.
        target = ("data", "target") if spec.data.path else ("data",)
        split, folds, problems = check_folds(spec, data, task, target)
        for problem in problems:
            (self.warn if problem.warning else self.add)(problem.path, problem.message)
        if self.issues:
            return None
        estimator_path, estimator_class = estimator
        n_trials = spec.strategy.n_trials or (len(grid) if grid is not None else DEFAULT_N_TRIALS)
        if grid is not None:
            n_trials = min(n_trials, len(grid))  # a grid is finished once every point ran
        return ValidatedExperiment(
            path=Path(self.loaded.file),
            spec=spec,
            task=task,
            metric=metric or DEFAULT_METRIC[task],
            estimator_path=estimator_path,
            estimator_class=estimator_class,
            fixed_params=fixed,
            data=data,
            n_trials=n_trials,
            grid=grid,
            file_sha256=self.loaded.sha256,
            split=split,
            folds=folds,
            auto_strategy=auto,
            start_points=points,
            baseline=self.baseline,
        )

    def check_data(self, data_spec: Any) -> Dataset | None:
        if data_spec is None:
            return None
        try:
            data = load_dataset(data_spec, self.base_dir)
        except DataFieldError as exc:
            self.add(("data", exc.field), str(exc))
            return None
        except DataError as exc:
            self.add(("data",), str(exc))
            return None
        if data_spec.path is not None:  # bundled data sets are known to be fine
            # Warned at the key that fixes it: data.drop when the file has one.
            where = ("data", "drop") if ("data", "drop") in self.loaded.positions else ("data", "path")
            for message in suspicious_columns(data.X, data.y, str(data_spec.target)):
                self.warn(where, message)
        return data

    def check_task(self, task: str | None, data_spec: Any, data: Dataset | None) -> str | None:
        if data is None:
            if data_spec is not None and data_spec.dataset is not None:
                return task or BUNDLED_TASKS[data_spec.dataset]
            return task
        inferred = (
            BUNDLED_TASKS[data_spec.dataset] if data_spec.dataset is not None else infer_task(data.y)
        )
        if task == "classification" and inferred == "regression":
            self.add(("task",), "task is classification, but the target holds continuous numbers")
        from pandas.api.types import is_numeric_dtype

        if task == "regression" and not is_numeric_dtype(data.y):
            example = data.y.dropna().iloc[0] if data.y.notna().any() else None
            self.add(("task",), f"task is regression, but the target holds text (found {example!r})")
        target = ("data", "target") if data_spec.path else ("data",)
        if (task or inferred) == "classification":
            classes = data.y.nunique()
            if classes < 2:
                self.add(target, f"the target has {classes} class; classification needs at least 2")
        return task or inferred

    def check_estimator(self, model: Any, task: str | None) -> tuple[str, type] | None:
        if model is None:
            return None
        dotted = resolve_name(model.estimator, task)
        try:
            return dotted, import_estimator(dotted, self.allow_modules)
        except EstimatorLookupError as exc:
            self.add(("model", "estimator"), str(exc))
            return None

    def check_params(self, estimator: tuple[str, type], model: Any, search_space: Any, seed: int) -> dict[str, Any]:
        dotted, cls = estimator
        try:
            accepted = self.estimator_defaults = default_params(cls)
        except EstimatorLookupError as exc:
            self.add(("model", "estimator"), str(exc))
            return {}
        short = dotted.rsplit(".", 1)[1]
        open_ended = takes_kwargs(cls)

        def known(where: Path_, name: str) -> bool:
            """Whether ``name`` reaches the estimator; says why not, or what it may be a typo of."""
            if name in accepted:
                return True
            if not open_ended:
                close = get_close_matches(name, accepted, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.add(where, f"{short} has no parameter {name!r}{hint}")
                return False
            # Any name is passed on, so only an obvious typo of a listed one is pointed out.
            close = get_close_matches(name, accepted, n=1, cutoff=KWARGS_TYPO_CUTOFF)
            if close:
                self.warn(where, f"{short} does not list {name!r}; did you mean {close[0]!r}? It takes **kwargs, "
                                 "so the name is passed to it as written")
            return True

        for name in model.params:
            known(("model", "params", name), name)
        for name in search_space or {}:
            if known(("search_space", name), name) and name in model.params:
                self.add(("search_space", name), f"{name!r} is both fixed in model.params and tuned here; keep one")
        fixed = dict(model.params)
        # Seed the estimator's own randomness too, or "same seed, same results" would not hold.
        if "random_state" in accepted and "random_state" not in fixed and "random_state" not in (search_space or {}):
            fixed["random_state"] = seed
        return fixed

    def check_metrics(self, metric: str | None, extra: list[str] | None, task: str | None,
                      objectives: list[str] | None = None) -> str | None:
        if metric is not None:
            problem = check_metric(metric, task)
            if problem:
                self.add(("metric",), problem)
        for index, name in enumerate(extra or []):
            problem = check_metric(name, task)
            if problem:
                self.add(("extra_metrics", index), problem)
            elif objectives and name in objectives:
                self.add(("extra_metrics", index), f"{name!r} is already an objective")
            elif not objectives and name == (metric or DEFAULT_METRIC.get(task or "", "")):
                self.add(("extra_metrics", index), f"{name!r} is already the main metric")
        return metric

    def check_labels(self, positive: Any, metric: str | None, extra: list[str] | None, task: str | None,
                     data: Dataset) -> None:
        """The positive class, and metrics that cannot score this target's labels."""
        if task != "classification":
            if positive is not None:
                self.add(("data", "positive_class"), f"applies to classification; the task is {task}")
            return
        if positive is not None:
            problem = check_positive_class(positive, data.y)
            if problem:
                self.add(("data", "positive_class"), problem)
                return  # the metrics would only repeat that the positive class is unknown
        bad = {i.path for i in self.issues}  # unknown names, or metrics for another task
        named = [(("metric",), metric)] + [(("extra_metrics", i), n) for i, n in enumerate(extra or [])]
        for where, name in named:
            if name is None or dotted(where) in bad:
                continue
            problem = check_metric_labels(name, data.y, positive)
            if problem:
                self.add(where, problem)

    def check_cv(self, cv: Any, data_spec: Any, task: str | None, data: Dataset | None) -> None:
        if cv is None:
            return
        has_groups = data_spec is not None and data_spec.groups is not None
        if cv.kind == "group" and data_spec is not None and not has_groups:
            self.add(("cv", "kind"), "group CV needs `data.groups`, the column that names each row's group")
        if cv.kind == "stratified" and task == "regression":
            self.add(("cv", "kind"), "stratified CV needs class labels; use kfold for regression")
        if data is None or data_spec is None:
            return
        test_share = data_spec.test_size
        train_rows = int(data.n_rows * (1 - test_share))
        if train_rows < cv.folds:
            self.add(("cv", "folds"), f"{cv.folds} folds need at least {cv.folds} training rows, found {train_rows}")
        if has_groups and cv.kind in (None, "group"):
            n_groups = data.groups.nunique()
            if n_groups < cv.folds:
                self.add(("cv", "folds"), f"{cv.folds} folds need at least {cv.folds} groups, found {n_groups}")
