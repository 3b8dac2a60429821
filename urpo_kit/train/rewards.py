"""GRPO reward functions: one per task kind present in the run, each returning None for the rows of other kinds.

TRL 1.16 calls every reward function once per generation batch with `prompts` (text), `completions`, `completion_ids`,
the dataset's extra columns (`task`, `kind`, `episode`, `messages`, as written by `trainer.trl_record`),
`trainer_state` and `log_metric`. The batch is this process's whole generation batch, so all G
completions of a prompt arrive together (the layout check guarantees it where scoring needs whole groups), next to
each other, with the same position.

Scoring is the resolved task's own (`ResolvedTask.score`, the same scorer `validate` and eval call); this module only
selects rows, calls every task of the kind in a fixed order (also with no rows: the self-referee's calls are
collective, see `train.self_referee`), and logs the per-task metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from urpo_kit.kinds import KINDS, Completion, Episode, ResolvedTask, episode_from_record, prompt_groups
from urpo_kit.train.metrics import LogMetric, group_stats


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a list of chat messages (the assistant's last)."""
    if isinstance(completion, str):
        return completion
    return str(completion[-1]["content"]) if completion else ""


def _no_log(_name: str, _value: float) -> None:
    return None


@dataclass
class StepObserver:
    """Data positions consumed at each step (as the reward functions saw them), for the run log and resume checks."""

    positions: dict[int, list[int]] = field(default_factory=dict)

    def record(self, step: int, episodes: Sequence[Episode[Any]]) -> None:
        self.positions[step] = sorted({e.position for e in episodes if e.position is not None})

    def drain(self) -> dict[int, list[int]]:
        out, self.positions = self.positions, {}
        return out


class KindReward:
    """The reward function of one task kind: scores its rows with each task's scorer and logs per-task metrics."""

    def __init__(self, kind: str, tasks: Sequence[ResolvedTask[Any]]):
        self.kind, self.tasks = kind, list(tasks)
        self.observer: StepObserver | None = None
        self.__name__ = kind  # TRL names the reward column (`rewards/<name>/mean`) after it

    def __call__(self, prompts: list, completions: list, completion_ids: list[list[int]], *, task: list[str],
                 kind: list[str], episode: list[str], messages: list, log_metric: LogMetric | None = None,
                 trainer_state: Any = None, **_: Any) -> list[float | None]:
        log = log_metric or _no_log
        episodes = [episode_from_record({"task": t, "kind": k, "prompt": m, "episode": e})
                    for t, k, m, e in zip(task, kind, messages, episode)]
        if self.observer is not None and trainer_state is not None:
            self.observer.record(trainer_state.global_step + 1, episodes)
        out: list[float | None] = [None] * len(kind)
        for resolved in self.tasks:  # every task, in a fixed order, rows or not
            mine = [i for i in range(len(kind)) if kind[i] == self.kind and task[i] == resolved.name]
            batch = [Completion(episodes[i], completion_text(completions[i]), len(completion_ids[i])) for i in mine]
            prefix = f"{resolved.name}/"
            scores = resolved.score(batch, lambda key, value, prefix=prefix: log(prefix + key, value))
            for i, c, s in zip(mine, batch, scores):
                out[i] = s.value
                for key, value in s.metrics.items():
                    log(prefix + key, value)
                log(f"{prefix}{resolved.role}/reward_mean", s.value)
                log(f"{prefix}{resolved.role}/length_mean", c.n_tokens)
            group_stats(log, f"{prefix}{resolved.role}", [[scores[i].value for i in group]
                                                           for group in prompt_groups(batch)])
        return out


def reward_functions(tasks: Sequence[ResolvedTask[Any]], observer: StepObserver | None = None) -> list[KindReward]:
    """One reward function per task kind present in the run (the first one also records data positions)."""
    kinds = [kind for kind in KINDS if any(t.kind == kind for t in tasks)]
    out = [KindReward(kind, [t for t in tasks if t.kind == kind]) for kind in kinds]
    if out:
        out[0].observer = observer
    return out
