"""`hptune show`: a finished run read back from its files alone, through the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import yaml

from tests.conftest import run_cli

SPEC = """
name: shown
data: {dataset: iris, test_size: 0.2}
model: {estimator: sklearn.linear_model.LogisticRegression, params: {max_iter: 1000}, preprocessing: none}
search_space:
  C: {type: float, low: 0.001, high: 100, log: true}
  fit_intercept: [true, false]
cv: {folds: 3}
strategy: {kind: random, n_trials: 8}
"""


def _run(write_spec, tmp_path: Path, spec: str = SPEC) -> Path:
    out = tmp_path / "run"
    assert run_cli("run", write_spec(spec), "--out", out).exit_code in (0, 1)
    return out


def test_show_reads_the_files_alone_even_moved_to_another_place(write_spec, tmp_path: Path) -> None:
    out = _run(write_spec, tmp_path)
    # As a CI artifact would arrive: the output files only, somewhere else, no study.
    moved = tmp_path / "artifact"
    shutil.copytree(out, moved)
    (moved / "study.journal").unlink()
    shutil.rmtree(out)
    result = run_cli("show", moved, "--json", "--top", "3")
    assert result.exit_code == 0, result
    shown = json.loads(result.stdout)
    run = json.loads((moved / "run.json").read_text())
    best = yaml.safe_load((moved / "best.yaml").read_text())
    assert shown["experiment"] == "shown" and shown["status"] == run["status"] == "complete"
    assert shown["best"]["trial"] == best["trial"] == run["best_trial"]
    assert shown["best"]["params"] == best["params"] and shown["best"]["test_score"] == best["test_score"]
    assert shown["best"]["model_is_this_trial"] is True
    table = pd.read_csv(moved / "trials.csv").sort_values(["rank_test_accuracy", "number"])
    assert [row["trial"] for row in shown["top"]] == table["number"].head(3).tolist()
    assert shown["top"][0]["cv_score"] == table["mean_test_accuracy"].iloc[0]
    assert shown["trials"] == run["trials"] and sum(run["trials"].values()) == 8


def test_show_prints_the_table_and_the_best(write_spec, tmp_path: Path) -> None:
    out = _run(write_spec, tmp_path)
    result = run_cli("show", out, "--top", "2")
    assert result.exit_code == 0, result
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert "top trials by accuracy" in result.stdout
    assert f"best trial {best['trial']}:" in result.stdout
    assert f"cv accuracy: {best['cv_score']:.4f} ± {best['cv_std']:.4f}" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 2


def test_show_refuses_a_folder_whose_files_changed_or_hold_no_run(write_spec, tmp_path: Path) -> None:
    out = _run(write_spec, tmp_path)
    with (out / "trials.csv").open("a") as table:
        table.write("99,COMPLETE\n")
    result = run_cli("show", out)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {out / 'trials.csv'} changed after run.json was written (its sha256 differs)"
    empty = run_cli("show", tmp_path / "nothing")
    assert empty.exit_code == 2 and "holds no hptune run" in empty.stderr and "Traceback" not in empty.stderr


def test_show_on_a_run_without_a_best(write_spec, tmp_path: Path) -> None:
    out = _run(write_spec, tmp_path, SPEC + "constraints: {max_fit_time: 0.000001}\n")
    result = run_cli("show", out)
    assert result.exit_code == 0, result
    assert "no best trial: no trial kept every constraint" in result.stdout
    shown = json.loads(run_cli("show", out, "--json").stdout)
    assert shown["best"] is None and shown["status"] == "infeasible" and shown["constraints"]["feasible"] == 0
