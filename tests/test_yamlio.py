from __future__ import annotations

from pathlib import Path

import pytest

from hptune.errors import SpecError
from hptune.yamlio import MAX_FILE_BYTES, dotted, load_yaml


def test_positions_are_recorded_for_keys_and_items(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text("name: x\nmodel:\n  estimator: svc\nextra_metrics:\n  - f1\n  - recall\n")
    loaded = load_yaml(path)
    assert loaded.data == {"name": "x", "model": {"estimator": "svc"}, "extra_metrics": ["f1", "recall"]}
    assert loaded.positions[("model", "estimator")] == (3, 3)
    assert loaded.positions[("extra_metrics", 1)] == (6, 5)


def test_missing_key_is_located_at_its_parent(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text("name: x\nmodel:\n  params: {}\n")
    issue = load_yaml(path).issue(("model", "estimator"), "required")
    assert (issue.line, issue.column, issue.path) == (2, 1, "model.estimator")


def test_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text("base: &b {low: 1, high: 2}\nC: {<<: *b, type: float}\n")
    assert load_yaml(path).data["C"] == {"low": 1, "high": 2, "type": "float"}


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: " + b"x" * (50 * 1024 * 1024) + b"\n")
    with pytest.raises(SpecError) as info:
        load_yaml(path)
    assert f"file is 52.4 MB; an experiment file may be at most {MAX_FILE_BYTES / 1e6:g} MB" in str(info.value)


def test_recursive_alias_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("a: &x\n  b: *x\n")
    with pytest.raises(SpecError, match="nested more than 64 levels deep"):
        load_yaml(path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8 text"):
        load_yaml(path)


def test_dotted_paths() -> None:
    assert dotted(("search_space", "C", "low")) == "search_space.C.low"
    assert dotted(("extra_metrics", 2)) == "extra_metrics[2]"
