"""Does an eval suite score rows a recipe trains on? A held-out figure on training rows measures memory, not skill
(the first GSM8K suite scored the very train split the paper recipe trains on), so `validate` warns about it.

Two sources overlap when they read the same rows: the same hub dataset, config, split and data files, the same
local file, or the same generator with the same parameters and seed; and their row windows (`skip` to `skip +
limit`, a generator's rows up to `n`, the benchmark's own limit) intersect, unless they are shuffled differently.
lm-eval tasks named by `lm_eval:` read data urpo-kit does not see and are not checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from urpo_kit.config.loader import position_of
from urpo_kit.config.refs import written_overrides
from urpo_kit.kinds import load_task
from urpo_kit.config.schema import Recipe, Source
from urpo_kit.config.suite import EvalSuite, load_suite
from urpo_kit.sources import describe_source

__all__ = ["RowWindow", "recipe_overlaps", "row_window", "suite_overlaps"]


@dataclass(frozen=True)
class RowWindow:
    """Which rows of which data a source reads: `identity` names the data, [start, stop) the rows (stop None: all)."""

    identity: tuple[Any, ...]
    start: int
    stop: int | None
    order: tuple[bool, int]  # (shuffle, seed): two windows of differently shuffled rows are not comparable

    def overlaps(self, other: RowWindow) -> bool:
        if self.identity != other.identity:
            return False
        if self.order != other.order and (self.order[0] or other.order[0]):
            return True  # different permutations of the same rows: any two windows may share rows
        return (self.stop is None or other.start < self.stop) and (other.stop is None or self.start < other.stop)


def row_window(source: Source, limit: int | None = None) -> RowWindow:
    """The rows `source` yields, cut to `limit` rows (a benchmark's limit) when given."""
    if source.hf is not None:
        identity: tuple[Any, ...] = ("hf", source.hf, source.config, source.split,
                                     json.dumps(source.data_files, sort_keys=True))
    elif source.path is not None:
        identity = ("path", source.path.resolve())
    else:
        identity = ("generator", source.generator, json.dumps(source.params, sort_keys=True, default=str),
                    source.seed)
    limits = [n for n in (source.limit, limit) if n is not None]
    stop = source.skip + min(limits) if limits else None
    if source.generator is not None:
        stop = source.n if stop is None else min(stop, source.n)
    return RowWindow(identity, source.skip, stop, (source.shuffle, source.seed))


def _where(model: Any, field: str) -> str:
    mark = position_of(model, field)
    return f"{mark.file}:{mark.line}" if mark.line is not None else str(mark.file)


def _training(recipe: Recipe) -> list[tuple[str, str, Source]]:
    """(field, task name, source) of each task the recipe trains on."""
    specs = [load_task(ref.task, written_overrides(ref)) for ref in recipe.tasks]
    return [(f"tasks.{i}", spec.name, spec.source) for i, spec in enumerate(specs)]


def suite_overlaps(recipe: Recipe, suite: EvalSuite,
                   training: list[tuple[str, str, Source]] | None = None) -> list[str]:
    """One warning per suite benchmark that evaluates rows one of the recipe's tasks trains on, each naming the
    suite's benchmark and the recipe's task by file and line (`training`: the recipe's tasks, when already read)."""
    training = _training(recipe) if training is None else training
    warnings = []
    for role in ("player", "referee", "winrate"):
        for i, bench in enumerate(getattr(suite, role)):
            if bench.task is not None:
                source = load_task(bench.task, written_overrides(bench)).source
            elif getattr(bench, "source", None) is not None:
                source = bench.source
            else:
                continue  # an lm-eval task by name
            window = row_window(source, bench.limit or suite.limit)
            for field, name, trained in training:
                if window.overlaps(row_window(trained)):
                    warnings.append(f"{_where(suite, f'{role}.{i}')}: {role}.{i} evaluates "
                                    f"{describe_source(source)}, rows that task `{name}` trains on "
                                    f"({_where(recipe, field)}: {field}); evaluate another split or rows")
    return warnings


def recipe_overlaps(recipe: Recipe) -> list[str]:
    """`suite_overlaps` for each eval suite the recipe names (its held-out evaluation)."""
    training = _training(recipe)  # read once for all suites
    return [w for path in recipe.eval.suites for w in suite_overlaps(recipe, load_suite(path), training)]
