"""Referee modes as objects: everything a mode decides lives here, once.

A mode knows its default template and the reply start of that template's answer line (what a `likelihood` verdict
reads after), which candidates one judgment covers, how many candidates an item needs, whether scoring needs the G
answers of a prompt in one batch, and how a reply is parsed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

from urpo_kit.config.schema import Mode
from urpo_kit.rewards import parse_score, parse_verdict


@dataclass(frozen=True)
class JudgeMode:
    name: Mode
    template: str                # default referee template (built-in)
    prefill: str                 # the verdict start of that template's answer line
    least: int                   # candidates an item needs
    example: int                 # candidates `validate` renders the template over

    def __str__(self) -> str:
        return self.name

    @property
    def pointwise(self) -> bool:
        return self.name == "pointwise"

    @property
    def whole_groups(self) -> bool:
        """Whether a judgment compares answers, so all G answers of a prompt must be in one batch."""
        return not self.pointwise

    def units(self, n: int) -> list[tuple[int, ...]]:
        """The candidate subsets one judgment covers: all of them, every pair, or each alone."""
        if self.name == "listwise":
            return [tuple(range(n))]
        if self.name == "pairwise":
            return list(itertools.combinations(range(n), 2))
        return [(i,) for i in range(n)]

    def parse(self, reply: str, labels: Sequence[str], prefill: str, scale: tuple[int, int]) -> list[int] | float | None:
        """A reply (its prefill included) as a ranking over shown positions, or a pointwise score on `scale`;
        None when it cannot be read."""
        if self.pointwise:
            return parse_score(reply, *scale)
        return parse_verdict(reply[len(prefill):], labels, prefill)


MODES: dict[str, JudgeMode] = {m.name: m for m in (
    JudgeMode("listwise", "referee/rank.j2", "Ranking: [", least=2, example=4),
    JudgeMode("pairwise", "referee/pair.j2", "Ranking: [", least=2, example=2),
    JudgeMode("pointwise", "referee/score.j2", "Score: ", least=1, example=1),
)}
