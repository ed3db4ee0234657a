"""Mutated experiment files never crash the CLI: exit 0 or 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CONFIGS, run_cli

BASES = [yaml.safe_load(p.read_text()) for p in sorted(CONFIGS.glob("*.yaml"))]

junk = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated(draw):
    import copy

    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(junk)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(junk)
    text = yaml.safe_dump(doc, sort_keys=False)
    if draw(st.booleans()):  # and sometimes damage the text itself
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\t", ":", "- ", "{", "&a ", "*a", "!!python/object:os.system ", "\x00"])) + text[at:]
    return text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated())
def test_mutated_experiments_never_crash_validate(text: str, tmp_path: Path) -> None:
    spec = tmp_path / "fuzz.yaml"
    spec.write_text(text, encoding="utf-8", errors="surrogatepass")
    # The penguins example names a CSV relative to its file.
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "penguins.csv").write_bytes((CONFIGS / "data" / "penguins.csv").read_bytes())
    result = run_cli("validate", spec)  # re-raises anything but SystemExit
    assert result.exit_code in (0, 2), result
    assert "Traceback" not in result.stdout + result.stderr
    if result.exit_code == 2:
        assert result.stderr.strip().splitlines()[0].startswith(str(spec))
