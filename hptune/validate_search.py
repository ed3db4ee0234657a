"""The checks of how the search runs and what it keeps: the strategy (and what ``auto``
chooses), the space's ``when:`` conditions, the grid, warm starts and the baseline, stop rules,
refine and constraints. A mixin of
``hptune.validate``'s checker, which supplies ``add``, ``warn``, ``issues`` and ``warnings``.
"""

from __future__ import annotations

from difflib import get_close_matches
from typing import Any

from hptune import space as space_mod
from hptune.errors import SpecWarning
from hptune.metrics import check_metric, check_metric_labels
from hptune.ranking import KNEE, MEASURES
from hptune.spec import DEFAULT_N_TRIALS, CategoricalParam
from hptune.warmstart import load_point, load_start_points


class SearchChecks:
    add: Any
    warn: Any
    issues: list[Any]
    warnings: list[Any]
    base_dir: Any
    loaded: Any
    baseline: Any = None  # hptune.baseline.Baseline, from --baseline
    pruned_params: Any  # parameters whose own problems were reported already
    estimator_defaults: dict[str, Any] | None = None  # the estimator's get_params(), once checked

    def check_search(
        self, sec: dict[str, Any], metric: str | None, search_space: Any, fixed: dict[str, Any], overrides: Any
    ) -> tuple[list[dict[str, Any]] | None, str | None, list[Any]]:
        """(the grid's points, why auto chose its kind, the warm-start points); an auto
        strategy is resolved in ``sec`` in place; the --baseline is left in ``self.baseline``."""
        target = sec["stop"].target if sec.get("stop") is not None else None
        if target is not None and target > 0 and (metric or "").startswith("neg_"):  # losses are negated
            self.warn(("stop", "target"), f"{metric} is never above 0, so a target of {target:g} is never reached")
        self.check_constraints(sec.get("constraints"), sec.get("cv"))
        self.check_gate(sec.get("gate"), sec.get("data"), metric)
        grid, auto, points = None, None, []
        if sec.get("strategy") is not None and search_space is not None:
            if sec["strategy"].kind == "auto":
                kind, auto = space_mod.auto_strategy(search_space, sec["strategy"].n_trials or DEFAULT_N_TRIALS)
                sec["strategy"] = sec["strategy"].model_copy(update={"kind": kind})
            grid = self.check_strategy(sec["strategy"], search_space)
            points = self.check_start_from(sec["strategy"], overrides.start_from, search_space, fixed)
            self.check_baseline(overrides, search_space, fixed, grid is not None)
            if grid is not None and sec.get("refine") is not None:
                self.add(("refine",), "a grid runs every point already: refine is for the other kinds")
            if grid is not None and "nested_trials" in getattr(sec.get("evaluation"), "model_fields_set", ()):
                runs = f"each inner search runs the main search's {min(len(grid), sec['strategy'].n_trials or len(grid))} grid points"
                if auto:
                    self.warn(("evaluation", "nested_trials"), f"not used: strategy.kind: auto chose grid, so {runs}")
                else:
                    self.add(("evaluation", "nested_trials"), f"strategy.kind is grid: {runs}; remove nested_trials")
        return grid, auto, points

    def check_objectives(self, sec: dict[str, Any], metric: str | None, task: str | None, data: Any) -> str | None:
        """``objectives`` and ``select``, and what several objectives rule out; the main
        metric (the first scorer among the objectives, or ``metric``). Resolves the pruner
        to none in ``sec`` (Optuna's pruners compare one objective)."""
        objectives, select = sec.get("objectives"), sec.get("select")
        if not objectives:
            if select is not None:
                self.add(("select",), "chooses among the trials of several objectives: it needs `objectives:`")
            return metric
        if metric is not None:
            self.add(("metric",), "give `metric` (one objective) or `objectives` (several), not both")
        scorers = []
        for index, name in enumerate(objectives):
            if name in objectives[:index]:
                self.add(("objectives", index), f"{name!r} is listed twice")
            elif name not in MEASURES:
                problem = check_metric(name, task)
                if problem is None and data is not None and task == "classification":
                    problem = check_metric_labels(name, data.y, sec["data"].positive_class)
                close = get_close_matches(name, MEASURES, n=1, cutoff=0.8)
                if problem and close:
                    self.add(("objectives", index), f"unknown objective {name!r}; did you mean {close[0]!r}?")
                elif problem:
                    self.add(("objectives", index), f"{problem} (or one of the measures {', '.join(MEASURES)})")
                scorers.append(name)
        if not scorers:
            self.add(("objectives",), f"needs at least one scorer (accuracy, r2, ...): {', '.join(objectives)} "
                                      "alone would choose the cheapest model, however poor")
        choices = [*dict.fromkeys(objectives), KNEE]
        if select is not None and select not in choices:
            close = get_close_matches(select, choices, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.add(("select",), f"expected one of the objectives ({', '.join(choices[:-1])}) or {KNEE}, found {select!r}{hint}")
        if select is None and objectives[0] in MEASURES and scorers:
            self.warn(("objectives", 0), f"select defaults to the first objective, {objectives[0]}: the cheapest trial "
                                         f"on the front, however poor; set select: {scorers[0]} or select: {KNEE}")
        self._refuse_with_objectives(sec)
        return scorers[0] if scorers else None

    def _refuse_with_objectives(self, sec: dict[str, Any]) -> None:
        stop, strategy = sec.get("stop"), sec.get("strategy")
        for key in ("target", "patience"):
            if stop is not None and getattr(stop, key) is not None:
                self.add(("stop", key), "needs one best score; several objectives have a front of trials, not one best")
        if sec.get("refine") is not None:
            self.add(("refine",), "narrows around one best trial; several objectives have a front of trials, not one best")
        if strategy is None:
            return
        if strategy.kind == "cmaes":
            self.add(("strategy", "kind"), "Optuna's CMA-ES optimises one objective; with several use bayesian "
                                           "(TPE), random, qmc or grid")
        if strategy.pruner not in (None, "none"):
            self.add(("strategy", "pruner"), "Optuna's pruners compare one objective; with several objectives no "
                                             f"trial is pruned (leave it out or set none), found {strategy.pruner}")
        sec["strategy"] = strategy.model_copy(update={"pruner": "none"})

    def check_constraints(self, constraints: Any, cv: Any) -> None:
        if constraints is None or cv is None:
            return
        if constraints.max_overfit_gap is not None and not cv.train_scores:
            self.add(("constraints", "max_overfit_gap"),
                     "needs the train scores it compares with: set cv.train_scores: true, found false")

    def check_gate(self, gate: Any, data: Any, metric: str | None) -> None:
        if gate is None:
            return
        if gate.min_test_score is not None and data is not None and data.test_size == 0:
            self.add(("gate", "min_test_score"), "needs a held-out test score: data.test_size is 0, so there is none")
        for key in ("min_cv_score", "min_test_score"):
            threshold = getattr(gate, key)
            if threshold is not None and threshold > 0 and (metric or "").startswith("neg_"):
                self.warn(("gate", key), f"{metric} is never above 0, so a gate of {threshold:g} is never passed")

    def check_start_from(self, strategy: Any, cli: list[str], space: dict[str, Any], fixed: dict[str, Any]) -> list:
        points, errors, warnings = load_start_points(strategy, cli, self.base_dir, space, fixed, self.loaded)
        self.issues += errors
        self.warnings += [SpecWarning(w.file, w.line, w.column, w.path, w.message) for w in warnings]
        return points

    def check_conditions(self, search_space: dict[str, Any]) -> None:
        """``when:`` names a parameter of the space, values it can take, and no cycle."""
        for name, param in search_space.items():
            for parent, allowed in (param.when or {}).items():
                where = ("search_space", name, "when", parent)
                if parent in self.pruned_params:
                    continue
                if parent not in search_space:
                    close = get_close_matches(parent, list(search_space), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    self.add(where, f"condition on {parent!r}, which is not in the search space{hint}")
                    continue
                parent_param = search_space[parent]
                if parent == name:
                    self.add(where, "a parameter cannot be conditional on itself")
                    continue
                possible = list(parent_param.choices) if isinstance(parent_param, CategoricalParam) else None
                if possible is not None:
                    bad = [v for v in allowed if v not in possible]
                    if bad:
                        self.add(
                            where,
                            f"{parent!r} never takes {', '.join(map(repr, bad))}; "
                            f"its values are {', '.join(map(repr, possible))}",
                        )
        try:
            space_mod.dependency_order(search_space)
        except ValueError as exc:
            first = str(exc).split(" -> ")[0]
            self.add(("search_space", first, "when"), f"`when:` conditions form a cycle: {exc}")

    def check_baseline(self, overrides: Any, space: dict[str, Any], fixed: dict[str, Any], grid: bool) -> None:
        """--baseline: a best.yaml today's space takes, like a warm start (any kind; in a grid,
        on the grid), with every tuned parameter set (the model's default where it is not)."""
        if overrides.baseline is None:
            return
        from pathlib import Path

        from hptune.baseline import Baseline

        errors: list[Any] = []
        warnings: list[Any] = []
        point = load_point(overrides.baseline, Path(overrides.baseline), space, fixed, self.loaded, errors, warnings,
                           defaults=self.estimator_defaults, grid=grid)
        self.issues += errors
        self.warnings += [SpecWarning(w.file, w.line, w.column, w.path, w.message) for w in warnings]
        if point is not None:
            self.baseline = Baseline(point, overrides.require_improvement)

    def check_strategy(self, strategy: Any, search_space: dict[str, Any]) -> list[dict[str, Any]] | None:
        if strategy.kind != "grid":
            return None
        finite = True
        for name, param in search_space.items():
            try:
                space_mod.grid_values(param)
            except ValueError as exc:
                self.add(("search_space", name), f"{exc} (strategy.kind is grid)")
                finite = False
        if not finite:
            return None
        try:
            return space_mod.grid_points(search_space)
        except ValueError as exc:
            self.add(("search_space",), str(exc))
            return None
