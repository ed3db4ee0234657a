"""`hptune compare A B`: parameters side by side and the CV difference against the folds' noise,
through the real CLI on real runs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import yaml

from tests.conftest import run_cli

SPEC = """
name: {name}
seed: {seed}
data: {{dataset: breast_cancer, test_size: 0.2}}
model: {{estimator: {estimator}, params: {params}}}
search_space:
  {space}
cv: {{folds: 5}}
strategy: {{kind: grid}}
"""


def _run(write_spec, tmp_path: Path, name: str, seed: int = 0, estimator: str = "logistic_regression",
         params: str = "{max_iter: 2000}", space: str = "C: [0.1, 1.0]") -> Path:
    out = tmp_path / name
    spec = write_spec(SPEC.format(name=name, seed=seed, estimator=estimator, params=params, space=space), f"{name}.yaml")
    assert run_cli("run", spec, "--out", out).exit_code == 0
    return out


def _folds(out: Path) -> list[float]:
    best = yaml.safe_load((out / "best.yaml").read_text())
    row = pd.read_csv(out / "trials.csv").set_index("number").loc[best["trial"]]
    return [row[f"split{k}_test_accuracy"] for k in range(5)]


def _corrected(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1) * (1 / 5 + 1 / 4)


def test_the_same_folds_are_paired_and_a_real_gap_is_beyond_the_noise(write_spec, tmp_path: Path) -> None:
    dummy = _run(write_spec, tmp_path, "dummy", estimator="sklearn.dummy.DummyClassifier", params="{}",
                 space="strategy: [prior, most_frequent]")
    linear = _run(write_spec, tmp_path, "linear")
    assert json.loads((dummy / "run.json").read_text())["data"]["folds_sha256"] == \
        json.loads((linear / "run.json").read_text())["data"]["folds_sha256"]
    result = run_cli("compare", dummy, linear)
    assert result.exit_code == 0, result
    differences = [b - a for a, b in zip(_folds(dummy), _folds(linear), strict=True)]
    se = math.sqrt(_corrected(differences))
    gap = sum(differences) / 5
    said = " ".join(result.stdout.split())
    assert f"cv accuracy: B - A = {gap:+.4f} ± {se:.4f} (standard error, paired over the same folds): larger than the noise" in said
    # Parameters of either side, side by side, the ones that differ marked.
    assert "strategy *" in said and "C *" in said


def test_a_small_gap_on_other_folds_is_unpaired_and_within_the_noise(write_spec, tmp_path: Path) -> None:
    a = _run(write_spec, tmp_path, "a", seed=0)
    b = _run(write_spec, tmp_path, "b", seed=1, space="C: [0.2, 2.0]")
    result = run_cli("compare", a, b)
    assert result.exit_code == 0, result
    se = math.sqrt(_corrected(_folds(a)) + _corrected(_folds(b)))
    said = " ".join(result.stdout.split())
    assert f"± {se:.4f} (standard error, the two runs' folds differ: unpaired): within the noise" in said


def test_best_yaml_files_and_what_cannot_be_compared(write_spec, tmp_path: Path) -> None:
    a = _run(write_spec, tmp_path, "a")
    b = _run(write_spec, tmp_path, "b", space="C: [0.01, 10.0]")
    # A best.yaml in its run folder finds its fold scores beside it; one on its own has none.
    beside = run_cli("compare", a / "best.yaml", b / "best.yaml")
    assert beside.exit_code == 0 and "paired over the same folds" in beside.stdout
    alone = tmp_path / "committed.yaml"
    shutil.copy(b / "best.yaml", alone)
    lonely = run_cli("compare", a, alone)
    assert lonely.exit_code == 0 and "the noise is unknown" in " ".join(lonely.stdout.split())
    other = yaml.safe_load(alone.read_text()) | {"metric": "roc_auc"}
    alone.write_text(yaml.safe_dump(other))
    refused = run_cli("compare", a, alone)
    assert refused.exit_code == 2 and "cannot be compared" in refused.stderr
    missing = run_cli("compare", a, tmp_path / "nope.yaml")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
