"""On GitHub Actions, `run` appends a Markdown summary to GITHUB_STEP_SUMMARY: the scores, the
gate verdicts, the top trials; through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

SPEC = """
name: on-ci
data: {dataset: iris, test_size: 0.2}
model: {estimator: sklearn.linear_model.LogisticRegression, params: {max_iter: 1000}, preprocessing: none}
search_space:
  C: [0.1, 1.0, 10.0]
cv: {folds: 3}
strategy: {kind: grid}
gate: {min_cv_score: 0.5}
"""


def test_a_run_appends_its_summary_and_gates(write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = tmp_path / "out"
    assert run_cli("run", write_spec(SPEC), "--out", out).exit_code == 0
    missed = run_cli("run", write_spec(SPEC, "strict.yaml"), "--out", tmp_path / "strict", "--fail-under", "0.9999")
    assert missed.exit_code == 3
    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, never overwritten
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert "### hptune: experiment.yaml (complete, exit 0)" in text
    assert f"| cv accuracy | {best['cv_score']:.4f} ± {best['cv_std']:.4f} |" in text
    assert f"| test accuracy | {best['test_score']:.4f} |" in text
    assert "- ✅ passed: `min_cv_score` 0.5" in text and "**Top 3 trials**" in text
    assert "### hptune: strict.yaml (complete, exit 3)" in text and "- ❌ missed: `min_cv_score` 0.9999" in text


def test_an_invalid_file_says_so_and_nothing_is_written_without_the_variable(write_spec, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert run_cli("run", write_spec(SPEC.replace("folds: 3", "folds: 1")), "--out", tmp_path / "o").exit_code == 2
    assert "### hptune: experiment.yaml (exit 2)" in summary.read_text()
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    before = summary.read_text()
    assert run_cli("run", write_spec(SPEC), "--out", tmp_path / "p").exit_code == 0
    assert summary.read_text() == before
