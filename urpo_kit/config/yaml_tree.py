"""YAML reading that keeps every key's file, line and column: compose (PyYAML node API: positions, duplicate keys,
bounded aliases and depth), merge `include:` files underneath, apply `key.path=value` overrides, flatten to plain data
with a PositionMap beside it. Every failure is a located ConfigError."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePath
from typing import Any, NamedTuple, Union

import yaml

import urpo_kit.config.files as files
from urpo_kit.errors import ConfigError, Problem

Loc = tuple[Any, ...]
Overrides = Union[Sequence[Union[str, "WrittenOverride"]], Mapping[str, Any]]

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
INDEX = re.compile(r"-?\d+")
# A few hundred bytes of anchors and aliases can stand for billions of values (an "alias bomb"), and deep nesting
# exhausts Python's stack: both are refused with a located error, far above what any task or recipe needs.
MAX_DEPTH = 100        # levels of nested lists and mappings
MAX_VALUES = 100_000   # values in one file after expanding aliases


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


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than MAX_DEPTH where it happens (its composer recurses)."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _compose(text: str, file: Path | str, override: bool = False) -> list[yaml.Node]:
    """All documents of `text` as PyYAML node trees (which carry start marks)."""
    try:
        return list(yaml.compose_all(text, Loader=_BoundedLoader))
    except yaml.YAMLError as err:
        raise _Problems([_yaml_problem(err, file, text, override)]) from err
    except RecursionError as err:
        raise _Problems([Problem(file, None, None, "", "YAML nested too deeply")]) from err


def _read_text(path: Path) -> str:
    try:
        raw = files.read_bytes(path)
    except files.FileRefused as err:
        raise _Problems([Problem(path, None, None, "", str(err).removeprefix(f"{path} "))]) from err
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
        self._values = 0  # values built so far, each alias use counted again (it is expanded)

    def mark(self, node: yaml.Node) -> Mark:
        if self.fixed is not None:
            return self.fixed
        return Mark(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def problem(self, node: yaml.Node, loc: Loc, message: str) -> None:
        mark = self.mark(node)
        self.problems.append(Problem(mark.file, mark.line, mark.column, dotted(loc), message))

    def build(self, node: yaml.Node, loc: Loc = (), active: frozenset[int] = frozenset()) -> _Node:
        if id(node) in active:  # an alias inside its own anchor: `a: &x [*x]`
            self.problem(node, loc, "recursive alias (an anchor used inside itself)")
            return _Node(None, self.mark(node))
        self._values += 1
        if self._values > MAX_VALUES or len(loc) > MAX_DEPTH:
            what = f"more than {MAX_VALUES} values once aliases are expanded" if self._values > MAX_VALUES \
                else f"nested deeper than {MAX_DEPTH} levels once aliases are expanded"
            self.problem(node, loc, f"{what}; refusing to expand further")
            raise _Problems(self.problems)
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
        kind = "a list" if isinstance(tree.value, list) else "a single value"  # never quote what it holds
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
        try:
            real = files.confined(target, chain[0].parent)
        except files.FileRefused as err:
            problems.append(Problem(item.mark.file, item.mark.line, item.mark.column, "include", str(err)))
            continue
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
            if not INDEX.fullmatch(part):
                raise _Problems([Problem(mark.file, None, None, dotted(done),
                                         f"`{part}` is not a list index (this is a list of {size} items)")])
            key = int(part)
            if not -size <= key < size:
                raise _Problems([Problem(mark.file, None, None, dotted(done),
                                         f"index {key} is out of range (the list has {size} items)")])
            key %= size
            if last:
                node.value[key] = value
                return
            node = node.value[key]
        else:
            raise _Problems([Problem(mark.file, None, None, dotted(done),
                                     f"holds a single value ({short(node.value)}); cannot set `{'.'.join(parts)}`")])
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


def problems_or_crash(path: Any, err: BaseException) -> ConfigError:
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
        raise problems_or_crash(path, err) from err


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
        raise problems_or_crash(path, err) from err

def dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(seg) for seg in loc)


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
