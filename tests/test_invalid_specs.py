"""Every invalid experiment under tests/specs/invalid, through the real CLI.

Each ``name.yaml`` sits next to ``name.expected``: the exact lines `hptune validate` must print.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_cli

INVALID = Path(__file__).parent / "specs" / "invalid"
CASES = sorted(INVALID.glob("*.yaml"))


@pytest.mark.parametrize("spec", CASES, ids=[c.stem for c in CASES])
def test_invalid_spec_reports_every_problem_at_its_line(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(INVALID)
    result = run_cli("validate", spec.name)
    expected = spec.with_suffix(".expected").read_text().splitlines()
    assert result.exit_code == 2, result
    lines = result.stderr.splitlines()
    assert lines[:-1] == expected
    assert lines[-1].endswith("found; nothing was trained.")
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("spec", CASES, ids=[c.stem for c in CASES])
def test_run_on_invalid_spec_trains_nothing_and_writes_nothing(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out)
    assert result.exit_code == 2, result
    assert not out.exists()


def test_python_tag_is_never_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    spec = tmp_path / "evil.yaml"
    spec.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert run_cli("validate", spec).exit_code == 2
    assert not marker.exists()


def test_allow_module_lets_a_trusted_package_through(write_spec) -> None:
    # A module outside the allow-list is refused by name, then accepted with --allow-module;
    # it still has to be an estimator.
    spec = write_spec(
        """
        name: custom
        data: {dataset: iris}
        model: {estimator: collections.OrderedDict}
        search_space:
          C: [1, 2]
        """
    )
    refused = run_cli("validate", spec)
    assert "outside the allowed modules" in refused.stderr
    allowed = run_cli("validate", spec, "--allow-module", "collections")
    assert allowed.exit_code == 2
    assert "'collections.OrderedDict' is not a scikit-learn-compatible estimator" in allowed.stderr


def test_validate_reports_several_files_at_once(tmp_path: Path) -> None:
    result = run_cli("validate", INVALID / "typos.yaml", INVALID / "tabs.yaml", Path(os.devnull).parent / "nowhere.yaml")
    assert result.exit_code == 2
    assert "typos.yaml:4:3: model.estimater" in result.stderr
    assert "tabs.yaml:3:1: tab character" in result.stderr
    assert "nowhere.yaml:1:1: file not found" in result.stderr


def test_a_50_mb_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    spec = tmp_path / "huge.yaml"
    with spec.open("w") as handle:
        handle.write("name: huge\ncomment: |\n")
        line = "  " + "x" * 98 + "\n"
        for _ in range(500_000):
            handle.write(line)
    result = run_cli("run", spec, "--out", tmp_path / "out")
    assert result.exit_code == 2
    size = spec.stat().st_size / 1e6
    assert size > 50
    assert result.stderr.splitlines()[0] == f"{spec}:1:1: file is {size:.1f} MB; an experiment file may be at most 1 MB"
    assert not (tmp_path / "out").exists()
