"""The JSON Schema of the experiment file, generated from the pydantic models in ``hptune.spec``.

Editors use it to complete keys and flag wrong types as the file is typed (the
``# yaml-language-server: $schema=...`` line at the top of a file). It describes the shape
``validate`` checks first; the meaning checks (does the estimator take this parameter, does the
data have that column) need the file's surroundings and stay ``validate``'s. The repository
commits it as ``hptune.schema.json``; a test keeps that file equal to what this module makes.
"""

from __future__ import annotations

import json
from typing import Any

#: Where the committed schema lives, relative to the repository root (and to configs/).
SCHEMA_FILE = "hptune.schema.json"


def experiment_schema() -> dict[str, Any]:
    """The schema as a dict: JSON Schema 2020-12, as pydantic generates it for validation input."""
    from hptune.spec import Experiment

    schema = Experiment.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "hptune experiment",
        "description": "An hptune experiment file (hptune run FILE). Every key: see the README.",
        **{key: value for key, value in schema.items() if key not in ("title", "description")},
    }


def schema_text() -> str:
    """The schema as the committed file holds it: stable key order, a final newline."""
    return json.dumps(experiment_schema(), indent=2, sort_keys=True) + "\n"
