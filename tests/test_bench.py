"""The benchmark scripts keep working (a tiny budget; no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_benchmark_suite_runs_and_reports_every_measure(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--profile", "tiny", "--out", str(tmp_path)],
                   check=True, capture_output=True, text=True, timeout=600)
    report = json.loads((tmp_path / "results.json").read_text())
    measures = {row["measure"] for row in report["rows"]}
    peers = {row["peer_name"] for row in report["rows"]}
    assert {"GridSearchCV", "RandomizedSearchCV", "HalvingRandomSearchCV", "plain Optuna loop (in-memory)"} <= peers
    assert any("n_jobs 2 vs n_jobs 1" in m for m in measures) and any("peak RSS" in m for m in measures)
    assert any("hptune --help" in m for m in measures)
    for row in report["rows"]:
        if row["peer_name"] == "pool n_jobs 1":  # the machine's ceiling: the bare pool against itself
            assert row["hptune"] is None and row["ratio"] is not None and row["repetitions"] >= 1
        else:
            assert row["hptune"] is not None and row["repetitions"] >= 1
    assert "multiprocessing pool n_jobs 2" in peers and "pool n_jobs 1" in peers
    assert any("Ames-like" in row["task"] and row["peer_name"] == "GridSearchCV" for row in report["rows"])
    grid_rows = [r for r in report["rows"] if r["peer_name"] == "GridSearchCV" and "wall time" in r["measure"]]
    for row in grid_rows:  # the same scores as scikit-learn's, to rounding
        assert float(row["note"].rsplit("max difference ", 1)[1]) <= 1e-9
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n| ") >= len(report["rows"])
