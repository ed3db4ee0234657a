"""The fingerprint of what an experiment means, so a study refuses a changed experiment but
keeps resuming across upgrades.

A study stores a short hash of each part of the experiment that changes results (data, task,
model, search space, metrics, CV, seed, strategy kind); ``run`` compares them and names the
parts that changed. The budget, n_jobs, failure limits and where things are stored are left
out: changing them continues the same study.

Upgrades: every later release adds keys with defaults. Hashing whole sections would make each
new key change every fingerprint, and every existing study would refuse to resume. So a part
hashes the keys 0.1.0 knew (``KEYS_0_1_0``) with their values, explicit or default, exactly as
0.1.0 did, and a key added since only when it is set to something other than its default: an
experiment that does not use a new key keeps its fingerprint, and one that does changes it.

If a release ever has to hash differently, it raises ``VERSION`` and keeps computing the
older versions for the studies that stored them (``STUDY_FINGERPRINT_VERSION``; none stored
means version 1).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hptune.validate import ValidatedExperiment

VERSION = 1

#: The keys of each schema model in hptune 0.1.0, whose fingerprints every later release
#: reproduces. Never edit this: new keys are hashed only when set to a non-default value.
KEYS_0_1_0: dict[str, frozenset[str]] = {
    "DataSpec": frozenset({"dataset", "path", "target", "drop", "groups", "test_size"}),
    "ModelSpec": frozenset({"estimator", "params", "preprocessing"}),
    "FloatParam": frozenset({"type", "low", "high", "log", "step", "grid", "when"}),
    "IntParam": frozenset({"type", "low", "high", "log", "step", "grid", "when"}),
    "CategoricalParam": frozenset({"type", "choices", "when"}),
    "CVSpec": frozenset({"kind", "folds", "shuffle", "repeats", "test_size", "train_scores"}),
}


def fingerprint_parts(exp: ValidatedExperiment) -> dict[str, str]:
    """A short hash of each part of ``exp`` that changes results."""
    spec = exp.spec
    parts = {
        "data": {"spec": _meaning(spec.data), "sha256": exp.data.sha256},
        "task": exp.task,
        # 0.1.0 let the file's alias overwrite the resolved path here; kept, to stay identical.
        "model": {"estimator": exp.estimator_path, **_meaning(spec.model)},
        "search_space": {name: _meaning(param) for name, param in spec.search_space.items()},
        "metric": [exp.metric, *spec.extra_metrics],
        "cv": _meaning(spec.cv),
        "seed": spec.seed,
        "strategy": spec.strategy.kind,
    }
    if spec.refine is not None:  # a part only when set: studies without it keep their fingerprint
        parts["refine"] = _meaning(spec.refine)
    if spec.objectives is not None:  # what each trial's values are (select only picks among them)
        parts["objectives"] = list(spec.objectives)
    return {name: digest(value)[:16] for name, value in parts.items()}


def changed_parts(stored: dict[str, str], current: dict[str, str]) -> list[str]:
    """The names of the parts whose hashes differ (a part only one side has counts)."""
    return [name for name in {**stored, **current} if stored.get(name) != current.get(name)]


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _meaning(value: Any) -> Any:
    """``value`` as JSON data, leaving out keys added after 0.1.0 that are at their default."""
    from pydantic import BaseModel
    from pydantic_core import to_jsonable_python

    if isinstance(value, BaseModel):
        known = KEYS_0_1_0.get(type(value).__name__, frozenset())
        meaning: dict[str, Any] = {}
        for name, info in type(value).model_fields.items():
            field_value = getattr(value, name)
            if name not in known and field_value == info.get_default(call_default_factory=True):
                continue
            meaning[name] = _meaning(field_value)
        return meaning
    if isinstance(value, dict):
        return {str(key): _meaning(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_meaning(item) for item in value]
    return to_jsonable_python(value)
