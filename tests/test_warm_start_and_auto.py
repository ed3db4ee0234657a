"""Warm starts from a committed best.yaml (strategy.start_from, --start-from) and
strategy.kind: auto, through the real CLI on real data."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest

from hptune.storage import journal_storage
from hptune.trials import ATTR_START
from tests.conftest import run_cli

SPEC = """
name: warm
data: {{dataset: iris, test_size: 0.2}}
model: {{estimator: sklearn.linear_model.LogisticRegression, params: {{max_iter: 500}}}}
search_space:
  C: {{type: float, low: 0.001, high: 1000, log: true}}
  fit_intercept: [true, false]
strategy: {{kind: {kind}, n_trials: {n_trials}{extra}}}
"""

OLD_BEST = """
name: old
estimator: sklearn.linear_model.LogisticRegression
cv_score: 0.96
trial: 3
params:
  C: {C}
  fit_intercept: {fit_intercept}
  max_iter: {max_iter}
"""


def _trials(out: Path, name: str = "warm") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=journal_storage(out / "study.journal")).get_trials()


def test_the_committed_best_runs_first_and_once_however_often_the_study_resumes(write_spec, tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "best.yaml").write_text(OLD_BEST.format(C=12.5, fit_intercept="false", max_iter=500))
    spec = write_spec(SPEC.format(kind="random", n_trials=4, extra=", start_from: [old/best.yaml]"))
    out = tmp_path / "out"
    assert run_cli("run", spec, "--out", out).exit_code == 0
    first = _trials(out)[0]
    assert first.params == {"C": 12.5, "fit_intercept": False} and first.state.name == "COMPLETE"
    assert json.loads((out / "run.json").read_text())["study"]["start_from"] == ["old/best.yaml"]
    # Resumed with a larger budget: the point is not queued again.
    assert run_cli("run", spec, "--out", out, "--n-trials", "7").exit_code == 0
    trials = _trials(out)
    assert len(trials) == 7 and sum(ATTR_START in t.user_attrs for t in trials) == 1


def test_start_from_on_the_command_line_is_relative_to_the_current_folder(
    write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(SPEC.format(kind="bayesian", n_trials=3, extra=""))
    elsewhere = tmp_path / "ci"
    elsewhere.mkdir()
    (elsewhere / "best.yaml").write_text(OLD_BEST.format(C=0.5, fit_intercept="true", max_iter=500))
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out, "--start-from", "best.yaml")
    assert result.exit_code == 0, result
    assert _trials(out)[0].params == {"C": 0.5, "fit_intercept": True}
    missing = run_cli("run", spec, "--out", out, "--start-from", "nope.yaml")
    assert missing.exit_code == 2 and "'nope.yaml' does not exist" in missing.stderr


def test_a_best_yaml_outside_today_s_space_is_a_file_line_error_naming_both_files(write_spec, tmp_path: Path) -> None:
    (tmp_path / "old.yaml").write_text(OLD_BEST.format(C=5000, fit_intercept="maybe", max_iter=100) + "  penalty: l1\n")
    spec = write_spec(SPEC.format(kind="bayesian", n_trials=3, extra=", start_from: [old.yaml, gone.yaml]"))
    result = run_cli("validate", spec)
    assert result.exit_code == 2
    text = result.stderr
    assert "old.yaml:7:3: params.C: 5000 is outside the range 0.001 .. 1000 of today's search_space.C " \
           f"({spec}:5:3)" in text
    assert "old.yaml:8:3: params.fit_intercept: 'maybe' is not one of the choices" in text
    assert "old.yaml:10:3: params.penalty: 'penalty' is not in today's search_space" in text
    assert f"{spec}:7:64: strategy.start_from[1]: no such file: gone.yaml" in text
    assert "4 problems found" in text
    assert not (tmp_path / "runs").exists()


def test_a_fixed_parameter_that_changed_since_is_a_warning_and_today_s_value_runs(write_spec, tmp_path: Path) -> None:
    (tmp_path / "old.yaml").write_text(OLD_BEST.format(C=3.0, fit_intercept="true", max_iter=100))
    spec = write_spec(SPEC.format(kind="random", n_trials=2, extra=", start_from: [old.yaml]"))
    result = run_cli("run", spec, "--out", tmp_path / "out")
    assert result.exit_code == 0, result
    assert "old.yaml:9:3: params.max_iter: warning: 100 is fixed to 500 today" in result.stderr
    assert _trials(tmp_path / "out")[0].params == {"C": 3.0, "fit_intercept": True}


def test_a_grid_refuses_start_from(write_spec, tmp_path: Path) -> None:
    (tmp_path / "old.yaml").write_text(OLD_BEST.format(C=3.0, fit_intercept="true", max_iter=500))
    spec = write_spec(SPEC.format(kind="grid", n_trials=2, extra=", start_from: [old.yaml]").replace(
        "C: {type: float, low: 0.001, high: 1000, log: true}", "C: [1, 10]"))
    result = run_cli("validate", spec)
    assert result.exit_code == 2 and "strategy.start_from: a grid runs every point already" in result.stderr


@pytest.mark.parametrize(
    ("space", "n_trials", "kind", "why"),
    [
        ("C: [0.1, 1, 10]\n  fit_intercept: [true, false]", 6, "grid", "finite, with 6 points <= n_trials 6"),
        ("C: [0.1, 1, 10]\n  fit_intercept: [true, false]", 5, "bayesian", "6 points > n_trials 5"),
        ("C: {type: float, low: 0.1, high: 10}", 50, "bayesian", "C is a float range without step or grid"),
    ],
    ids=["small-finite", "larger-than-the-budget", "continuous"],
)
def test_auto_picks_grid_for_a_small_finite_space_and_says_why(
    space: str, n_trials: int, kind: str, why: str, write_spec, tmp_path: Path
) -> None:
    text = SPEC.format(kind="auto", n_trials=n_trials, extra="").replace(
        "C: {type: float, low: 0.001, high: 1000, log: true}\n  fit_intercept: [true, false]", space)
    out = tmp_path / "out"
    result = run_cli("run", write_spec(text), "--out", out, "--timeout", "1")  # the choice, not the search, is tested
    assert result.exit_code == 0, result
    study = json.loads((out / "run.json").read_text())["study"]
    assert study["sampler"] == kind and why in study["chosen_by_auto"]
    assert f"strategy: {kind} (auto: " in result.stdout
    if kind == "grid":
        assert set(pd.read_csv(out / "trials.csv")["param_C"]) <= {0.1, 1, 10}


def test_a_bayesian_study_resumes_under_auto_when_auto_chooses_bayesian(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("run", write_spec(SPEC.format(kind="bayesian", n_trials=2, extra="")), "--out", out).exit_code == 0
    resumed = run_cli("run", write_spec(SPEC.format(kind="auto", n_trials=4, extra="")), "--out", out)
    assert resumed.exit_code == 0, resumed  # the same experiment: auto means bayesian here
    assert len(_trials(out)) == 4


SLOW_WARM = """
name: warm-kill
seed: 2
data: {dataset: digits, test_size: 0.2}
model: {estimator: svc}
search_space:
  C: {type: float, low: 0.1, high: 100, log: true}
  gamma: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
cv: {folds: 3}
strategy: {kind: random, n_trials: 12, pruner: none, start_from: [old.yaml]}
stop: {patience: 8}
"""


@pytest.mark.slow
def test_a_killed_run_with_a_warm_start_and_patience_resumes_with_the_point_run_once(write_spec, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "old.yaml").write_text("params: {C: 10.0, gamma: 0.001}\n")
    spec, out = write_spec(SLOW_WARM), tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "hptune", "run", str(spec), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            done = [t for t in _trials(out, "warm-kill") if t.state.is_finished()]
        except (KeyError, FileNotFoundError, ValueError):
            done = []
        if len(done) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    resumed = run_cli("run", spec, "--out", out)
    assert resumed.exit_code == 0, resumed
    trials = _trials(out, "warm-kill")
    assert sum(t.user_attrs.get(ATTR_START) is not None and t.state.name == "COMPLETE" for t in trials) == 1
    assert trials[0].params == {"C": 10.0, "gamma": 0.001}
    run = json.loads((out / "run.json").read_text())
    finished = [t for t in trials if t.state.is_finished() and not t.user_attrs.get("hptune_interrupted")]
    assert run["stop_reason"] in ("budget", "patience") and (len(finished) == 12 or run["stop_reason"] == "patience")
