"""`--json` on run and validate: exactly one JSON document on stdout, whatever happens, and every
human line on stderr; through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import run_cli

SPEC = """
name: machine-read
data: {dataset: iris, test_size: 0.2}
model: {estimator: sklearn.linear_model.LogisticRegression, params: {max_iter: 1000}, preprocessing: none}
search_space:
  C: [0.1, 1.0]
cv: {folds: 3}
strategy: {kind: grid}
"""


def test_run_json_is_the_only_thing_on_stdout(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", write_spec(SPEC), "--out", out, "--json")
    assert result.exit_code == 0, result
    document = json.loads(result.stdout)  # the whole of stdout is one document
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert document["command"] == "run" and document["exit_code"] == 0 and document["status"] == "complete"
    assert document["best"]["trial"] == best["trial"] and document["best"]["params"] == best["params"]
    assert document["best"]["test_score"] == best["test_score"] and document["metric"] == "accuracy"
    assert document["trials"]["complete"] == 2 and document["stop_reason"] == "budget"
    assert all(Path(path).exists() for path in document["files"].values())
    assert document["gates"] == [] and document["problems"] == [] and document["error"] is None
    assert "top trials by accuracy" in result.stderr  # the human summary, on stderr


def test_run_json_with_a_missed_gate_failed_trials_and_an_invalid_file(write_spec, tmp_path: Path) -> None:
    gated = run_cli("run", write_spec(SPEC), "--out", tmp_path / "a", "--json", "--fail-under", "0.9999")
    assert gated.exit_code == 3
    document = json.loads(gated.stdout)
    assert document["exit_code"] == 3 and document["gates"][0]["passed"] is False

    failing = SPEC.replace("C: [0.1, 1.0]", "C: [-1.0, -2.0]")
    failed = run_cli("run", write_spec(failing, "failing.yaml"), "--out", tmp_path / "b", "--json")
    assert failed.exit_code == 1
    document = json.loads(failed.stdout)
    assert document["status"] == "failed" and document["best"] is None and "all 2 trials failed" in document["error"]

    invalid = run_cli("run", write_spec(SPEC.replace("folds: 3", "folds: 1"), "bad.yaml"), "--out", tmp_path / "c", "--json")
    assert invalid.exit_code == 2
    document = json.loads(invalid.stdout)
    assert document["status"] == "invalid" and document["best"] is None
    (problem,) = document["problems"]
    assert problem["path"] == "cv.folds" and problem["line"] == 6 and problem["file"].endswith("bad.yaml")


def test_validate_json_lists_every_file_and_problem(write_spec) -> None:
    good = write_spec(SPEC, "good.yaml")
    bad = write_spec(SPEC.replace("kind: grid", "kind: gird"), "bad.yaml")
    result = run_cli("validate", good, bad, "--json")
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document["valid"] is False and [f["valid"] for f in document["files"]] == [True, False]
    assert document["files"][0]["estimator"] == "sklearn.linear_model.LogisticRegression"
    (problem,) = document["problems"]
    assert problem["path"] == "strategy.kind" and problem["line"] == 7 and "gird" in problem["message"]
    assert "1 problem found" in result.stderr
