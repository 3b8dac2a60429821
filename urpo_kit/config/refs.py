"""What a recipe or an eval suite refers to: the files it names (tasks, eval suites), checked before anything reads
them so that a missing one is reported where it is named (the recipe's or suite's file, line and field), and the
`overrides:` it writes for a task, passed on marked with where they were written."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from urpo_kit.config.loader import position_of
from urpo_kit.config.yaml_tree import Mark, WrittenOverride
from urpo_kit.config.schema import Recipe
from urpo_kit.config.suite import EvalSuite
from urpo_kit.errors import ConfigError, Problem


def located(model: BaseModel, field: str, message: str) -> ConfigError:
    """A problem with a field of a loaded recipe, suite or task, at the line where that field was written."""
    mark = position_of(model, field)
    return ConfigError(Problem(mark.file, mark.line, mark.column, field, message))


def named_files(model: Recipe | EvalSuite) -> list[tuple[str, Path, str]]:
    """(field, path, what) for every file a recipe (tasks, eval suites) or a suite (benchmark tasks) names."""
    if isinstance(model, Recipe):
        return ([(f"tasks.{i}.task", ref.task, "task") for i, ref in enumerate(model.tasks)]
                + [(f"eval.suites.{i}", path, "eval suite") for i, path in enumerate(model.eval.suites)])
    return [(f"{section}.{i}.task", bench.task, "task")
            for section in ("player", "referee", "winrate")
            for i, bench in enumerate(getattr(model, section)) if bench.task is not None]


def require_named_files(model: Recipe | EvalSuite) -> None:
    """One ConfigError listing every named file that does not exist, each at the line that names it."""
    problems = [problem for field, path, what in named_files(model) if not path.is_file()
                for problem in located(model, field, f"{what} file `{path}` does not exist").problems]
    if problems:
        raise ConfigError(problems)


def override_strings(overrides: Mapping[str, Any]) -> list[str]:
    """A `key.path: value` mapping as `key.path=value` strings (JSON is YAML, so values round-trip)."""
    return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]


def written_overrides(ref: BaseModel) -> list[WrittenOverride]:
    """A recipe's task or a suite's benchmark: its `overrides` for its task file, each marked where it was written
    (the recipe's or suite's line; a command-line override of them stays the command line's)."""
    overrides: dict[str, Any] = getattr(ref, "overrides")
    marks = getattr(ref, "_overrides_at", None) or {}
    return [WrittenOverride(text, marks.get(key) or Mark(f"<override {text!r}>", None, None))
            for key, text in zip(overrides, override_strings(overrides))]
