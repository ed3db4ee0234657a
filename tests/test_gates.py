"""Quality gates (`gate:` and --fail-under): a finished run whose model is not good enough
exits 3 after writing every output; through the real CLI on real data."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import run_cli

SPEC = """
name: gated
data: {{dataset: breast_cancer, test_size: {test_size}}}
model: {{estimator: logistic_regression, params: {{max_iter: 2000}}}}
search_space:
  C: [0.01, 1.0]
cv: {{folds: 3}}
strategy: {{kind: grid}}
{extra}
"""


def _spec(write_spec, extra: str = "", test_size: float = 0.2) -> Path:
    return write_spec(SPEC.format(extra=extra, test_size=test_size))


def test_a_passed_gate_exits_0_and_is_recorded(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", _spec(write_spec, "gate: {min_cv_score: 0.5, min_test_score: 0.5}"), "--out", out)
    assert result.exit_code == 0, result
    record = json.loads((out / "run.json").read_text())
    assert [g["gate"] for g in record["gates"]] == ["min_cv_score", "min_test_score"]
    assert all(g["passed"] for g in record["gates"])
    assert record["gates"][0]["value"] == record["cv_score"] and record["gates"][1]["value"] == record["test_score"]
    assert "gate min_cv_score 0.5: passed" in result.stdout


def test_fail_under_a_score_no_model_reaches_exits_3_after_writing_everything(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", _spec(write_spec), "--out", out, "--fail-under", "0.999")
    assert result.exit_code == 3, result
    cv = yaml.safe_load((out / "best.yaml").read_text())["cv_score"]
    assert result.stderr.strip().splitlines()[-1] == f"gate missed: min_cv_score 0.999: cv accuracy is {cv:.4f}"
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["gates"] == [
        {"gate": "min_cv_score", "threshold": 0.999, "value": cv, "passed": False}]
    assert {"trials.csv", "best.yaml", "model.joblib"} <= set(record["files"])
    # The gate judges, it does not change the experiment: the same study, nothing re-run.
    again = run_cli("run", _spec(write_spec), "--out", out)
    assert again.exit_code == 0 and "resumed after 2" in again.stdout


def test_a_missed_test_score_gate_exits_3(write_spec, tmp_path: Path) -> None:
    result = run_cli("run", _spec(write_spec, "gate: {min_test_score: 0.9999}"), "--out", tmp_path / "out")
    assert result.exit_code == 3 and "gate missed: min_test_score 0.9999: test accuracy is" in result.stderr


def test_gates_that_cannot_be_judged_are_refused_at_their_line(write_spec) -> None:
    spec = _spec(write_spec, "gate: {min_test_score: 0.9}", test_size=0)
    result = run_cli("validate", spec)
    assert result.exit_code == 2
    assert f"{spec}:8:8: gate.min_test_score: needs a held-out test score: data.test_size is 0" in result.stderr
    empty = run_cli("validate", _spec(write_spec, "gate: {}"))
    assert empty.exit_code == 2 and "gate: sets no gate" in empty.stderr
