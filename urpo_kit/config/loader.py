"""YAML loading that keeps every key's file, line and column, so that every error names where to look.

Pipeline: read and compose the YAML (PyYAML node API: positions, duplicate keys) -> merge `include:` files
underneath -> apply `key.path=value` overrides -> validate with pydantic -> turn each pydantic error into a
located Problem -> resolve relative paths against the folder of the file where each path was written.
Nothing escapes as a traceback: every failure becomes one ConfigError listing all problems found.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePath
from typing import Any, NamedTuple, TypeVar, Union

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from urpo_kit.config.schema import OutputPath, Recipe, TemplatePath
from urpo_kit.errors import ConfigError, FieldError, Problem

__all__ = [
    "Mark",
    "PositionMap",
    "load_yaml",
    "load_yaml_documents",
    "load_model",
    "load_recipe",
    "folder_of",
    "origin_of",
]

Loc = tuple[Any, ...]
Overrides = Union[Sequence[Union[str, "WrittenOverride"]], Mapping[str, Any]]
M = TypeVar("M", bound=BaseModel)

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INDEX = re.compile(r"-?\d+")


class Mark(NamedTuple):
    """Where something was written. `file` is a Path for a real file, a str such as `<override 'a=1'>` otherwise."""

    file: Path | str
    line: int | None
    column: int | None


@dataclass
class PositionMap:
    """Field path (tuple of keys and list indices) -> where its key and its value were written."""

    keys: dict[Loc, Mark] = field(default_factory=dict)
    values: dict[Loc, Mark] = field(default_factory=dict)

    def key(self, loc: Loc) -> Mark:
        """Where the key of `loc` was written, or of its deepest written ancestor."""
        return self._deepest(tuple(loc), self.keys)

    def value(self, loc: Loc) -> Mark:
        """Where the value of `loc` starts; an unwritten `loc` falls back to its deepest written ancestor's key."""
        loc = tuple(loc)
        return self.values[loc] if loc in self.values else self.key(loc)

    def _deepest(self, loc: Loc, table: dict[Loc, Mark]) -> Mark:
        for n in range(len(loc), -1, -1):
            if loc[:n] in table:
                return table[loc[:n]]
        return Mark("<input>", None, None)


@dataclass
class _Node:
    """A YAML value with positions: `value` is a scalar, a dict of _Node or a list of _Node."""

    value: Any
    mark: Mark
    key: Mark | None = None  # where its key was written (None for the root and list items)


class _Problems(Exception):
    """Internal carrier for problems found while building, raised once per file."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems


# ----------------------------------------------------------------------------------------------- reading
def _display(path: Path) -> Path:
    """Keep paths as the user wrote them, minus `a/../` noise, so messages stay short."""
    return Path(os.path.normpath(path))


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _yaml_problem(err: yaml.YAMLError, file: Path | str, text: str, override: bool) -> Problem:
    """A PyYAML error as one located line (marks are 0-based; ours are 1-based)."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        message = err.problem or err.context or "invalid YAML"
        if err.context and err.problem and err.context_mark is not None and not override:
            message += f" ({err.context} at line {err.context_mark.line + 1}, column {err.context_mark.column + 1})"
        elif err.context and err.problem:
            message += f" ({err.context})"
        where = (None, None) if override or mark is None else (mark.line + 1, mark.column + 1)
        return Problem(file, *where, "", f"YAML syntax error: {message}")
    position = getattr(err, "position", None)  # ReaderError: a character index into `text`
    where = (None, None) if override or position is None else _line_col(text, position)
    reason = getattr(err, "reason", None) or str(err)
    return Problem(file, *where, "", f"YAML syntax error: {reason}")


def _compose(text: str, file: Path | str, override: bool = False) -> list[yaml.Node]:
    """All documents of `text` as PyYAML node trees (which carry start marks)."""
    try:
        return list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise _Problems([_yaml_problem(err, file, text, override)]) from err
    except RecursionError as err:
        raise _Problems([Problem(file, None, None, "", "YAML nested too deeply")]) from err


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise _Problems([Problem(path, None, None, "", "file not found")]) from err
    except IsADirectoryError as err:
        raise _Problems([Problem(path, None, None, "", "is a folder, not a YAML file")]) from err
    except OSError as err:
        raise _Problems([Problem(path, None, None, "", f"cannot read: {err.strerror or err}")]) from err
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise _Problems([Problem(path, line, column, "", "not UTF-8 text (save the file as UTF-8)")]) from err


# ----------------------------------------------------------------------------------------------- nodes -> tree
class _Builder:
    """Turns PyYAML nodes into a _Node tree, collecting duplicate keys and unsupported constructs as problems."""

    def __init__(self, file: Path | str, fixed: Mark | None = None):
        self.file = file
        self.fixed = fixed  # overrides: every position is the override text itself
        self.problems: list[Problem] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def mark(self, node: yaml.Node) -> Mark:
        if self.fixed is not None:
            return self.fixed
        return Mark(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def problem(self, node: yaml.Node, loc: Loc, message: str) -> None:
        mark = self.mark(node)
        self.problems.append(Problem(mark.file, mark.line, mark.column, _dotted(loc), message))

    def build(self, node: yaml.Node, loc: Loc = (), active: frozenset[int] = frozenset()) -> _Node:
        if id(node) in active:  # an alias inside its own anchor: `a: &x [*x]`
            self.problem(node, loc, "recursive alias (an anchor used inside itself)")
            return _Node(None, self.mark(node))
        active = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                self.problem(node, loc, f"unsupported tag `{node.tag}` on a mapping")
            return _Node(self._mapping(node, loc, active), self.mark(node))
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                self.problem(node, loc, f"unsupported tag `{node.tag}` on a list")
            return _Node([self.build(item, loc + (i,), active) for i, item in enumerate(node.value)], self.mark(node))
        return _Node(self._scalar(node, loc), self.mark(node))

    def _scalar(self, node: yaml.Node, loc: Loc) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as err:
            self.problem(node, loc, err.problem or "cannot read this value")
        except Exception as err:  # noqa: BLE001 - e.g. a timestamp-shaped value that is no real date
            self.problem(node, loc, f"cannot read this value: {err}")
        return None

    def _mapping(self, node: yaml.MappingNode, loc: Loc, active: frozenset[int]) -> dict[Any, _Node]:
        merged: dict[Any, _Node] = {}  # `<<: *base` entries; explicit keys win over them
        local: dict[Any, _Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for base in self._merge_sources(value_node, loc, active):
                    for k, v in base.items():
                        merged.setdefault(k, v)  # earlier merge sources win, as in YAML's merge-key spec
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, loc, "a key must be a plain name, not a list or mapping")
                continue
            key = self._scalar(key_node, loc)
            if key in local:
                first = local[key].key
                self.problem(key_node, loc + (key,), f"duplicate key `{key}` (first at line {first.line})"
                             if first and first.line else f"duplicate key `{key}`")
                continue
            child = self.build(value_node, loc + (key,), active)
            child.key = self.mark(key_node)
            local[key] = child
        return {**merged, **local}

    def _merge_sources(self, node: yaml.Node, loc: Loc, active: frozenset[int]) -> list[dict[Any, _Node]]:
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out = []
        for item in nodes:
            built = self.build(item, loc, active)
            if isinstance(built.value, dict):
                out.append(built.value)
            else:
                self.problem(item, loc, "`<<` merges a mapping (or a list of mappings) only")
        return out


def _build(node: yaml.Node, file: Path | str, fixed: Mark | None = None, loc: Loc = ()) -> _Node:
    builder = _Builder(file, fixed)
    tree = builder.build(node, loc)
    if builder.problems:
        raise _Problems(builder.problems)
    return tree


# ----------------------------------------------------------------------------------------------- include
def _documents(path: Path) -> list[yaml.Node]:
    return _compose(_read_text(path), path)


def _one_document(path: Path) -> yaml.Node:
    docs = _documents(path)
    if not docs:
        raise _Problems([Problem(path, None, None, "", "file is empty")])
    if len(docs) > 1:
        raise _Problems([Problem(path, docs[1].start_mark.line + 1, None, "",
                                 f"file holds {len(docs)} YAML documents (`---`); one is expected here")])
    return docs[0]


def _document_tree(doc: yaml.Node, path: Path, chain: tuple[Path, ...]) -> _Node:
    """One document as a top-level mapping, with its `include:` files merged underneath (local keys win)."""
    tree = _build(doc, path)
    if not isinstance(tree.value, dict):
        kind = "a list" if isinstance(tree.value, list) else f"a single value ({tree.value!r})"
        raise _Problems([Problem(path, tree.mark.line, tree.mark.column, "",
                                 f"the top level must be a mapping of `key: value` lines, not {kind}")])
    include = tree.value.pop("include", None)
    if include is None:
        return tree
    items = include.value if isinstance(include.value, list) else [include]
    problems: list[Problem] = []
    base: _Node | None = None
    for item in items:
        if not isinstance(item.value, (str, PurePath)) or not str(item.value).strip():
            problems.append(Problem(item.mark.file, item.mark.line, item.mark.column, "include",
                                    "`include` takes a file path or a list of file paths"))
            continue
        target = _display(path.parent / Path(str(item.value)).expanduser())
        real = Path(os.path.realpath(target))
        if real in (Path(os.path.realpath(p)) for p in chain):
            names = " -> ".join(str(p) for p in (*chain, target))
            problems.append(Problem(item.mark.file, item.mark.line, item.mark.column, "include",
                                    f"include cycle: {names}"))
            continue
        if not target.exists():  # named where the include is written: that is the line to fix
            problems.append(Problem(item.mark.file, item.mark.line, item.mark.column, "include",
                                    f"included file `{target}` not found"))
            continue
        try:
            loaded = _file_tree(target, (*chain, target))
        except _Problems as err:
            problems.extend(err.problems)
            continue
        base = loaded if base is None else _merge(base, loaded)  # later includes win over earlier ones
    if problems:
        raise _Problems(problems)
    return tree if base is None else _merge(base, tree)


def _file_tree(path: Path, chain: tuple[Path, ...]) -> _Node:
    return _document_tree(_one_document(path), path, chain)


def _merge(base: _Node, local: _Node) -> _Node:
    """Deep merge of mappings; anything else (lists, scalars) is replaced whole by `local`."""
    if not (isinstance(base.value, dict) and isinstance(local.value, dict)):
        return local
    merged = dict(base.value)
    for key, child in local.value.items():
        merged[key] = _merge(merged[key], child) if key in merged else child
    return _Node(merged, local.mark, local.key)


# ----------------------------------------------------------------------------------------------- overrides
def _python_tree(value: Any, mark: Mark) -> _Node:
    """A plain Python value (from a recipe's `overrides:` mapping) as a tree positioned at `mark`."""
    if isinstance(value, Mapping):
        return _Node({k: _python_tree(v, mark) for k, v in value.items()}, mark, mark)
    if isinstance(value, (list, tuple)):
        return _Node([_python_tree(v, mark) for v in value], mark, mark)
    return _Node(value, mark, mark)


class WrittenOverride(NamedTuple):
    """A `key.path=value` override that was written in a file (a recipe's or suite's `overrides:` for a task) at
    `mark`: its errors point there, and a relative path in its value resolves against that file's folder, as every
    path written in a file does (a plain string override is the command line's: the working folder)."""

    text: str
    mark: Mark


def _parse_override(text: str, mark: Mark | None = None) -> tuple[list[str], _Node, Mark]:
    """`a.b.0=value` -> (["a", "b", "0"], value tree, mark); the value is YAML."""
    mark = mark or Mark(f"<override {text!r}>", None, None)
    if "=" not in text:
        raise _Problems([Problem(*mark, "", "expected `key.path=value`")])
    key, _, raw = text.partition("=")
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise _Problems([Problem(*mark, key.strip(), "empty key in `key.path=value`")])
    docs = _compose(raw, mark.file, override=True)
    if len(docs) > 1:
        raise _Problems([Problem(*mark, key.strip(), "the value holds more than one YAML document")])
    value = _build(docs[0], mark.file, fixed=mark, loc=tuple(parts)) if docs else _Node(None, mark)
    return parts, value, mark


def _apply_override(root: _Node, parts: Sequence[str], value: _Node, mark: Mark) -> None:
    """Replace the subtree at `parts` by `value`, creating missing (or null) mappings on the way."""
    node, done = root, []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if node.value is None and not last:
            node.value = {}
        if isinstance(node.value, dict):
            key = part if part in node.value else _existing_key(node.value, part)
            if last:
                value.key = mark
                node.value[key] = value
                return
            node = node.value.setdefault(key, _Node({}, mark, mark))
        elif isinstance(node.value, list):
            size = len(node.value)
            if not _INDEX.fullmatch(part):
                raise _Problems([Problem(mark.file, None, None, _dotted(done),
                                         f"`{part}` is not a list index (this is a list of {size} items)")])
            key = int(part)
            if not -size <= key < size:
                raise _Problems([Problem(mark.file, None, None, _dotted(done),
                                         f"index {key} is out of range (the list has {size} items)")])
            key %= size
            if last:
                node.value[key] = value
                return
            node = node.value[key]
        else:
            raise _Problems([Problem(mark.file, None, None, _dotted(done),
                                     f"holds a single value ({_short(node.value)}); cannot set `{'.'.join(parts)}`")])
        done.append(key)


def _existing_key(mapping: dict[Any, _Node], part: str) -> Any:
    """`tasks.0` must also reach a YAML key written as the number 0 (or true/null, rarely)."""
    for key in mapping:
        if not isinstance(key, str) and str(key) == part:
            return key
    return part


def _apply_overrides(root: _Node, overrides: Overrides) -> None:
    problems: list[Problem] = []
    if isinstance(overrides, Mapping):
        items = []
        for key, raw in overrides.items():
            mark = Mark(f"<override {str(key)!r}>", None, None)
            items.append((str(key).split("."), _python_tree(raw, mark), mark))
    else:
        items = []
        for text in ([overrides] if isinstance(overrides, str) else overrides):
            try:
                written = isinstance(text, WrittenOverride)
                items.append(_parse_override(*text) if written else _parse_override(str(text)))
            except _Problems as err:
                problems.extend(err.problems)
    for parts, value, mark in items:
        try:
            _apply_override(root, parts, value, mark)
        except _Problems as err:
            problems.extend(err.problems)
    if problems:
        raise _Problems(problems)


# ----------------------------------------------------------------------------------------------- tree -> data
def _flatten(node: _Node, loc: Loc, positions: PositionMap) -> Any:
    positions.values[loc] = node.mark
    positions.keys[loc] = node.key or node.mark
    if isinstance(node.value, dict):
        return {k: _flatten(v, loc + (k,), positions) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [_flatten(v, loc + (i,), positions) for i, v in enumerate(node.value)]
    return node.value


def _problems_or_crash(path: Any, err: BaseException) -> ConfigError:
    if isinstance(err, ConfigError):
        return err
    if isinstance(err, _Problems):
        return ConfigError(err.problems)
    return ConfigError(Problem(str(path), None, None, "", f"internal error while loading: {type(err).__name__}: {err}"))


def load_yaml(path: str | os.PathLike[str], overrides: Overrides = ()) -> tuple[dict[Any, Any], PositionMap]:
    """One YAML mapping with includes merged and overrides applied, plus where every key and value was written."""
    try:
        file = _display(Path(path))
        root = _file_tree(file, (file,))
        _apply_overrides(root, overrides)
        positions = PositionMap()
        return _flatten(root, (), positions), positions
    except Exception as err:  # noqa: BLE001 - the contract: a ConfigError, never a traceback
        raise _problems_or_crash(path, err) from err


def load_yaml_documents(path: str | os.PathLike[str]) -> list[tuple[dict[Any, Any], PositionMap]]:
    """Every `---` document of a multi-document file, each a mapping with its own includes merged."""
    try:
        file = _display(Path(path))
        out, problems = [], []
        for doc in _documents(file):
            try:
                positions = PositionMap()
                out.append((_flatten(_document_tree(doc, file, (file,)), (), positions), positions))
            except _Problems as err:
                problems.extend(err.problems)
        if problems:
            raise _Problems(problems)
        return out
    except Exception as err:  # noqa: BLE001
        raise _problems_or_crash(path, err) from err


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


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(seg) for seg in loc)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
        msg += f" (got {_short(value)})"
    return msg


def _problem(err: Mapping[str, Any], root: type[BaseModel], data: Any, positions: PositionMap,
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
    return Problem(mark.file, mark.line, mark.column, _dotted(path), message)


# ----------------------------------------------------------------------------------------------- paths
def _resolve_paths(model: BaseModel, loc: Loc, positions: PositionMap) -> None:
    """Make every relative Path field absolute against the folder of the file where that key was written."""
    for name, info in type(model).model_fields.items():
        if any(isinstance(m, OutputPath) for m in info.metadata):
            continue
        template = any(isinstance(m, TemplatePath) for m in info.metadata)
        value = getattr(model, name)
        new = _resolved(value, loc + (name,), positions, template)
        if new is not value:
            setattr(model, name, new)
    if "_overrides_at" in type(model).__private_attributes__:  # see `config.refs.written_overrides`
        model._overrides_at = {key: positions.key(loc + ("overrides", key)) for key in getattr(model, "overrides")}


def _resolved(value: Any, loc: Loc, positions: PositionMap, template: bool) -> Any:
    if isinstance(value, BaseModel):
        _resolve_paths(value, loc, positions)
    elif isinstance(value, PurePath):
        return _resolve_one(Path(value), loc, positions, template)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = _resolved(item, loc + (i,), positions, template)
    elif isinstance(value, dict):
        for key, item in list(value.items()):
            value[key] = _resolved(item, loc + (key,), positions, template)
    return value


def _resolve_one(value: Path, loc: Loc, positions: PositionMap, template: bool) -> Path:
    """Templates are resolved only when the file exists next to the YAML: the renderer also looks in templates/."""
    expanded = value.expanduser()
    if expanded.is_absolute() or loc not in positions.keys:  # unwritten keys keep their defaults
        return expanded if expanded.is_absolute() else value
    file = positions.keys[loc].file
    folder = file.parent if isinstance(file, Path) else Path.cwd()  # overrides are relative to where you are
    candidate = Path(os.path.abspath(folder / expanded))
    if template and not candidate.exists():
        return value
    return candidate


# ----------------------------------------------------------------------------------------------- public API
def _load(cls: type[M], path: str | os.PathLike[str], overrides: Overrides, wrap: str | None = None) -> Any:
    try:
        data, positions = load_yaml(path, overrides)
        try:
            model = cls.model_validate({wrap: data} if wrap else data)
        except ValidationError as err:
            problems = _without_misspelt_missing(
                [_problem(e, cls, data, positions, wrap) for e in err.errors(include_url=False)])
            problems = sorted(dict.fromkeys(problems), key=lambda p: (str(p.file), p.line or 0, p.column or 0))
            raise ConfigError(problems) from None
        if wrap:
            model = getattr(model, wrap)
        _resolve_paths(model, (), positions)
        if "_origin" in type(model).__private_attributes__:
            model._origin = Path(os.path.abspath(path))
            model._positions = positions
        return model
    except Exception as err:  # noqa: BLE001 - the contract: a ConfigError, never a traceback
        raise _problems_or_crash(path, err) from err


def _without_misspelt_missing(problems: list[Problem]) -> list[Problem]:
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


def load_model(cls: type[M], path: str | os.PathLike[str], overrides: Overrides = (), *, wrap: str | None = None) -> Any:
    """Any pydantic model (e.g. an eval suite) from a YAML file, with located errors and resolved paths. With
    `wrap`, the file is validated as the field `wrap` of `cls` and that field's value is returned (a wrapper model
    lets a discriminated union of task kinds report field paths that start at the file's root)."""
    return _load(cls, path, overrides, wrap)


def load_recipe(path: str | os.PathLike[str], overrides: Overrides = ()) -> Recipe:
    """A recipe YAML; task and suite paths come back absolute (relative to the recipe's folder)."""
    return _load(Recipe, path, overrides)


def origin_of(model: BaseModel) -> Path | None:
    """The YAML file a task or recipe was loaded from (None when built in code)."""
    return getattr(model, "_origin", None)


def folder_of(model: BaseModel) -> Path | None:
    """The folder of the YAML file a model was loaded from: what its relative paths and templates resolve against."""
    origin = origin_of(model)
    return origin.parent if origin else None


def position_of(model: BaseModel, field: str) -> Mark:
    """Where a dotted field (`player.prompt`, `answer.gold`) of a loaded task or recipe was written."""
    positions = getattr(model, "_positions", None)
    if positions is None:
        return Mark(origin_of(model) or "<input>", None, None)
    loc = tuple(int(p) if _INDEX.fullmatch(p) else p for p in field.split("."))
    return positions.value(loc)


def locate(task: BaseModel, err: FieldError) -> Problem:
    """A field error as a located Problem: in the template file when it came from one, else at the YAML field."""
    row = f" (row {err.row_number})" if err.row_number is not None else ""
    if err.template_file is not None:
        return Problem(err.template_file, err.template_line, None, err.field, err.message + row)
    mark = position_of(task, err.field)
    line_note = f" (template line {err.template_line})" if err.template_line and err.template_line > 1 else ""
    return Problem(mark.file, mark.line, mark.column, err.field, err.message + line_note + row)
