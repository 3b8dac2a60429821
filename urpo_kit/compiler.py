"""Compiler: a recipe's tasks become one mixed, seeded, resumable stream of Episodes for the GRPO trainer.

Stopping rule: the stream holds exactly `recipe.stream_length` (= grpo.steps x grpo.prompts_per_step) episodes.
Task i gets round(weight_i / sum(weights) x length) of them (largest remainder, so counts add up exactly), spread
evenly over the stream with a seeded phase. A task with fewer rows than its share cycles: its first pass follows
the source order (shuffle there if wanted), later passes are reshuffled with the seed. `episode(position)` is a pure
function of (recipe, position), so a resumed run continues the same order with nothing skipped or repeated.

With `grpo.steps_by_role`, the same rule is applied twice: the steps are shared out between the roles in proportion
to the summed weights of each role's tasks and spread evenly, then each role's positions between its tasks; every
step then holds prompts of one role only (see `MixedStream.step_role`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator, Sequence

from urpo_kit.config.loader import Overrides, folder_of, locate
from urpo_kit.config.refs import located, require_named_files, written_overrides
from urpo_kit.config.schema import Recipe, TaskBase
from urpo_kit.errors import CodeNotAllowed, ConfigError, FieldError, Problem, SourceError, SourceUnavailable
from urpo_kit.kinds import Episode, Preference, ResolvedTask, load_task, resolve
from urpo_kit.recast import stable_seed
from urpo_kit.sources import LoadedRows, SkippedRow, load_rows

logger = logging.getLogger(__name__)


@dataclass
class PreparedTask:
    """A resolved task (names looked up, templates compiled) with its rows loaded; rows that fail to render are
    dropped and counted."""

    task: ResolvedTask
    rows: LoadedRows
    weight: float = 1.0

    @property
    def spec(self) -> TaskBase:
        return self.task.spec

    @property
    def name(self) -> str:
        return self.task.name


def prepare_task(path: Path | str, overrides: Overrides = (), *, allow_code: bool = False,
                 weight: float = 1.0, limit: int | None = None) -> PreparedTask:
    """Load and validate a task file, read its rows and keep only rows that render (counted like malformed rows)."""
    spec = load_task(path, overrides)
    if limit is not None:
        spec.source.limit = min(limit, spec.source.limit or limit)
    return prepare_spec(spec, allow_code=allow_code, weight=weight)


def prepare_spec(spec: TaskBase, *, allow_code: bool = False, weight: float = 1.0) -> PreparedTask:
    base_dir = folder_of(spec)
    task = resolve(spec, allow_code=allow_code)
    try:
        loaded = load_rows(spec.source, base_dir=base_dir, allow_code=allow_code)
    except SourceUnavailable as e:  # a hub source offline: `validate` warns and goes on, so it keeps its type
        raise SourceUnavailable(str(source_error(spec, str(e)))) from None
    except (SourceError, CodeNotAllowed) as e:
        raise source_error(spec, str(e)) from None
    kept_rows, kept_numbers, first_error = [], [], None
    for row, number in zip(loaded.rows, loaded.row_numbers):
        try:
            task.episode(row, row_number=number)
        except FieldError as e:
            first_error = first_error or e
            loaded.skipped.append(SkippedRow(number, str(e)))
            continue
        kept_rows.append(row)
        kept_numbers.append(number)
    if first_error is not None and (
        not kept_rows or len(loaded.skipped) > spec.source.max_error_fraction * max(loaded.total_seen, 1)
    ):
        problem = locate(spec, first_error)
        summary = f" [{len(loaded.skipped)} of {loaded.total_seen} rows fail]"
        raise ConfigError(dataclasses.replace(problem, message=problem.message + summary))
    loaded.rows, loaded.row_numbers = kept_rows, kept_numbers
    if not kept_rows:
        raise source_error(spec, f"{loaded.description} gave no usable rows")
    return PreparedTask(task, loaded, weight)


def source_error(spec: TaskBase, message: str) -> ConfigError:
    """A problem with a task's rows, at the task file's line that names the source (`source.path`, ...)."""
    source = spec.source
    field = "source." + next(k for k in ("path", "hf", "generator") if getattr(source, k) is not None)
    return located(spec, field, message)


def check_recipe(recipe: Recipe) -> None:
    """What a recipe can get wrong beyond its schema, each a located error: missing files, and settings that do not
    go together."""
    require_named_files(recipe)
    if recipe.grpo.steps_by_role and recipe.generation.backend != "hf":
        raise located(recipe, "grpo.steps_by_role", "steps by role set each step's generation length on "
                      f"transformers' generate: they need generation.backend: hf (it is {recipe.generation.backend})")


def check_tasks(recipe: Recipe, tasks: Sequence[ResolvedTask]) -> None:
    """Settings of the recipe and its tasks that do not go together, each a located error. A preference task that
    trains likelihood verdicts makes every referee step draw one label from the labels alone, so those steps must
    hold referee prompts only (steps by role) and every trained preference task must read its verdict that way."""
    preference = [t for t in tasks if isinstance(t, Preference)]
    sampling_labels = [t for t in preference if t.samples_labels]
    if sampling_labels and not recipe.grpo.steps_by_role:
        raise located(recipe, "grpo.steps_by_role", f"task {sampling_labels[0].name} trains likelihood verdicts "
                      "(one label per judgment, drawn from the labels alone): that needs steps_by_role: true")
    sampled = [t for t in preference if not t.samples_labels]
    if sampling_labels and sampled:
        raise ConfigError(locate(sampled[0].spec, FieldError(
            "referee.verdict", f"task {sampling_labels[0].name} trains likelihood verdicts, so referee steps draw "
                               "one label; every trained preference task must then use verdict: likelihood")))


def prepare_recipe_tasks(recipe: Recipe) -> list[PreparedTask]:
    check_recipe(recipe)
    tasks = [prepare_task(ref.task, written_overrides(ref), allow_code=recipe.allow_code, weight=ref.weight)
             for ref in recipe.tasks]
    check_tasks(recipe, [t.task for t in tasks])
    return tasks


def allocate(weights: Sequence[float], length: int) -> list[int]:
    """Largest-remainder allocation: counts proportional to weights that add up to exactly `length`."""
    if not weights or any(not (w > 0 and math.isfinite(w)) for w in weights):
        raise ValueError(f"weights must be one or more positive finite numbers, got {list(weights)}")
    if length < 0:
        raise ValueError(f"length must not be negative, got {length}")
    total = sum(weights)
    raw = [w / total * length for w in weights]
    counts = [math.floor(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in by_remainder[: length - sum(counts)]:
        counts[i] += 1
    return counts


def spread(counts: Sequence[int], seed: int) -> list[int]:
    """Indices repeated `counts[i]` times, each index's occurrences evenly spaced with a seeded phase."""
    rng = random.Random(seed)
    slots = []
    for i, count in enumerate(counts):
        phase = rng.random()
        slots += [((k + phase) / count, rng.random(), i) for k in range(count)]
    slots.sort()
    return [i for _, _, i in slots]


def occurrences(indices: Sequence[int]) -> list[tuple[int, int]]:
    """(index, k) pairs: the k-th time each index appears."""
    seen: dict[int, int] = {}
    out = []
    for i in indices:
        out.append((i, seen.get(i, 0)))
        seen[i] = out[-1][1] + 1
    return out


class MixedStream:
    """The mixed URPO data stream; see the module docstring for the stopping rule and resume guarantee."""

    def __init__(self, tasks: Sequence[PreparedTask], length: int, seed: int = 0, step_size: int | None = None):
        """`step_size`: prompts per optimizer step when each step holds one role (grpo.steps_by_role), else None."""
        if length < 1:
            raise ValueError("stream length must be positive")
        if not tasks:
            raise ValueError("a mixed stream needs at least one task")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            # counts, metrics and the cycling seed are all per task name: two tasks sharing one would be merged
            raise ConfigError(Problem(None, None, None, "tasks", f"two tasks are named `{dup}`; give one another "
                                      "`name` (e.g. with an override `name: other`)"))
        self.tasks, self.length, self.seed, self.step_size = list(tasks), length, seed, step_size
        if step_size is not None and length % step_size:
            raise ValueError(f"a stream of steps by role needs whole steps: {length} is not a multiple of {step_size}")
        self.roles = sorted({t.task.role for t in self.tasks})
        self.counts = allocate([t.weight for t in self.tasks], length) if step_size is None else self._role_counts()
        logger.info("mixed stream: %d episodes, seed %d; %s", length, seed, self.summary())

    def summary(self) -> str:
        """Realised episodes per task, with their share and the passes over each task's rows (the logged line)."""
        return ", ".join(f"{t.name}: {c} ({c / self.length:.1%}, {e:.2f} passes)"
                         for t, c, e in zip(self.tasks, self.counts, self.epochs().values()))

    @classmethod
    def from_recipe(cls, recipe: Recipe, tasks: Sequence[PreparedTask] | None = None) -> "MixedStream":
        return cls(tasks if tasks is not None else prepare_recipe_tasks(recipe), recipe.stream_length, recipe.seed,
                   recipe.grpo.prompts_per_step if recipe.grpo.steps_by_role else None)

    def _role_tasks(self, role: str) -> list[int]:
        return [ti for ti, t in enumerate(self.tasks) if t.task.role == role]

    @cached_property
    def role_steps(self) -> list[str]:
        """The role of every optimizer step (steps by role), roles spread evenly over the run with a seeded phase."""
        if self.step_size is None:
            raise ValueError("this stream mixes roles within a step")
        weights = [sum(self.tasks[ti].weight for ti in self._role_tasks(role)) for role in self.roles]
        return [self.roles[i] for i in spread(allocate(weights, self.length // self.step_size),
                                               stable_seed(self.seed, "role steps"))]

    def _role_counts(self) -> list[int]:
        counts = [0] * len(self.tasks)
        for role in self.roles:
            members = self._role_tasks(role)
            share = allocate([self.tasks[ti].weight for ti in members], self.role_steps.count(role) * self.step_size)
            for ti, count in zip(members, share):
                counts[ti] = count
        return counts

    def step_role(self, step: int) -> str:
        """The role of the prompts of optimizer step `step` (0-based), when every step holds one role."""
        return self.role_steps[step]

    @cached_property
    def schedule(self) -> list[tuple[int, int]]:
        """(task index, k-th occurrence of that task) for every position, tasks spread evenly with a seeded phase;
        by role: each step's positions are the next ones of its role's own evenly spread task sequence."""
        seed = stable_seed(self.seed, "schedule")
        if self.step_size is None:
            return occurrences(spread(self.counts, seed))
        sequences = {}
        for role in self.roles:
            members = self._role_tasks(role)
            order = spread([self.counts[ti] for ti in members], stable_seed(seed, role))
            sequences[role] = iter(occurrences([members[i] for i in order]))
        return [next(sequences[role]) for role in self.role_steps for _ in range(self.step_size)]

    def _row_index(self, ti: int, k: int) -> int:
        n = len(self.tasks[ti].rows.rows)
        epoch, offset = divmod(k, n)
        if epoch == 0:
            return offset
        order = list(range(n))
        random.Random(stable_seed(self.seed, self.tasks[ti].name, "epoch", epoch)).shuffle(order)
        return order[offset]

    def episode(self, position: int) -> Episode:
        if not 0 <= position < self.length:
            raise IndexError(f"position {position} outside the stream (0..{self.length - 1})")
        ti, k = self.schedule[position]
        task = self.tasks[ti]
        use, presentation = divmod(k, task.task.presentations)  # a row may fill several consecutive places
        idx = self._row_index(ti, use)
        ep = task.task.episode(task.rows.rows[idx], row_number=task.rows.row_numbers[idx], seed=self.seed,
                               position=position, presentation=presentation)
        ep.epoch = use // len(task.rows.rows)
        return ep

    def episodes(self, start: int = 0, stop: int | None = None) -> Iterator[Episode]:
        for position in range(start, self.length if stop is None else min(stop, self.length)):
            yield self.episode(position)

    def realised_counts(self, start: int = 0, stop: int | None = None) -> dict[str, int]:
        """Episodes per task in [start, stop): the figure logged at compile time and checked in tests."""
        out = {t.name: 0 for t in self.tasks}
        for ti, _ in self.schedule[start:stop]:
            out[self.tasks[ti].name] += 1
        return out

    def epochs(self) -> dict[str, float]:
        """Passes over each task's rows that the stream makes (above 1 means the task cycles)."""
        return {t.name: c / (len(t.rows.rows) * t.task.presentations) for t, c in zip(self.tasks, self.counts)}
