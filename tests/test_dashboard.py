"""`hptune dashboard`: optuna-dashboard served on a run's study, fetched over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import run_cli

SPEC = """
name: watched
data: {dataset: iris, test_size: 0.2}
model: {estimator: sklearn.tree.DecisionTreeClassifier}
search_space:
  max_depth: {type: int, low: 1, high: 6}
cv: {folds: 3}
strategy: {kind: random, n_trials: 4}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def test_the_dashboard_serves_the_run_s_study_until_stopped(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("run", write_spec(SPEC), "--out", out).exit_code == 0
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "hptune", "dashboard", str(out), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline, studies = time.monotonic() + 60, None
        while studies is None and time.monotonic() < deadline and server.poll() is None:
            try:
                studies = json.loads(_get(f"http://127.0.0.1:{port}/api/studies")[1])["study_summaries"]
            except OSError:
                time.sleep(0.2)
        assert studies is not None, server.stderr.read().decode() if server.poll() is not None else "no answer"
        (study,) = studies
        assert study["study_name"] == "watched" and study["directions"] == ["maximize"]
        status, page = _get(f"http://127.0.0.1:{port}/dashboard/studies/{study['study_id']}")
        assert status == 200 and b"<html" in page.lower()
        trials = json.loads(_get(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}?after=0")[1])["trials"]
        assert len(trials) == 4
        # A second one on the same port: one line, exit 2.
        taken = subprocess.run([sys.executable, "-m", "hptune", "dashboard", str(out), "--port", str(port)],
                               capture_output=True, text=True, timeout=60)
        assert taken.returncode == 2 and f"error: cannot serve on 127.0.0.1:{port}: " in taken.stderr
    finally:
        server.send_signal(signal.SIGTERM)  # as docker stop or kill; Ctrl-C goes the same way
        try:
            _, err = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()  # never leave a server behind, even when the test fails
            raise
    assert server.returncode == 0, err.decode()
    assert f"http://127.0.0.1:{port}/" in err.decode() and "Traceback" not in err.decode()


def test_without_the_extra_the_error_says_what_to_install(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("run", write_spec(SPEC), "--out", out).exit_code == 0
    # A package that fails to import, first on the path: what a machine without the extra sees.
    shadow = tmp_path / "shadow" / "optuna_dashboard"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named optuna_dashboard')\n")
    env = {**os.environ, "PYTHONPATH": f"{shadow.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-m", "hptune", "dashboard", str(out), "--port", str(_free_port())],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == \
        "error: hptune dashboard needs optuna-dashboard: pip install 'hptune[dashboard]'"


def test_a_folder_without_a_study_and_a_masked_database_url(tmp_path: Path) -> None:
    empty = run_cli("dashboard", tmp_path)
    assert empty.exit_code == 2 and "holds no study" in empty.stderr
    (tmp_path / "run.json").write_text(json.dumps({"study": {"storage": "postgresql://tuner:***@db/studies"}}))
    masked = run_cli("dashboard", tmp_path)
    assert masked.exit_code == 2
    assert "password run.json does not keep: pass --storage with the full URL" in masked.stderr
