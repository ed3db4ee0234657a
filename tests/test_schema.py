"""The experiment file's JSON Schema: the committed file is what `hptune schema` generates, every
bundled example validates against it with a real JSON Schema validator, and a wrong type does not."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import CONFIGS, ROOT, run_cli

COMMITTED = ROOT / "hptune.schema.json"
EXAMPLES = sorted(CONFIGS.glob("*.yaml"))


def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(COMMITTED.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_committed_schema_is_the_generated_one(tmp_path: Path) -> None:
    result = run_cli("schema")
    assert result.exit_code == 0
    assert result.stdout == COMMITTED.read_text(), "run `hptune schema -o hptune.schema.json` and commit it"
    assert run_cli("schema", "-o", tmp_path / "s.json").exit_code == 0
    assert (tmp_path / "s.json").read_text() == COMMITTED.read_text()


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_every_example_names_the_schema_and_validates_against_it(example: Path) -> None:
    text = example.read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../hptune.schema.json"
    errors = list(_validator().iter_errors(yaml.safe_load(text)))
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize("change", [
    {"strategy": {"n_trials": "many"}},
    {"cv": {"folds": 1}},
    {"search_space": {"C": {"type": "float", "low": 1}}},
    {"stratgy": {"kind": "grid"}},
    {"constraints": {"max_model_mb": "big"}},
], ids=["text-for-a-number", "below-minimum", "missing-high", "unknown-key", "constraint-type"])
def test_a_wrong_file_does_not_validate(change: dict) -> None:
    document = yaml.safe_load((CONFIGS / "quickstart.yaml").read_text())
    for key, value in change.items():
        document[key] = {**document.get(key, {}), **value} if isinstance(document.get(key), dict) else value
    assert list(_validator().iter_errors(document))
