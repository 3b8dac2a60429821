"""Pydantic's validation errors as located Problems: each error's field path walked through the model (unions,
discriminated kinds, aliases) to where it was written, with a readable message and a did-you-mean."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from urpo_kit.config.yaml_tree import PositionMap, dotted, short
from urpo_kit.errors import Problem

# ----------------------------------------------------------------------------------------------- validation
def _unwrap(tp: Any, disc: str | None) -> tuple[Any, str | None]:
    """Strip Annotated (keeping a string discriminator) and Optional, which add no segment to pydantic's loc."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp, *meta = typing.get_args(tp)
            for item in meta:
                if isinstance(item, FieldInfo) and isinstance(item.discriminator, str):
                    disc = item.discriminator
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp, disc


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _tag_members(tp: Any, disc: str) -> dict[Any, type[BaseModel]]:
    """Tag value -> member model of a discriminated union."""
    out: dict[Any, type[BaseModel]] = {}
    for member in typing.get_args(tp):
        if _is_model(member) and disc in member.model_fields:
            for tag in typing.get_args(member.model_fields[disc].annotation):
                out[tag] = member
    return out


def _child(data: Any, seg: Any) -> tuple[bool, Any]:
    """(found, value) of `data[seg]` for a mapping key or a list index."""
    if isinstance(data, dict):
        try:
            return (True, data[seg]) if seg in data else (False, None)
        except TypeError:
            return False, None
    if isinstance(data, list) and isinstance(seg, int) and -len(data) <= seg < len(data):
        return True, data[seg]
    return False, None


@dataclass
class _Where:
    """A pydantic error location translated to the user's terms."""

    path: list[Any] = field(default_factory=list)  # field path in the data, union tags removed
    model: type[BaseModel] | None = None  # the model that owns the last key (for "did you mean")
    tp: Any = Any  # declared type at the end of the path
    disc: str | None = None  # its discriminator, if a tagged union
    member: str | None = None  # plain-union member the error is about, e.g. `list[str]`
    key_error: bool = False  # the error is about a mapping key, not its value


def _walk(root: type[BaseModel], loc: Sequence[Any], data: Any) -> _Where:
    """Follow `loc` through the model's types and the data at once: the types say which segments are union tags
    (dropped), the data says which segments after an untyped point still name something the user wrote."""
    where = _Where()
    tp, disc, cur = root, None, data
    for seg in loc:
        tp, disc = _unwrap(tp, disc)
        if _is_union(tp):
            if disc is not None:
                tp = _tag_members(tp, disc).get(seg, Any)
            else:
                where.member, tp = str(seg), Any
            disc = None
            continue
        if seg == "[key]":
            where.key_error = True
            continue
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if _is_model(tp):
            where.model = tp
            info = tp.model_fields.get(seg) if isinstance(seg, str) else None
            tp, disc = (info.annotation, info.discriminator if isinstance(info.discriminator, str) else None) \
                if info is not None else (Any, None)
        elif origin in (list, tuple, set, frozenset):
            tp, disc = (args[0] if args else Any), None
        elif origin is dict:
            tp, disc = (args[1] if len(args) == 2 else Any), None
        elif not _child(cur, seg)[0]:
            continue  # a label pydantic adds inside an untyped or plain-union value, not a key the user wrote
        else:
            tp = Any
        where.path.append(seg)
        cur = _child(cur, seg)[1]
    where.tp, where.disc = _unwrap(tp, disc)
    return where






def _suggest(word: str, choices: Sequence[Any]) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1)
    return f"; did you mean `{close[0]}`?" if close else ""


def _readable(err: Mapping[str, Any]) -> str:
    """pydantic's message, lower-cased, without its `Value error, ` prefix, with the offending scalar shown."""
    msg = str(err.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    msg = msg[:1].lower() + msg[1:]
    value = err.get("input")
    if err.get("type") not in ("value_error", "assertion_error") and isinstance(
        value, (str, int, float, bool, bytes, date, type(None))
    ):
        msg += f" (got {short(value)})"
    return msg


def located_problem(err: Mapping[str, Any], root: type[BaseModel], data: Any, positions: PositionMap,
             wrap: str | None) -> Problem:
    """One pydantic error as a located Problem (see the module docstring for the position rules)."""
    where = _walk(root, err.get("loc", ()), {wrap: data} if wrap else data)
    path = tuple(where.path[1:] if wrap else where.path)
    kind = err.get("type")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        mark = positions.key(path[:-1]) if path[:-1] else positions.value(())
        message = "required key is missing"
    elif kind == "extra_forbidden":
        mark = positions.key(path)
        names = list(where.model.model_fields) if where.model else []
        message = f"unknown key `{path[-1] if path else '?'}`" + (
            _suggest(str(path[-1]), names) or (f"; valid keys: {', '.join(names)}" if names else "")
        )
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        disc = where.disc or str(ctx.get("discriminator", "kind")).strip("'")
        tags = [str(t) for t in _tag_members(where.tp, disc)] if _is_union(where.tp) else []
        valid = f"valid {disc}s: {', '.join(tags)}" if tags else ""
        owner, path = path, path + (disc,)
        if kind == "union_tag_not_found" or path not in positions.values:
            mark = positions.key(owner) if owner else positions.value(())
            message = f"missing `{disc}`" + (f"; {valid}" if valid else "")
        else:
            mark = positions.value(path)
            tag = ctx.get("tag", "?")
            message = f"unknown {disc} `{tag}`" + _suggest(str(tag), tags) + (f" ({valid})" if valid else "")
    else:
        found, value = True, data
        for seg in path:
            found, value = _child(value, seg) if found else (False, None)
        container = found and isinstance(value, (dict, list))
        mark = positions.key(path) if container or where.key_error else positions.value(path)
        message = _readable(err)
        if where.key_error:
            message = f"bad key: {message}"
    if where.member:
        message = f"as {where.member}: {message}"
    return Problem(mark.file, mark.line, mark.column, dotted(path), message)

def without_misspelt_missing(problems: list[Problem]) -> list[Problem]:
    """A misspelt required key is one mistake: keep "unknown key `playr`; did you mean `player`?" and drop the
    "required key is missing" that pydantic also reports for `player`."""
    suggested = {
        (p.field.rpartition(".")[0], m.group(1))
        for p in problems if (m := re.search(r"did you mean `([^`]+)`", p.message))
    }
    return [
        p for p in problems
        if not (p.message == "required key is missing" and (p.field.rpartition(".")[0], p.field.rpartition(".")[2]) in suggested)
    ]
