"""`--set dotted.key=value` on run and validate: values read as YAML, validated like the file's,
errors naming the override, recorded in run.json and part of the fingerprint; real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from tests.conftest import run_cli

SPEC = """
name: overridden
seed: 0
data: {dataset: iris, test_size: 0.2}
model: {estimator: sklearn.linear_model.LogisticRegression, params: {max_iter: 1000}, preprocessing: none}
search_space:
  C: {type: float, low: 0.01, high: 10, log: true}
cv: {folds: 3}
strategy: {kind: random, n_trials: 6}
"""


def test_overrides_change_the_run_and_are_recorded(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sets = ["strategy.n_trials=3", "search_space.C=[0.5, 2.0]", "strategy.kind=grid", "model.params.fit_intercept=false"]
    result = run_cli("run", write_spec(SPEC), "--out", out, *[arg for s in sets for arg in ("--set", s)])
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    assert sorted(table["param_C"]) == [0.5, 2.0]  # the list became categorical choices, the grid ran both
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["params"]["fit_intercept"] is False  # read as YAML: a boolean, not the text 'false'
    assert json.loads((out / "run.json").read_text())["overrides"] == sets


def test_an_override_of_what_a_trial_means_is_a_different_experiment(write_spec, tmp_path: Path) -> None:
    spec, out = write_spec(SPEC), tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "--set", "strategy.n_trials=2").exit_code == 0
    # The budget is not part of the fingerprint: the study resumes.
    assert run_cli("run", spec, "--out", out, "--set", "strategy.n_trials=3").exit_code == 0
    assert len(pd.read_csv(out / "trials.csv")) == 3
    # The seed is, as when the file's seed changes: refused, with the part named.
    changed = run_cli("run", spec, "--out", out, "--set", "seed=7")
    assert changed.exit_code == 2 and "seed" in changed.stderr


def test_errors_name_the_override_and_files_keep_their_lines(write_spec) -> None:
    spec = write_spec(SPEC.replace("folds: 3", "folds: 1"))
    result = run_cli("validate", spec, "--set", "strategy.n_trials=0", "--set", "cv.shuffle=maybe", "--set", "oops")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert "--set strategy.n_trials: must be >= 1, found 0" in lines
    assert "--set cv.shuffle: expected true or false, found 'maybe'" in lines
    assert "--set oops: expected dotted.key=value, such as strategy.n_trials=200" in lines
    assert f"{spec}:7:6: cv.folds: must be >= 2, found 1" in lines
    fine = run_cli("validate", spec, "--set", "cv.folds=4")
    assert fine.exit_code == 0 and "ok" in fine.stdout
