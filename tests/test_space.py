from __future__ import annotations

import optuna
import pytest
from pydantic import TypeAdapter
from sklearn.model_selection import ParameterGrid

from hptune import space
from hptune.spec import Param

PARAMS = TypeAdapter(dict[str, Param])


def parse(raw: dict) -> dict:
    return PARAMS.validate_python(raw)


def test_grid_points_follow_parameter_grid_order() -> None:
    raw = {"kernel": ["rbf", "linear"], "C": {"type": "float", "low": 0.1, "high": 10, "grid": [0.1, 1, 10]},
           "degree": {"type": "int", "low": 2, "high": 4}}
    points = space.grid_points(parse(raw))
    expected = list(ParameterGrid({"kernel": ["rbf", "linear"], "C": [0.1, 1.0, 10.0], "degree": [2, 3, 4]}))
    assert points == expected


def test_conditional_parameter_is_absent_where_its_condition_fails() -> None:
    raw = {"kernel": ["rbf", "poly", "linear"], "degree": {"type": "int", "low": 2, "high": 3, "when": {"kernel": "poly"}}}
    points = space.grid_points(parse(raw))
    # ParameterGrid order over sorted names (degree, kernel), the last varying fastest.
    assert points == [
        {"degree": 2, "kernel": "poly"},
        {"degree": 3, "kernel": "poly"},
        {"kernel": "rbf"},
        {"kernel": "linear"},
    ]


def test_float_step_grid_values_are_exact() -> None:
    (param,) = parse({"x": {"type": "float", "low": 0.1, "high": 0.5, "step": 0.1}}).values()
    assert space.grid_values(param) == [0.1, 0.2, 0.3, 0.4, 0.5]


def test_suggest_skips_inactive_parameters_and_decodes_lists() -> None:
    parsed = parse({
        "kernel": ["linear"],
        "gamma": {"type": "float", "low": 0.001, "high": 1, "log": True, "when": {"kernel": "rbf"}},
        "hidden_layer_sizes": [[10], [20, 10]],
    })
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    params = space.suggest(trial, parsed)
    assert "gamma" not in params and "gamma" not in trial.params
    assert params["hidden_layer_sizes"] in ([10], [20, 10])
    assert space.decode_params(parsed, trial.params) == params


def test_dependency_cycle_is_named() -> None:
    parsed = parse({
        "a": {"type": "categorical", "choices": [1, 2], "when": {"b": 1}},
        "b": {"type": "categorical", "choices": [1, 2], "when": {"a": 1}},
    })
    with pytest.raises(ValueError, match="a -> b -> a"):
        space.dependency_order(parsed)
