"""`urpo-kit validate`: check task and recipe files before any training.

As deep as training goes before its model loads: for a task, the schema, its names resolved (verifier, extractor,
templates), every row of its source rendered (`--rows N` bounds it; skipped rows are listed by row number with their
share of all rows read), a referee prefill against the template's answer line, and the reward path on the first
row's gold (a verifiable task's gold, written the way the extractor expects, must extract and verify; a preference
task's gold ranking, written as the referee should, must parse and score 1). A recipe: its schema and model name,
each task it names, and its eval suites; a suite: its model names, each benchmark's task (of the benchmark's kind)
and each benchmark's own source.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from urpo_kit.compiler import PreparedTask, check_recipe, check_tasks, prepare_task
from urpo_kit.config.loader import Overrides, folder_of, load_recipe, locate
from urpo_kit.config.refs import located, require_named_files, written_overrides
from urpo_kit.config.schema import ModelSpec, Recipe
from urpo_kit.config.yaml_tree import load_yaml
from urpo_kit.config.suite import EvalSuite, load_suite
from urpo_kit.errors import ConfigError, FieldError, SourceError, SourceUnavailable, UrpoError
from urpo_kit.eval.overlap import recipe_overlaps
from urpo_kit.eval.runner import check_kind
from urpo_kit.kinds import load_task, resolve
from urpo_kit.sources import describe_skipped, load_rows


def check_task(prepared: PreparedTask) -> str:
    """Run the kind's reward-path check on the first row; return a one-line summary or raise a located ConfigError."""
    row, number = prepared.rows.rows[0], prepared.rows.row_numbers[0]
    try:
        return prepared.task.check(prepared.task.episode(row, row_number=number))
    except FieldError as e:
        raise ConfigError(locate(prepared.spec, e)) from None


@dataclass(frozen=True)
class TaskCheck:
    """One task to validate, and where it was named: a suite benchmark's task must be of the benchmark's kind."""

    label: str
    path: Path
    overrides: Overrides
    allow_code: bool
    named_at: tuple[EvalSuite, str, Any] | None = None   # (suite, field, benchmark) that names the task


def validate_files(files: Sequence[Path], overrides: Sequence[str], *, allow_code: bool, strict: bool,
                   console: Console, err_console: Console, rows: int | None = None) -> int:
    """Validate each file; print one line per task. Returns the number of files with errors. `rows` bounds the
    rows read per source (default: all of them, as training reads them)."""
    failed = 0
    for path in files:
        try:
            kind = _file_kind(path)
            recipe = load_recipe(path, overrides) if kind == "recipe" else None
            checks = _recipe(path, recipe, allow_code, rows) if recipe is not None else _expand(path, kind, overrides,
                                                                                          allow_code, rows)
            for check in checks:
                _validate_task(check, rows=rows, strict=strict, console=console, err_console=err_console)
            if kind == "suite":
                console.print(f"ok {escape(str(path))} (eval suite)", highlight=False, soft_wrap=True)
            if recipe is not None:
                for warning in recipe_overlaps(recipe):
                    err_console.print(f"[yellow]warning[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
        except UrpoError as e:
            failed += 1
            for line in str(e).splitlines():
                err_console.print(f"[red]error[/red] {escape(line)}", highlight=False, soft_wrap=True)
        except Exception as e:  # noqa: BLE001 - a bug must still be one line naming the file, not a traceback
            failed += 1
            line = f"{path}: internal error: {type(e).__name__}: {e}".replace("\n", " ")
            err_console.print(f"[red]error[/red] {escape(line)}", highlight=False, soft_wrap=True)
    return failed


def _check_model(model: BaseModel, field: str, spec: ModelSpec) -> None:
    """A model name's form (and a bundled, tiny or local model's existence), located at the field that names it."""
    from urpo_kit.models import check_model_name

    try:
        check_model_name(spec.name, spec.revision)
    except UrpoError as e:
        raise located(model, field, str(e)) from None


def _expand(path: Path, kind: str, overrides: Sequence[str], allow_code: bool, rows: int | None) -> Iterator[TaskCheck]:
    """A task file is itself; an eval suite expands to the tasks its benchmarks name (with their overrides), its
    benchmarks' own sources being read here (a recipe: `_recipe`)."""
    if kind == "suite":
        yield from _suite(path, overrides, allow_code, rows)
    else:
        yield TaskCheck(str(path), path, list(overrides), allow_code)


def _recipe(path: Path, recipe: Recipe, allow_code: bool, rows: int | None) -> Iterator[TaskCheck]:
    """A recipe's tasks (with the recipe's per-task overrides) and its eval suites."""
    allow = allow_code or recipe.allow_code
    _check_model(recipe, "model.name", recipe.model)
    check_recipe(recipe)
    try:
        resolved = [resolve(load_task(ref.task, written_overrides(ref)), allow_code=allow) for ref in recipe.tasks]
    except UrpoError:
        resolved = []  # a task that does not load is reported below, as its own check
    check_tasks(recipe, resolved)
    for ref in recipe.tasks:
        yield TaskCheck(f"{path} -> {ref.task.name}", ref.task, written_overrides(ref), allow)
    for suite in recipe.eval.suites:
        yield from _suite(suite, [], allow, rows)


def _suite(path: Path, overrides: Sequence[str], allow_code: bool, rows: int | None) -> Iterator[TaskCheck]:
    suite = load_suite(path, overrides)
    allow = allow_code or suite.allow_code
    _check_model(suite, "model.name", suite.model)
    require_named_files(suite)
    for section in ("player", "referee", "winrate"):
        for i, bench in enumerate(getattr(suite, section)):
            if getattr(bench, "judge", None) is not None:
                _check_model(suite, f"{section}.{i}.judge.name", bench.judge)
            if bench.task is not None:
                yield TaskCheck(f"{path} -> {bench.name or bench.task.name}", bench.task,
                                written_overrides(bench), allow, (suite, f"{section}.{i}.task", bench))
            elif getattr(bench, "source", None) is not None:
                source = bench.source if rows is None else bench.source.model_copy(update={"limit": rows})
                try:
                    load_rows(source, base_dir=folder_of(suite), allow_code=allow)
                except SourceUnavailable:
                    continue  # a hub source offline: reported like a task's, by the benchmark that reads it
                except SourceError as e:
                    raise located(suite, f"{section}.{i}.source", str(e)) from None


def _file_kind(path: Path) -> str:
    """`recipe` (has `tasks:`), `suite` (lists of `player:`, `referee:` or `winrate:` benchmarks, where a task has
    mappings) or `task` (anything else, including a task that takes its `kind` from an `include:`)."""
    try:
        data, _ = load_yaml(path)  # bounded like every load (aliases, depth, file size); includes merged
    except UrpoError:
        return "task"  # the task loader reports the problem with its location
    if not isinstance(data, dict) or "kind" in data:
        return "task"
    if "tasks" in data:
        return "recipe"
    return "suite" if any(isinstance(data.get(k), list) for k in ("player", "referee", "winrate")) else "task"


def _validate_task(check: TaskCheck, *, rows: int | None, strict: bool, console: Console,
                   err_console: Console) -> None:
    label = check.label
    try:
        prepared = prepare_task(check.path, check.overrides, allow_code=check.allow_code, limit=rows)
    except SourceUnavailable as e:
        if strict:
            raise
        spec = load_task(check.path, check.overrides)
        resolve(spec, allow_code=check.allow_code)
        _check_kind(check, spec.kind)
        err_console.print(f"[yellow]warning[/yellow] {escape(f'{label}: schema and templates ok; rows not checked: {e}')}",
                          highlight=False, soft_wrap=True)
        return
    _check_kind(check, prepared.task.kind)
    summary = check_task(prepared)
    loaded = prepared.rows
    if loaded.skipped:
        share = len(loaded.skipped) / max(loaded.total_seen, 1)
        note = (f"{label}: {len(loaded.skipped)} of {loaded.total_seen} rows of {loaded.description} are skipped "
                f"({share:.1%}; the limit is max_error_fraction={prepared.spec.source.max_error_fraction}): "
                f"{describe_skipped(loaded.skipped)}")
        err_console.print(f"[yellow]warning[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    read = f"{loaded.total_seen} rows read" + ("" if rows is None else f" (--rows {rows})")
    console.print(f"[green]ok[/green] {escape(f'{label} ({prepared.spec.kind}): {summary}; {read}')}",
                  highlight=False, soft_wrap=True)


def _check_kind(check: TaskCheck, kind: str) -> None:
    if check.named_at is not None:
        check_kind(*check.named_at, kind)
