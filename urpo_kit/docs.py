"""Generated documentation: the JSON Schemas of task, recipe and eval-suite files (for editors) and
docs/reference.md, both read from the pydantic models and the registries (extractors, verifiers, ranking scores,
generators, shipped templates), so nothing is written twice and nothing drifts: tests fail when a shipped copy is
stale. Regenerate with `python -m urpo_kit.docs` (`make docs`).
"""

from __future__ import annotations

import inspect
import json
import random
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal, Union

import annotated_types
import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from urpo_kit.config.schema import Recipe, RefereeSpec
from urpo_kit.config.suite import EvalSuite
from urpo_kit.kinds import KINDS, TaskSpec
from urpo_kit.recast import BUILTIN_TEMPLATES, Templates
from urpo_kit.referee.modes import MODES
from urpo_kit.referee.view import RefereeRenderer
from urpo_kit.rewards.extract import EXTRACTORS, PARAMETRIC_EXTRACTORS
from urpo_kit.rewards.ranking import SCORE_METHODS
from urpo_kit.rewards.verifiers import VERIFIERS
from urpo_kit.sources.generators import GENERATORS

DOCS = Path(__file__).resolve().parent.parent / "docs"
FILE_KINDS: dict[str, tuple[Any, str]] = {   # file kind -> (model or union, title)
    "task": (TaskSpec, "urpo-kit task file"),
    "recipe": (Recipe, "urpo-kit recipe"),
    "suite": (EvalSuite, "urpo-kit eval suite"),
}
INCLUDE = {"description": "YAML file(s) merged underneath this one (local keys win), relative to this file",
           "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
REGENERATE = "python -m urpo_kit.docs"


# ------------------------------------------------------------------------------------------------ JSON Schema
def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one file kind. A file with `include:` may take any key from the included file (a task's
    `kind`, a recipe's `tasks`), so only its `include` is checked; every other file is checked fully."""
    model, title = FILE_KINDS[kind]
    core = TypeAdapter(model).json_schema()
    defs = core.pop("$defs", {})
    return {"$schema": "http://json-schema.org/draft-07/schema#", "title": title, "type": "object",
            "if": {"required": ["include"]}, "then": {"properties": {"include": INCLUDE}}, "else": core,
            "$defs": defs}


def schema_text(kind: str) -> str:
    return json.dumps(json_schema(kind), indent=2, ensure_ascii=False) + "\n"


def schema_file(kind: str) -> str:
    return f"{kind}.schema.json"


# ------------------------------------------------------------------------------------------------ reference
def _cell(text: str) -> str:
    """Markdown table cell: pipes escaped, one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _anchor(model: type[BaseModel]) -> str:
    return f"model-{model.__name__.lower()}"


def _models_in(tp: Any) -> Iterator[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
    for arg in typing.get_args(tp):
        yield from _models_in(arg)


def type_name(tp: Any) -> str:
    """A field's type as a reader writes it in YAML; models link to their section."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " | ".join(names + (["null"] if type(None) in args else []))
    if origin is Literal:
        return " | ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_grouped(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if origin is dict:
        return "mapping" if args[1] is Any else f"mapping of {_grouped(args[0])} to {_grouped(args[1])}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{_anchor(tp)})"
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return "path"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, "any")


def _grouped(tp: Any) -> str:
    """A type inside another, in parentheses when it is a choice."""
    name = type_name(tp)
    return f"({name})" if " | " in name else name


def _bounds(info: FieldInfo) -> str:
    marks = {annotated_types.Ge: ">=", annotated_types.Gt: ">", annotated_types.Le: "<=", annotated_types.Lt: "<",
             annotated_types.MinLen: "length >="}
    out = [f"{sign} {getattr(m, next(iter(m.__dataclass_fields__)))}" for m in info.metadata
           for kind, sign in marks.items() if isinstance(m, kind)]
    return f" ({', '.join(out)})" if out else ""


def _flow(value: Any) -> str:
    """A value as YAML flow text, as a user would write it."""
    text = yaml.safe_dump(to_jsonable_python(value), default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("\n...").strip()


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        changed = value.model_dump(mode="json", exclude_defaults=True)
        return f"`{_flow(changed)}`" if changed else "its defaults"
    return f"`{_flow(value)}`"


def field_table(model: type[BaseModel], first: Sequence[str] = ()) -> str:
    """One row per field: name, type, default, meaning (the field's description)."""
    names = [*first, *(n for n in model.model_fields if n not in first)]
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name in names:
        info = model.model_fields[name]
        rows.append(f"| `{name}` | {_cell(type_name(info.annotation) + _bounds(info))} | {_cell(default_text(info))} "
                    f"| {_cell(info.description or '')} |")
    return "\n".join(rows)


def _doc(obj: Any) -> str:
    """The first paragraph of an object's own docstring (not one inherited from pydantic), on one line."""
    own = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    return " ".join(inspect.cleandoc(own or "").split("\n\n")[0].split())


def _model_section(model: type[BaseModel], level: str = "###", first: Sequence[str] = ()) -> str:
    return f'{level} {model.__name__} <a id="{_anchor(model)}"></a>\n\n{_doc(model)}\n\n{field_table(model, first)}\n'


def _parts(roots: Sequence[type[BaseModel]], done: set[type[BaseModel]]) -> list[type[BaseModel]]:
    """The models reached from `roots` (breadth first) that no earlier section documents."""
    out, queue = [], list(roots)
    while queue:
        model = queue.pop(0)
        for info in model.model_fields.values():
            for part in _models_in(info.annotation):
                if part not in done:
                    done.add(part)
                    out.append(part)
                    queue.append(part)
    return out


def _files_section(done: set[type[BaseModel]]) -> list[str]:
    out = ['## Task files <a id="task-files"></a>', "",
           f"One kind per file, chosen by `kind`. Schema for editors: [schema/{schema_file('task')}]"
           f"(schema/{schema_file('task')}).", ""]
    kinds = [spec for spec, _ in KINDS.values()]
    done.update(kinds)
    for name, (spec, _) in KINDS.items():
        out.append(f'### kind: {name} <a id="{_anchor(spec)}"></a>\n\n{_doc(spec)}\n\n{field_table(spec, ["kind"])}\n')
    out += [_model_section(m) for m in _parts(kinds, done)]
    for title, kind, model in (("Recipes", "recipe", Recipe), ("Eval suites", "suite", EvalSuite)):
        done.add(model)
        link = f"schema/{schema_file(kind)}"
        out += [f'## {title} <a id="{kind}s"></a>', "", f"Schema for editors: [{link}]({link}).", "",
                _model_section(model)]
        out += [_model_section(m) for m in _parts([model], done)]
    return out


def _signature_args(fn: Callable[..., Any], skip: int) -> str:
    """Keyword parameters after the first `skip` positional ones, with their annotations and defaults."""
    params = list(inspect.signature(fn).parameters.values())[skip:]
    return ", ".join(f"`{p.name}: {p.annotation}" + ("" if p.default is p.empty else f" = {p.default!r}") + "`"
                     for p in params) or "none"


def _table_section(title: str, anchor: str, intro: str, header: Sequence[str],
                   rows: Iterable[Sequence[str]]) -> list[str]:
    """A reference section: heading, one paragraph, a table."""
    out = [f'## {title} <a id="{anchor}"></a>', "", *([intro, ""] if intro else [])]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows] + [""]


def _callables(registry: dict[str, Callable[..., Any]]) -> list[tuple[str, str, str]]:
    """Name, keyword arguments (after the two positional ones) and docstring of each registered function."""
    return [(f"`{name}`", _signature_args(fn, 2), _doc(fn)) for name, fn in registry.items()]


def _registry_sections() -> list[str]:
    extractors = [(f"`{name}`", _doc(fn)) for name, fn in EXTRACTORS.items()]
    extractors += [(f"`{name}:{arg}`", _doc(fn)) for name, (arg, _, fn) in PARAMETRIC_EXTRACTORS.items()]
    return [
        *_table_section(
            "Extractors (`answer.extract`)", "extractors",
            "A verifiable task reads the model's answer from its completion with `extract`: one method, or a list "
            "tried in turn until one finds an answer (`extract: [boxed, last_number]`). Every method takes the last "
            "occurrence, and an empty result counts as no answer (no format reward).",
            ["method", "returns"], extractors),
        *_table_section(
            "Verifiers (`answer.verifier`, `answer.verifier_args`)", "verifiers",
            "A verifier compares the extracted answer with the gold and gives a score in [0, 1]; `verifier_args` are "
            "its keyword arguments (an unknown one is an error when the task loads). `package.module:function` names "
            "your own `fn(predicted, gold, **verifier_args)` returning a bool or a float in [0, 1]; it runs only with "
            "`--allow-code` or `allow_code: true` in the recipe or suite.",
            ["verifier", "`verifier_args`", "what it checks"], _callables(VERIFIERS)),
        *_table_section("Ranking scores (preference `score`)", "scores", "", ["score", "gives"],
                        [(f"`{name}`", meaning) for name, meaning in SCORE_METHODS.items()]),
        *_table_section(
            "Generators (`source.generator`, `source.params`)", "generators",
            "Offline rows, no download: `source: {generator: NAME, n: ROWS, seed: S, params: {...}}`; the same seed "
            "gives the same rows. `package.module:function` names your own `fn(n, seed, **params) -> list[dict]` "
            "(with `--allow-code`).",
            ["generator", "`params`", "rows"], _callables(GENERATORS)),
    ]


def answer_line(template: str, mode: str) -> str:
    """The last line of a shipped referee template rendered over example candidates: the verdict it asks for."""
    spec = RefereeSpec(mode=mode, template=Path(template), shuffle=False)  # type: ignore[arg-type]
    view = RefereeRenderer(spec, Templates(None)).render(
        "(request)", [f"(response {i + 1})" for i in range(MODES[mode].example)], random.Random(0))
    return view.messages[-1]["content"].strip().splitlines()[-1]


def _templates_section() -> list[str]:
    modes = {mode.template: name for name, mode in MODES.items()}
    rows = []
    for path in sorted((BUILTIN_TEMPLATES / "referee").glob("*.j2")):
        name = path.relative_to(BUILTIN_TEMPLATES).as_posix()
        mode = modes.get(name, "listwise")
        rows.append((f"`{name}`", modes.get(name, "-"), f"`{answer_line(name, mode)}`", f"`{MODES[mode].prefill!r}`"))
    players = [f"`{p.relative_to(BUILTIN_TEMPLATES).as_posix()}`"
               for p in sorted((BUILTIN_TEMPLATES / "player").glob("*.j2"))]
    return _table_section(
        "Shipped templates", "templates",
        "Template files are looked up in the YAML's folder, a `templates/` folder beside it, then the built-in "
        "ones below (`urpo_kit/templates/`). A referee template receives `prompt`, `candidates` (each with "
        "`label` and `text`, in shown order), `labels`, `n` and `scale`. A prefill (`referee.prefill`) must be "
        "the start of the template's answer line, so the model continues the verdict the template asks for; "
        "`verdict: likelihood` uses the mode's prefill below when none is set.",
        ["template", "default for mode", "answer line (example)", "matching prefill"], rows,
    ) + [f"Player templates (`player.template`, the row's variables): {', '.join(players)}.", ""]


PATHS = """\
## Paths and overrides <a id="paths"></a>

- A relative path written in a YAML file (`source.path`, a recipe's `tasks[].task`, `include`) resolves against
  the folder of the file it is written in, also when that file is `include`d by another, and also inside a
  recipe's or suite's `overrides:` for a task (`overrides: {source.path: held-out.jsonl}` is beside the recipe).
- A path given in an override on the command line (`--set 'source={path: data.jsonl}'`) resolves against the
  working folder.
- Output folders (`output_dir`) stay relative to the working folder, as every command's outputs do.
- Template files (`player.template`, `referee.template`) are looked up by the renderer (see
  [shipped templates](#templates)).
- Overrides: `--set key.path=value` on every command that reads YAML (repeatable; the value is YAML:
  `--set grpo.steps=4`, `--set 'answer.extract=[boxed, last_number]'`, a list index as a key: `tasks.0.weight=2`).
"""


def reference() -> str:
    """docs/reference.md."""
    done: set[type[BaseModel]] = set()
    parts = [
        "# urpo-kit reference", "",
        f"Generated from the pydantic models and registries by `{REGENERATE}`; do not edit by hand (a test fails when "
        "this file is stale). Unknown keys are errors; every error names the file, line and field.", "",
        "Contents: [paths and overrides](#paths), [task files](#task-files), [recipes](#recipes), "
        "[eval suites](#suites), [extractors](#extractors), [verifiers](#verifiers), [ranking scores](#scores), "
        "[generators](#generators), [shipped templates](#templates).", "",
        PATHS,
        *_files_section(done),
        *_registry_sections(),
        *_templates_section(),
    ]
    return "\n".join(parts).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------ files
def generated(root: Path = DOCS) -> dict[Path, str]:
    """Every generated file under `root` (the docs folder) with its text."""
    out = {root / "schema" / schema_file(kind): schema_text(kind) for kind in FILE_KINDS}
    out[root / "reference.md"] = reference()
    return out


def stale(root: Path = DOCS) -> list[Path]:
    """The generated files whose copy under `root` is missing or differs from what the code generates now."""
    return [path for path, text in generated(root).items()
            if not path.is_file() or path.read_text(encoding="utf-8") != text]


def write(root: Path = DOCS) -> list[Path]:
    """Write every generated file that changed; returns those written."""
    changed = stale(root)
    for path, text in generated(root).items():
        if path in changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return changed


def main(argv: Sequence[str] = ()) -> int:
    """`python -m urpo_kit.docs [--check] [DOCS_FOLDER]`: regenerate (or, with --check, list stale files)."""
    args = list(argv)
    check = "--check" in args
    folders = [a for a in args if a != "--check"]
    root = Path(folders[0]) if folders else DOCS
    if check:
        for path in stale(root):
            print(f"stale: {path} (run `{REGENERATE}`)")
        return 1 if stale(root) else 0
    for path in write(root):
        print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
