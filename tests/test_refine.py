"""The refine stage: after the main search, a narrowed space around the best, in the same
study and the same outputs; through the real CLI on real data, and the narrowing itself."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from hptune.refine import STUDY_REFINE, narrow
from hptune.spec import CategoricalParam, FloatParam, IntParam
from hptune.storage import journal_storage
from tests.conftest import run_cli

SPEC = """
name: refined
seed: 1
data: {{dataset: digits, test_size: 0.2}}
model: {{estimator: svc}}
search_space:
  C: {{type: float, low: 0.1, high: 1000, log: true}}
  gamma: {{type: float, low: 1.0e-5, high: 1.0e-1, log: true}}
  kernel: [rbf, sigmoid]
cv: {{folds: 3}}
strategy: {{kind: bayesian, n_trials: {n_trials}, pruner: none}}
{refine}
"""


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="refined", storage=journal_storage(out / "study.journal"))


def test_refine_searches_a_narrowed_space_after_the_main_search(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = write_spec(SPEC.format(n_trials=10, refine="refine: {n_trials: 6, shrink: 0.25, top: 3}"))
    result = run_cli("run", spec, "--out", out)
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv").sort_values("number")
    assert list(table["stage"]) == ["search"] * 10 + ["refine"] * 6
    stored = _study(out).user_attrs[STUDY_REFINE]
    assert stored["after"] == 10
    search, refined = table[table["stage"] == "search"], table[table["stage"] == "refine"]
    best_search = search.loc[search["mean_test_accuracy"].idxmax()]
    for name in ("C", "gamma"):
        low, high = stored["ranges"][name]["low"], stored["ranges"][name]["high"]
        # A quarter of the log-width, around the main search's best, inside the original bounds.
        assert math.log(high / low) <= 0.25 * math.log({"C": 1000 / 0.1, "gamma": 1e-1 / 1e-5}[name]) + 1e-9
        assert low <= best_search[f"param_{name}"] <= high
        assert refined[f"param_{name}"].between(low, high).all()
    top_kernels = set(search.sort_values("mean_test_accuracy", ascending=False)["param_kernel"].head(3))
    assert set(refined["param_kernel"]) <= top_kernels
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["stage"] == table.loc[table["number"] == best["trial"], "stage"].item()
    assert json.loads((out / "run.json").read_text())["trials"]["complete"] == 16


def test_without_refine_nothing_changes_in_the_outputs(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("run", write_spec(SPEC.format(n_trials=3, refine="")), "--out", out).exit_code == 0
    assert "stage" not in pd.read_csv(out / "trials.csv").columns
    assert "stage" not in yaml.safe_load((out / "best.yaml").read_text())
    # refine is part of the fingerprint once set: adding it to the study is a change.
    changed = run_cli("run", write_spec(SPEC.format(n_trials=3, refine="refine: {n_trials: 2}")), "--out", out)
    assert changed.exit_code == 2 and "changed: refine" in changed.stderr


def test_refine_is_refused_with_a_grid(write_spec) -> None:
    text = SPEC.format(n_trials=4, refine="refine: {n_trials: 2}").replace("kind: bayesian", "kind: grid")
    text = text.replace("C: {type: float, low: 0.1, high: 1000, log: true}", "C: [1, 10]").replace(
        "gamma: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}", "gamma: [0.001]")
    result = run_cli("validate", write_spec(text))
    assert result.exit_code == 2 and "refine: a grid runs every point already" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_an_interrupted_refine_stage_resumes_in_the_same_narrowed_space(signum, write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = write_spec(SPEC.format(n_trials=6, refine="refine: {n_trials: 10}"))
    process = subprocess.Popen([sys.executable, "-m", "hptune", "run", str(spec), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            trials = _study(out).get_trials(deepcopy=False)
        except (KeyError, ValueError, FileNotFoundError):  # not created yet
            trials = []
        if len([t for t in trials if t.user_attrs.get("hptune_stage") == "refine" and t.state.is_finished()]) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == (130 if signum == signal.SIGINT else -signal.SIGKILL), stderr
    stored = _study(out).user_attrs[STUDY_REFINE]
    resumed = run_cli("run", spec, "--out", out)
    assert resumed.exit_code == 0, resumed
    study = _study(out)
    assert study.user_attrs[STUDY_REFINE] == stored  # the same space, the same budget
    done = [t for t in study.get_trials() if t.state.is_finished() and not t.user_attrs.get("hptune_interrupted")]
    assert len([t for t in done if t.user_attrs.get("hptune_stage") == "refine"]) == 10
    assert len([t for t in done if t.user_attrs.get("hptune_stage") is None]) == 6


class _Trial:
    def __init__(self, params: dict) -> None:
        self.params = params


def test_narrowing_keeps_ints_int_steps_on_their_grid_and_ranges_inside_their_bounds() -> None:
    space = {
        "lr": FloatParam(type="float", low=1e-4, high=1.0, log=True),
        "depth": IntParam(type="int", low=2, high=40, step=2),
        "frac": FloatParam(type="float", low=0.0, high=1.0, step=0.05),
        "kind": CategoricalParam(type="categorical", choices=["a", "b", "c"]),
    }
    best = _Trial({"lr": 1.0, "depth": 20, "frac": 0.5, "kind": "b"})
    narrowed, allowed = narrow(space, best, [best, _Trial({"kind": "c", "lr": 0.1, "depth": 4, "frac": 0.1})], 0.25)
    lr, depth, frac = narrowed["lr"], narrowed["depth"], narrowed["frac"]
    assert lr.high == pytest.approx(1.0) and lr.low == pytest.approx(10 ** -0.5)  # clipped at the top
    assert isinstance(depth.low, int) and (depth.low - 2) % 2 == 0 and (depth.high - 2) % 2 == 0
    assert depth.low <= 20 <= depth.high and depth.high - depth.low <= 0.25 * 38 + 2 * 2  # rounded out to the steps
    assert round((frac.low - 0.0) / 0.05, 9).is_integer() and frac.low <= 0.5 <= frac.high
    assert allowed == {"kind": ["b", "c"]}
