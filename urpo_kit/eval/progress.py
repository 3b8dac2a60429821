"""Progress bars for the long loops of an evaluation: counts, rate and time left, or nothing when switched off."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from urpo_kit.referee.backends import Messages, SamplingParams

Advance = Callable[[int], None]


class RateColumn(ProgressColumn):
    """Items per second (rich's own speed columns are for bytes); the overall rate until rich has a recent one."""

    def render(self, task: Task) -> Text:
        rate = task.speed or (task.completed / task.elapsed if task.completed and task.elapsed else None)
        return Text(f"{rate:.2f}/s" if rate else "-/s", style="progress.data.speed")


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Advance]:
    """A rich bar `description  [####  ] 12/40 0.85/s 0:00:14 0:00:33`; yields the function that advances it."""
    if not enabled or total <= 0:
        yield lambda n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


class ProgressBackend:
    """An HFBackend that shows one bar per `generate` call: the number of prompts is only known there."""

    def __init__(self, backend: Any, description: str, enabled: bool = True):
        self.backend, self.description, self.enabled = backend, description, enabled

    @property
    def tokenizer(self) -> Any:
        return self.backend.tokenizer

    def generate(self, prompts: Sequence[Messages], sampling: SamplingParams) -> list[str]:
        with self._bar(len(prompts)):
            return self.backend.generate(prompts, sampling)

    def next_token_logprobs(self, prompts: Sequence[Messages], token_ids: Sequence[Sequence[int]]) -> list[list[float]]:
        with self._bar(len(prompts)):
            return self.backend.next_token_logprobs(prompts, token_ids)

    @contextlib.contextmanager
    def _bar(self, total: int) -> Iterator[None]:
        with progress_bar(self.description, total, self.enabled) as advance:
            self.backend.progress = advance
            try:
                yield
            finally:
                self.backend.progress = None
