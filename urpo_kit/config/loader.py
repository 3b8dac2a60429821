"""Loading a YAML file into its pydantic model so that every error names where to look.

Pipeline: read the YAML with positions, includes and overrides (`yaml_tree`) -> validate with pydantic -> turn
each pydantic error into a located Problem (`located`) -> resolve relative paths against the folder of the file
where each path was written. Nothing escapes as a traceback: every failure becomes one ConfigError listing all
problems found.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from urpo_kit.config.located import located_problem, without_misspelt_missing
from urpo_kit.config.schema import OutputPath, Recipe, TemplatePath
from urpo_kit.config.yaml_tree import INDEX, Loc, Mark, Overrides, PositionMap, load_yaml, problems_or_crash
from urpo_kit.errors import ConfigError, FieldError, Problem

__all__ = [
    "Mark",
    "Overrides",
    "PositionMap",
    "folder_of",
    "load_model",
    "load_recipe",
    "locate",
    "origin_of",
    "position_of",
]

M = TypeVar("M", bound=BaseModel)

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
            problems = without_misspelt_missing(
                [located_problem(e, cls, data, positions, wrap) for e in err.errors(include_url=False)])
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
        raise problems_or_crash(path, err) from err




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
    loc = tuple(int(p) if INDEX.fullmatch(p) else p for p in field.split("."))
    return positions.value(loc)


def locate(task: BaseModel, err: FieldError) -> Problem:
    """A field error as a located Problem: in the template file when it came from one, else at the YAML field."""
    row = f" (row {err.row_number})" if err.row_number is not None else ""
    if err.template_file is not None:
        return Problem(err.template_file, err.template_line, None, err.field, err.message + row)
    mark = position_of(task, err.field)
    line_note = f" (template line {err.template_line})" if err.template_line and err.template_line > 1 else ""
    return Problem(mark.file, mark.line, mark.column, err.field, err.message + line_note + row)
