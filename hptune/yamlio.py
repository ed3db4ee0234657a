"""Read YAML safely and remember where every value came from.

Experiment files are read with PyYAML's safe loader (no tags that build objects) and turned
into plain Python values by hand, so that we can record the line and column of each key and
item, reject duplicate keys (plain PyYAML silently keeps the last one), and bound what a
hostile file can make us do: its size, the number of values aliases expand to, and nesting.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hptune.errors import SpecError, SpecIssue

#: Largest experiment file we read; a real one is a few kilobytes.
MAX_FILE_BYTES = 1_000_000
#: Most values a file may expand to once aliases are followed ("billion laughs" guard).
MAX_VALUES = 100_000
#: Deepest nesting accepted; also stops recursive aliases before Python's recursion limit.
MAX_DEPTH = 64

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"

Path_ = tuple[str | int, ...]


@dataclass
class LoadedYaml:
    """A YAML document as plain values plus the position (line, column; 1-based) of each path."""

    file: str
    data: Any
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    #: Of the bytes that were read: what run.json reports, whatever happens to the file later.
    sha256: str = ""
    #: Paths a ``--set`` on the command line gave a value, and the override as written.
    overridden: dict[Path_, str] = field(default_factory=dict)

    def locate(self, path: Path_) -> tuple[Path_, tuple[int, int]]:
        """Return the longest prefix of ``path`` that exists in the file, and its position.

        A missing key is reported at its parent mapping, the closest place the user can fix.
        """
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in self.positions:
                return prefix, self.positions[prefix]
        return (), (1, 1)

    def issue(self, path: Path_, message: str) -> SpecIssue:
        for end in range(len(path), 0, -1):  # a value --set gave: the override is where to fix it
            if path[:end] in self.overridden:
                return SpecIssue(f"--set {dotted(path)}", 0, 0, "", message)
        _, (line, column) = self.locate(path)
        return SpecIssue(self.file, line, column, dotted(path), message)

    def apply_sets(self, sets: list[str]) -> list[SpecIssue]:
        """Put each ``dotted.key=value`` of ``--set`` into the data (the value read as YAML, as
        the file's would be); the problems with the overrides themselves."""
        problems = []
        for text in sets:
            key, equals, value = text.partition("=")
            path = tuple(part for part in key.strip().split(".") if part)
            if not equals or not path:
                problems.append(SpecIssue(f"--set {text}", 0, 0, "", "expected dotted.key=value, such as strategy.n_trials=200"))
                continue
            try:
                parsed = yaml.load(value, Loader=_Loader) if value.strip() else None
            except yaml.YAMLError as exc:
                problems.append(SpecIssue(f"--set {key}", 0, 0, "", f"the value is not YAML: {' '.join(str(exc).split())}"))
                continue
            if not isinstance(self.data, dict):
                continue  # the file itself is not a mapping: reported as such
            parent = self.data
            for part in path[:-1]:
                if not isinstance(parent.get(part), dict):
                    parent[part] = {}
                parent = parent[part]
            parent[path[-1]] = parsed
            self.overridden[path] = text
        return problems


def dotted(path: Path_) -> str:
    """Render a path the way users write it: ``search_space.C.low``, ``extra_metrics[1]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class _RefusedYaml(yaml.MarkedYAMLError):
    """A document PyYAML could read but we refuse; its message is already plain language."""


class _Loader(yaml.SafeLoader):
    """The safe loader; a subclass so nothing we change leaks into PyYAML's global state."""


def load_yaml(path: Path, display_name: str | None = None) -> LoadedYaml:
    """Read ``path`` into a :class:`LoadedYaml`, raising :class:`SpecError` on any problem."""
    name = display_name or str(path)

    def fail(message: str, line: int = 1, column: int = 1) -> SpecError:
        return SpecError([SpecIssue(name, line, column, "", message)])

    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise fail(
                f"file is {size / 1e6:.1f} MB; an experiment file may be at most "
                f"{MAX_FILE_BYTES / 1e6:g} MB"
            )
        raw = path.read_bytes()
    except IsADirectoryError:
        raise fail("is a directory, expected an experiment YAML file") from None
    except FileNotFoundError:
        raise fail("file not found") from None
    except OSError as exc:
        raise fail(f"cannot read file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text (bad byte at offset {exc.start})") from None

    # PyYAML checks characters chunk by chunk, so a bad one can surface at any point.
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            raise fail("file is empty, expected a mapping of experiment settings")
        converter = _Converter(loader, name)
        data = converter.convert(node, (), 0)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise fail(_plain_yaml_message(exc), line, column) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise fail(f"character #x{exc.character:04x} is not allowed in YAML", line, column) from None
    except yaml.YAMLError as exc:  # unmarked errors are rare; still one line, no traceback
        raise fail(f"not valid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if converter.issues:
        raise SpecError(converter.issues)
    if not isinstance(data, dict):
        raise fail(
            f"expected a mapping of experiment settings (name: ..., model: ...), "
            f"found {_kind(data)}",
            *_start(node),
        )
    return LoadedYaml(name, data, converter.positions, hashlib.sha256(raw).hexdigest())


def _plain_yaml_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or str(exc)
    if isinstance(exc, _RefusedYaml):
        return problem
    if "'\\t'" in problem:
        return "tab character in indentation; YAML is indented with spaces"
    if "could not determine a constructor for the tag" in problem:
        return _refused_tag(problem.split("tag", 1)[1].strip())
    context = f" {exc.context}" if exc.context else ""
    return f"not valid YAML: {problem}{context}".strip()


def _refused_tag(tag: str) -> str:
    tag = tag.replace("tag:yaml.org,2002:", "!!")
    return f"YAML tag {tag} is not allowed (tags that build objects are never run)"


def _start(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"


class _Converter:
    def __init__(self, loader: _Loader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.positions: dict[Path_, tuple[int, int]] = {}
        self.issues: list[SpecIssue] = []
        self.values = 0

    def _fail(self, node: yaml.Node, message: str) -> yaml.MarkedYAMLError:
        return _RefusedYaml(problem=message, problem_mark=node.start_mark)

    def convert(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise self._fail(
                node, f"document expands to more than {MAX_VALUES} values (alias expansion?)"
            )
        if depth > MAX_DEPTH:
            raise self._fail(node, f"nested more than {MAX_DEPTH} levels deep")
        self.positions.setdefault(path, _start(node))
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                raise self._fail(node, _refused_tag(node.tag))
            self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *base)
            result: dict[Any, Any] = {}
            first_seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self._fail(key_node, "mapping keys must be plain values")
                key = self.loader.construct_object(key_node)
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    raise self._fail(key_node, f"unsupported key {key!r}")
                line = key_node.start_mark.line + 1
                if key in first_seen:
                    self.issues.append(
                        SpecIssue(
                            self.file, line, key_node.start_mark.column + 1,
                            dotted((*path, str(key))),
                            f"duplicate key (first defined on line {first_seen[key]})",
                        )
                    )
                    continue
                first_seen[key] = line
                child = (*path, key)
                self.positions[child] = _start(key_node)
                result[key] = self.convert(value_node, child, depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise self._fail(node, _refused_tag(node.tag))
            return [
                self.convert(item, (*path, index), depth + 1)
                for index, item in enumerate(node.value)
            ]
        return self.loader.construct_object(node, deep=True)
