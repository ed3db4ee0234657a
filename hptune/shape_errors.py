"""Pydantic's validation errors in plain language, located at the key they are about.

Pydantic's ``loc`` holds internal segments (union tags, ``function-after``); these helpers keep
the parts that exist in the file, so an issue points at a line the user wrote, and turn each
error type into a sentence that says what was expected and what was found.
"""

from __future__ import annotations

import types
import typing
from difflib import get_close_matches
from typing import Any, Union

from pydantic import BaseModel

from hptune.errors import SpecIssue
from hptune.spec import Experiment
from hptune.yamlio import LoadedYaml, Path_


def translate(error: Any, loaded: LoadedYaml) -> SpecIssue:
    loc = tuple(error["loc"])
    kind = error["type"]
    path = raw_path(loc, loaded.data, keep_last=kind in ("missing", "extra_forbidden"))
    found = error.get("input")
    ctx = error.get("ctx") or {}
    name = path[-1] if path else ""
    if kind == "missing":
        message = f"required key {name!r} is missing"
    elif kind == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        close = get_close_matches(str(name), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; expected one of {', '.join(allowed)}" if allowed else "")
        message = f"unknown key {name!r}{hint}"
    elif kind == "literal_error":
        expected = ctx.get("expected", "")
        options = [o.strip().strip("'") for o in expected.replace(" or ", ", ").split(",")]
        close = get_close_matches(str(found), options, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        message = f"expected one of {expected}, found {found!r}{hint}"
    elif kind == "union_tag_invalid":
        close = get_close_matches(str(ctx.get("tag")), ["float", "int", "categorical"], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        message = f"unknown type {ctx.get('tag')!r}: expected float, int or categorical{hint}"
    elif kind == "union_tag_not_found":
        message = "missing `type`: expected float, int or categorical (or a list of choices)"
    elif kind == "model_attributes_type" or kind == "dict_type":
        message = f"expected a mapping, found {_describe(found)}"
    elif kind == "list_type":
        message = f"expected a list, found {_describe(found)}"
    elif kind in ("int_type", "int_parsing", "int_from_float"):
        message = f"expected an integer, found {_describe(found)}"
    elif kind in ("float_type", "float_parsing"):
        message = f"expected a number, found {_describe(found)}"
    elif kind in ("bool_type", "bool_parsing"):
        message = f"expected true or false, found {_describe(found)}"
    elif kind in ("string_type",):
        message = f"expected text, found {_describe(found)}"
    elif kind in ("greater_than_equal", "greater_than", "less_than", "less_than_equal"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "")
        message = f"must be {op} {bound}, found {found!r}"
    elif kind == "too_short":
        message = f"must have at least {ctx.get('min_length', 1)} entry, found none" if not found else f"must have at least {ctx.get('min_length')} entries, found {len(found)}"
    elif kind == "too_long":
        message = f"must have at most {ctx.get('max_length')} characters or entries"
    elif kind == "string_pattern_mismatch":
        message = f"must be letters, digits, '.', '_' or '-' (it names a folder), found {found!r}"
    elif kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
    else:
        message = f"{error['msg']}, found {_describe(found)}"
    return loaded.issue(path, message)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def raw_path(loc: tuple[Any, ...], data: Any, keep_last: bool) -> Path_:
    """Keep the parts of pydantic's ``loc`` that exist in the file (dropping union tags)."""
    path: list[Any] = []
    node = data
    for index, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif keep_last and index == len(loc) - 1:
            path.append(part)
    return tuple(path)


def _strip(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at ``loc`` in the schema, for "did you mean" hints."""
    tp: Any = Experiment
    for part in loc:
        tp = _strip(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if part not in tp.model_fields:
                return []
            tp = tp.model_fields[part].annotation
            continue
        origin = typing.get_origin(tp)
        if origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin is list:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            matches = [
                m for m in typing.get_args(tp)
                if isinstance(m, type) and issubclass(m, BaseModel) and "type" in m.model_fields
                and part in typing.get_args(m.model_fields["type"].annotation)
            ]
            if not matches:
                return []
            tp = matches[0]
        else:
            return []
    tp = _strip(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []
