"""`urpo-kit validate`: check task and recipe files before any training.

For a task: the schema, one row of its source, every template on that row, and the reward path on the gold itself
(a verifiable task's gold, written the way the extractor expects, must extract and verify; a preference task's gold
ranking, written as the referee should, must parse and score 1). A recipe: the schema, then each task it names.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.markup import escape

from urpo_kit.compiler import PreparedTask, override_strings, prepare_task
from urpo_kit.config.loader import load_recipe, load_yaml
from urpo_kit.config.schema import OpenEndedTask, PreferenceTask, VerifiableTask
from urpo_kit.errors import CodeNotAllowed, ConfigError, Problem, SourceUnavailable, UrpoError
from urpo_kit.recast import stable_seed
from urpo_kit.rewards import check_extract, extract_answer, get_verifier, parse_ranking, score_ranking


def gold_as_completion(extract: str, gold: str) -> str:
    """Write the gold answer the way a well-behaved model would, so the extractor is exercised too."""
    if extract == "boxed":
        return f"The answer is \\boxed{{{gold}}}."
    if extract.startswith("tag:"):
        tag = extract.split(":", 1)[1]
        return f"<{tag}>{gold}</{tag}>"
    return gold


def check_task(prepared: PreparedTask, *, allow_code: bool) -> str:
    """Run the reward path on the first row's gold; return a one-line summary or raise ConfigError."""
    spec, row, number = prepared.spec, prepared.rows.rows[0], prepared.rows.row_numbers[0]
    episode = prepared.renderer.episode(row, row_number=number)

    def fail(field: str, message: str, row: bool = True) -> ConfigError:
        from urpo_kit.config.loader import position_of

        file, line, column = position_of(spec, field)
        return ConfigError(Problem(file, line, column, field, f"{message} (row {number})" if row else message))

    if isinstance(spec, VerifiableTask):
        # every failure here is located at the YAML field it comes from: a bad name, a dotted path without
        # --allow-code, wrong verifier_args or a verifier that raises are configuration errors, not tracebacks
        try:
            check_extract(spec.answer.extract)
        except ValueError as e:
            raise fail("answer.extract", str(e), row=False) from None
        try:
            verifier = get_verifier(spec.answer.verifier, allow_code=allow_code)
        except (ValueError, CodeNotAllowed) as e:
            raise fail("answer.verifier", str(e), row=False) from None
        completion = gold_as_completion(spec.answer.extract, episode.gold)
        extracted = extract_answer(completion, spec.answer.extract)
        if extracted is None:
            raise fail("answer.extract", f"`{spec.answer.extract}` extracts nothing from the gold {completion!r}")
        try:
            score = float(verifier(extracted, episode.gold, **spec.answer.verifier_args))
        except TypeError as e:
            field = "answer.verifier_args" if spec.answer.verifier_args else "answer.verifier"
            raise fail(field, f"calling verifier `{spec.answer.verifier}`: {e}") from None
        except Exception as e:  # noqa: BLE001 - a user verifier failing on the gold is a task problem
            raise fail("answer.verifier", f"verifier `{spec.answer.verifier}` failed on the gold: "
                                          f"{type(e).__name__}: {e}") from None
        if score < 1.0:
            raise fail("answer.verifier", f"gold {episode.gold!r} does not verify against itself (score {score})")
        return f"gold {episode.gold!r} verifies"
    if isinstance(spec, PreferenceTask):
        labels = episode.meta["labels"]
        verdict = "Ranking: " + " > ".join(f"[{labels[i]}]" for i in episode.gold)
        parsed = parse_ranking(verdict, labels)
        if parsed is None or score_ranking(parsed, episode.gold, spec.score) < 1.0:
            raise fail("referee.template", f"the gold ranking {verdict!r} does not parse back to itself")
        return f"{episode.meta['n']} candidates, gold {verdict!r}"
    assert isinstance(spec, OpenEndedTask)
    placeholders = [f"(answer {i + 1})" for i in range(2 if spec.self_referee.mode == "pairwise" else 4)]
    if spec.self_referee.mode == "pointwise":
        placeholders = placeholders[:1]
    prepared.renderer.self_referee.render(episode.meta["instruction"], placeholders,
                                          random.Random(stable_seed("validate", spec.name)))
    return f"player and {spec.self_referee.mode} self-referee prompts render"


def validate_files(files: Sequence[Path], overrides: Sequence[str], *, allow_code: bool, strict: bool,
                   console: Console, err_console: Console) -> int:
    """Validate each file; print one line per task. Returns the number of files with errors."""
    failed = 0
    for path in files:
        try:
            kind = _file_kind(path)
            for label, task_path, task_overrides, weight_allow in _expand(path, kind, overrides, allow_code):
                _validate_task(label, task_path, task_overrides, allow_code=weight_allow, strict=strict,
                               console=console, err_console=err_console)
            if kind == "suite":
                console.print(f"ok {escape(str(path))} (eval suite)", highlight=False, soft_wrap=True)
        except UrpoError as e:
            failed += 1
            for line in str(e).splitlines():
                err_console.print(f"[red]error[/red] {escape(line)}", highlight=False, soft_wrap=True)
        except Exception as e:  # noqa: BLE001 - a bug must still be one line naming the file, not a traceback
            failed += 1
            line = f"{path}: internal error: {type(e).__name__}: {e}".replace("\n", " ")
            err_console.print(f"[red]error[/red] {escape(line)}", highlight=False, soft_wrap=True)
    return failed


def _expand(path: Path, kind: str, overrides: Sequence[str], allow_code: bool):
    """A task file is itself; a recipe expands to its tasks (with the recipe's per-task overrides), an eval suite to
    the tasks its benchmarks name (with their overrides); benchmarks with their own source are checked by loading."""
    if kind == "recipe":
        recipe = load_recipe(path, overrides)
        for ref in recipe.tasks:
            yield f"{path} -> {ref.task.name}", ref.task, override_strings(ref.overrides), allow_code or recipe.allow_code
    elif kind == "suite":
        from urpo_kit.config.suite import load_suite

        suite = load_suite(path, overrides)
        for bench in [*suite.player, *suite.referee, *suite.winrate]:
            if bench.task is not None:
                overrides_of = override_strings(getattr(bench, "overrides", {}))
                yield (f"{path} -> {bench.name or bench.task.name}", bench.task, overrides_of,
                       allow_code or suite.allow_code)
    else:
        yield str(path), path, list(overrides), allow_code


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


def _validate_task(label: str, path: Path, overrides: Sequence[str], *, allow_code: bool, strict: bool,
                   console: Console, err_console: Console) -> None:
    try:
        prepared = prepare_task(path, overrides, allow_code=allow_code, limit=1)
    except SourceUnavailable as e:
        if strict:
            raise
        err_console.print(f"[yellow]warning[/yellow] {escape(f'{label}: schema and templates ok; rows not checked: {e}')}",
                          highlight=False, soft_wrap=True)
        return
    summary = check_task(prepared, allow_code=allow_code)
    console.print(f"[green]ok[/green] {escape(f'{label} ({prepared.spec.kind}): {summary}')}", highlight=False,
                  soft_wrap=True)
