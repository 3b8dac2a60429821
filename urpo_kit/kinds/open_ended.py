"""Open-ended tasks: no reference answer; the current model, as referee, judges its own G answers to a prompt."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from urpo_kit.config.schema import Prompt, RefereeSpec, TaskBase
from urpo_kit.kinds.base import (
    Completion,
    Episode,
    LogMetric,
    Messages,
    Payload,
    PlayerPrompt,
    ResolvedTask,
    Score,
    prompt_groups,
)
from urpo_kit.recast import Templates, stable_seed
from urpo_kit.referee import JudgeItem, Verdict
from urpo_kit.referee.view import RefereeRenderer, RefereeView
from urpo_kit.rewards import combine, spearman


class SelfRefereeSpec(RefereeSpec):
    """The current model judging its own G answers to an open-ended prompt."""

    train_judgments: bool = Field(False, description="also train on the self-referee's judgments (off in the paper)")


class OpenEndedTask(TaskBase):
    """Player task with no reference: the current model ranks its own G answers."""

    kind: Literal["open_ended"] = Field(..., description="the player answers; the same model ranks its answers")
    player: Prompt = Field(..., description="the player's prompt")
    self_referee: SelfRefereeSpec = Field(default_factory=SelfRefereeSpec,
                                          description="how the current model judges the group's answers")


@dataclass(frozen=True)
class OpenEndedEpisode(Payload):
    kind = "open_ended"
    instruction: str   # the player's request as the referee is shown it

    def gold_text(self) -> str:
        return "none (the model ranks its own answers)"


GroupJudge = Callable[[list[JudgeItem]], list[Verdict]]


class OpenEnded(ResolvedTask[OpenEndedEpisode]):
    kind = "open_ended"
    role = "player"
    payload_type = OpenEndedEpisode
    spec: OpenEndedTask

    def __init__(self, spec: OpenEndedTask, templates: Templates, *, allow_code: bool = False):
        super().__init__(spec, templates, allow_code=allow_code)
        self.player = PlayerPrompt(spec.player, templates)
        self.referee = RefereeRenderer(spec.self_referee, templates, field_prefix="self_referee")
        self.judge: GroupJudge | None = None   # bound by the trainer: the current model as referee

    @property
    def whole_groups(self) -> bool:
        return self.referee.mode.whole_groups

    def render(self, variables: dict[str, Any], *, row_number: int | None, seed: int,
               position: int | None, presentation: int = 0) -> tuple[Messages, OpenEndedEpisode]:
        messages = self.player.messages(variables, row_number)
        return messages, OpenEndedEpisode(messages[-1]["content"])

    def score(self, completions: Sequence[Completion], log: LogMetric) -> list[Score]:
        """One judge call for all groups of the batch (called even with none: see `train.self_referee`)."""
        if self.judge is None:
            raise RuntimeError(f"{self.name}: open-ended scoring needs a judge bound to the current model")
        groups = [[completions[i] for i in group] for group in prompt_groups(completions)]
        start = time.perf_counter()
        verdicts = self.judge([JudgeItem(g[0].episode.payload.instruction, [c.text for c in g],
                                         key=str(g[0].episode.position)) for g in groups])
        log("referee/time_s", time.perf_counter() - start)
        out = []
        for group, verdict in zip(groups, verdicts):
            for c, s in zip(group, verdict.scores):
                value, _ = combine(s, bool(c.text.strip()), c.n_tokens, self.spec.reward)
                out.append(Score(value, s, f"self-referee score {s:.3f}"))
            log("referee/parse_rate", verdict.parsed / verdict.attempts if verdict.attempts else 0.0)
            log("referee/no_signal_rate", float(not verdict.ok))
            if verdict.agreement is not None:
                log("referee/both_orders_agreement", verdict.agreement)
            if verdict.ok and (rho := spearman(verdict.scores, [c.n_tokens or 0 for c in group])) is not None:
                log("referee/rank_length_spearman", rho)
        return out

    def example_judgment(self, episode: Episode[OpenEndedEpisode]) -> RefereeView:
        """The self-referee's prompt for this episode over placeholder answers (the real ones exist only in
        training), as many as one judgment of the mode shows; its prefill ends the messages."""
        placeholders = [f"(answer {i + 1})" for i in range(self.referee.mode.example)]
        return self.referee.render(episode.payload.instruction, placeholders,
                                   random.Random(stable_seed("example", self.name)))

    def prompts(self, episode: Episode[OpenEndedEpisode]) -> dict[str, Messages]:
        return {"player": episode.messages, "referee": self.example_judgment(episode).messages}

    def check(self, episode: Episode[OpenEndedEpisode]) -> str:
        self.referee.check_prefill(self.example_judgment(episode))
        return f"player and {self.referee.mode} self-referee prompts render"
