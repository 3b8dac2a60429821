"""What every task kind shares: the resolved task, the episode it renders, and the score it gives a completion.

A kind module (`verifiable`, `preference`, `open_ended`) owns its schema model, its typed episode payload and a
`ResolvedTask` subclass. Resolving a task (`resolve`) compiles every template once and looks every name up once
(verifier, extractor, referee template), raising a `FieldError` that names the task field; nothing downstream looks
a name up by string again. The resolved task renders rows into `Episode`s and is the one scorer that training,
`validate`, evaluation and `render` call.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from urpo_kit.config.schema import Prompt, TaskBase
from urpo_kit.errors import FieldError
from urpo_kit.recast import Templates, chat, render

LogMetric = Callable[[str, float], None]
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Payload:
    """The kind-specific part of an episode: what its completions are scored against."""

    kind: ClassVar[str] = ""

    def gold_text(self) -> str:
        """What the episode is scored against, as `render` shows it."""
        return "none"


P = TypeVar("P", bound=Payload)


@dataclass
class Episode(Generic[P]):
    """One training or evaluation prompt: the messages the model sees and the payload it is scored against."""

    task: str
    messages: Messages
    payload: P
    row: int | None = None
    position: int | None = None   # place in the mixed stream: the G completions of one prompt share it
    epoch: int = 0

    @property
    def kind(self) -> str:
        return self.payload.kind

    def to_record(self) -> dict[str, Any]:
        """Flat, schema-stable record for a `datasets.Dataset` (TRL passes extra columns to reward functions)."""
        episode = {"row": self.row, "position": self.position, "epoch": self.epoch,
                   "payload": dataclasses.asdict(self.payload)}
        return {"prompt": self.messages, "task": self.task, "kind": self.kind,
                "episode": json.dumps(episode, sort_keys=True)}


@dataclass(frozen=True)
class Score:
    """A completion's score: `value` is the reward GRPO sees (the task's weighted sum); `answer` is what was read
    from the completion (an extracted answer, a ranking over shown positions, None when nothing was); `metrics`
    are logged per completion as `task/ROLE/NAME` (keys are `ROLE/NAME`)."""

    value: float
    answer: Any = None
    explanation: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Completion:
    """One completion of an episode, as a scorer receives it."""

    episode: Episode[Any]
    text: str
    n_tokens: int | None = None


class ResolvedTask(ABC, Generic[P]):
    """A task of one kind with names resolved and templates compiled; renders rows and scores completions."""

    kind: ClassVar[str]
    role: ClassVar[str]             # `player` or `referee`: the metrics role and the eval-suite section it fits
    payload_type: ClassVar[type[Payload]]

    def __init__(self, spec: TaskBase, templates: Templates, *, allow_code: bool = False):
        self.spec, self.templates = spec, templates
        self.fields = {name: templates.expression(expr, f"fields.{name}") for name, expr in spec.fields.items()}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def whole_groups(self) -> bool:
        """Whether scoring compares the G completions of a prompt, so a batch must hold all of them."""
        return False

    def variables(self, row: dict[str, Any], row_number: int | None = None) -> dict[str, Any]:
        """Raw columns plus the task's `fields` expressions evaluated over them."""
        out = dict(row)
        for name, expr in self.fields.items():
            out[name] = render(expr, row, f"fields.{name}", row_number)
        return out

    @property
    def presentations(self) -> int:
        """How many consecutive places of the training stream one row fills, each rendered with its own
        `presentation` index (a preference task's `orders_per_row`); 1 for most tasks."""
        return 1

    def episode(self, row: dict[str, Any], *, row_number: int | None = None, seed: int = 0,
                position: int | None = None, presentation: int = 0) -> Episode[P]:
        """Render one row. `seed` and `position` fix any seeded choice (a referee's shuffle) reproducibly;
        `presentation` (0..presentations-1) picks which of a row's renderings this is."""
        messages, payload = self.render(self.variables(row, row_number), row_number=row_number, seed=seed,
                                        position=position, presentation=presentation)
        return Episode(self.name, messages, payload, row_number, position)

    @abstractmethod
    def render(self, variables: dict[str, Any], *, row_number: int | None, seed: int,
               position: int | None, presentation: int = 0) -> tuple[Messages, P]:
        """The messages and payload of one row's variables."""

    @abstractmethod
    def score(self, completions: Sequence[Completion], log: LogMetric) -> list[Score]:
        """Score the completions of this task in one batch (all G of a prompt together, in stream order); `log`
        takes the per-group and per-step metrics that are not per completion."""

    def prompts(self, episode: Episode[P]) -> dict[str, Messages]:
        """Every prompt the model sees for this episode, by role (`render` shows them): the episode's own."""
        return {self.role: episode.messages}

    @abstractmethod
    def check(self, episode: Episode[P]) -> str:
        """`validate`'s check of the reward path on one rendered row: a one-line summary, or a FieldError."""


def prompt_groups(completions: Sequence[Completion]) -> list[list[int]]:
    """Indices of consecutive completions of one prompt (the same stream position): the G answers of a group."""
    out: list[list[int]] = []
    for i, c in enumerate(completions):
        if out and completions[out[-1][0]].episode.position == c.episode.position:
            out[-1].append(i)
        else:
            out.append([i])
    return out


class PlayerPrompt:
    """A compiled player prompt (system and user message), shared by the kinds the player answers."""

    def __init__(self, prompt: Prompt, templates: Templates, prefix: str = "player"):
        self.system = templates.inline(prompt.system, f"{prefix}.system") if prompt.system else None
        if prompt.prompt is not None:
            self.user, self.user_field = templates.inline(prompt.prompt, f"{prefix}.prompt"), f"{prefix}.prompt"
        else:
            self.user, self.user_field = templates.file(prompt.template, f"{prefix}.template"), f"{prefix}.template"
        self.prefix = prefix

    def messages(self, variables: dict[str, Any], row_number: int | None = None) -> Messages:
        user = render(self.user, variables, self.user_field, row_number)
        if not str(user).strip():  # the model would be trained on an empty question
            raise FieldError(self.user_field, "the prompt renders empty", row_number=row_number)
        system = render(self.system, variables, f"{self.prefix}.system", row_number) if self.system else None
        return chat(system, user)
