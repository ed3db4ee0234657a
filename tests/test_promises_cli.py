"""README promises about the command line itself: --version, --debug, the progress display on a
terminal and in a pipe, colours and NO_COLOR, --quiet.

Terminal behaviour needs a real terminal, so those tests run `python -m hptune` under a pty.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import yaml

from tests.conftest import run_cli

TREE_IRIS = """
name: tree-iris
seed: 2
data: {dataset: iris}
model: {estimator: decision_tree}
search_space:
  max_depth: {type: int, low: 1, high: 8}
  min_samples_leaf: {type: int, low: 1, high: 20}
cv: {folds: 3}
strategy: {kind: random, n_trials: 20}
"""

BAD = """
name: bad
data: {dataset: digit}
model: {estimator: svc}
search_space:
  C: {type: float, low: 0.1, high: 10}
"""

# An SGR escape (ESC [ params m); the parameters that set a foreground or background colour.
SGR = re.compile(r"\x1b\[([0-9;]*)m")
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COLOUR_CODES = {str(c) for c in [*range(30, 39), *range(40, 49), *range(90, 98), *range(100, 108)]}


def _colour_escapes(text: str) -> list[str]:
    return [m.group(0) for m in SGR.finditer(text) if COLOUR_CODES & set(m.group(1).split(";"))]


def _bar_lines(shown: str) -> list[str]:
    """The progress bar's renderings, escapes removed (rich redraws it in place with \\r)."""
    lines = (CSI.sub("", line) for line in re.split(r"[\r\n]", shown))
    return [line for line in lines if line.startswith("trials ")]


def _env(**extra: str) -> dict[str, str]:
    """The environment of a plain interactive terminal: no colour switches set either way."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES", "CI", "HPTUNE_DEBUG")}
    env.update(TERM="xterm-256color", **extra)
    return env


def _hptune(*args: object, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hptune", *map(str, args)],
        capture_output=True, text=True, timeout=300, env=env or _env(), cwd=cwd,
    )


def _hptune_on_a_terminal(*args: object, env: dict[str, str], limit: float = 300) -> tuple[int, str]:
    """Run hptune with stdin, stdout and stderr on one pty; return its exit code and all it wrote."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "hptune", *map(str, args)], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the slave closed it
                break
            if not data:
                break
            chunks.append(data)
        else:
            process.kill()
            raise AssertionError("hptune did not finish on the terminal in time")
        return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)


def test_version_prints_the_installed_version() -> None:
    result = run_cli("--version")
    assert result.exit_code == 0, result
    assert result.stdout == f"hptune {version('hptune')}\n"


def test_debug_shows_a_traceback_for_a_bad_experiment_and_plain_runs_do_not(write_spec) -> None:
    spec = write_spec(BAD)
    plain = _hptune("run", spec, "--out", spec.parent / "o")
    assert plain.returncode == 2
    assert "data.dataset: expected one of" in plain.stderr and "Traceback" not in plain.stderr + plain.stdout

    debug = _hptune("--debug", "run", spec, "--out", spec.parent / "o")
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr and "data.dataset: expected one of" in debug.stderr
    assert not (spec.parent / "o").exists()


def test_debug_shows_library_logs(write_spec, tmp_path: Path) -> None:
    # hptune logs (INFO) when it starts its worker processes, so this run uses two.
    spec = write_spec(TREE_IRIS.replace("n_trials: 20}", "n_trials: 4, n_jobs: 2}"))
    result = _hptune("--debug", "run", spec, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    hptune_logs = re.findall(r"^INFO hptune(?:\.\w+)*: .+$", result.stderr, re.MULTILINE)
    assert hptune_logs, result.stderr
    assert (tmp_path / "out" / "model.joblib").exists()


def test_a_pipe_gets_a_line_every_tenth_of_the_budget_and_no_escapes(write_spec, tmp_path: Path) -> None:
    result = _hptune("run", write_spec(TREE_IRIS), "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    lines = re.findall(r"^trial (\d+)/20 done, best accuracy (\S+)$", result.stderr, re.MULTILINE)
    assert [int(done) for done, _ in lines] == list(range(2, 21, 2)), result.stderr
    assert lines[-1][1] == f"{best['cv_score']:.4f}"
    everything = result.stdout + result.stderr
    assert "\x1b[" not in everything and not _bar_lines(everything) and " eta " not in everything
    assert "INFO " not in result.stderr  # library logs only with --debug
    assert f"cv accuracy: {best['cv_score']:.4f}" in result.stdout


def test_a_terminal_gets_a_coloured_progress_bar(write_spec, tmp_path: Path) -> None:
    code, shown = _hptune_on_a_terminal("run", write_spec(TREE_IRIS), "--out", tmp_path / "out", env=_env())
    assert code == 0, shown
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    bar = _bar_lines(shown)
    assert bar, shown
    assert "20/20" in bar[-1] and " eta " in bar[-1] and f"best accuracy {best['cv_score']:.4f}" in bar[-1]
    assert _colour_escapes(shown), shown
    assert "trial 20/20 done" not in shown  # the bar, not the CI lines


def test_no_color_on_a_terminal_keeps_the_bar_without_colours(write_spec, tmp_path: Path) -> None:
    code, shown = _hptune_on_a_terminal("run", write_spec(TREE_IRIS), "--out", tmp_path / "out", env=_env(NO_COLOR="1"))
    assert code == 0, shown
    bar = _bar_lines(shown)
    assert bar and "20/20" in bar[-1] and " eta " in bar[-1] and "best accuracy" in bar[-1], shown
    assert not _colour_escapes(shown), _colour_escapes(shown)[:5]


def test_quiet_on_a_terminal_shows_no_bar_only_the_summary(write_spec, tmp_path: Path) -> None:
    code, shown = _hptune_on_a_terminal("run", write_spec(TREE_IRIS), "--out", tmp_path / "out", "-q", env=_env())
    assert code == 0, shown
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert not _bar_lines(shown) and " eta " not in shown and "done, best" not in shown
    assert f"cv accuracy: {best['cv_score']:.4f}" in shown
