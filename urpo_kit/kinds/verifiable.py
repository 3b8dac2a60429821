"""Verifiable tasks: the player answers, a verifier checks the extracted answer against the row's gold answer."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from urpo_kit.config.schema import Answer, Prompt, TaskBase
from urpo_kit.errors import CodeNotAllowed, FieldError
from urpo_kit.kinds.base import Completion, Episode, LogMetric, Messages, Payload, PlayerPrompt, ResolvedTask, Score
from urpo_kit.recast import Templates, render
from urpo_kit.rewards import Verifier, combine, extractor, get_verifier


class VerifiableTask(TaskBase):
    """Player task with a ground-truth answer checked by a verifier."""

    kind: Literal["verifiable"] = Field(..., description="the player answers; a verifier checks the answer")
    player: Prompt = Field(..., description="the player's prompt")
    answer: Answer = Field(..., description="gold answer, extraction and verifier")


@dataclass(frozen=True)
class VerifiableEpisode(Payload):
    kind = "verifiable"
    gold: str

    def gold_text(self) -> str:
        return self.gold


def gold_as_completion(extract: str | Sequence[str], gold: str) -> str:
    """Write the gold answer the way a well-behaved model would, so the extractor is exercised too; for a chain, the
    way its first method (the preferred form) expects."""
    how = extract if isinstance(extract, str) else extract[0]
    if how == "boxed":
        return f"The answer is \\boxed{{{gold}}}."
    if how.startswith("tag:"):
        tag = how.split(":", 1)[1]
        return f"<{tag}>{gold}</{tag}>"
    return gold


def resolve_verifier(answer: Answer, *, allow_code: bool) -> Verifier:
    """The task's verifier with its `verifier_args` bound, checked against the verifier's signature now."""
    try:
        verifier = get_verifier(answer.verifier, allow_code=allow_code)
    except (ValueError, CodeNotAllowed) as e:
        raise FieldError("answer.verifier", str(e)) from None
    try:
        inspect.signature(verifier).bind("predicted", "gold", **answer.verifier_args)
    except TypeError as e:
        raise FieldError("answer.verifier_args", f"verifier `{answer.verifier}` does not take these arguments: "
                                                 f"{e}") from None
    except ValueError:  # a callable without an inspectable signature is checked on the gold by `validate`
        pass
    return functools.partial(verifier, **answer.verifier_args)


class Verifiable(ResolvedTask[VerifiableEpisode]):
    kind = "verifiable"
    role = "player"
    payload_type = VerifiableEpisode
    spec: VerifiableTask

    def __init__(self, spec: VerifiableTask, templates: Templates, *, allow_code: bool = False):
        super().__init__(spec, templates, allow_code=allow_code)
        self.player = PlayerPrompt(spec.player, templates)
        self.gold = templates.inline(spec.answer.gold, "answer.gold")
        try:
            self.extract = extractor(spec.answer.extract)
        except ValueError as e:
            raise FieldError("answer.extract", str(e)) from None
        self.verify = resolve_verifier(spec.answer, allow_code=allow_code)

    def render(self, variables: dict[str, Any], *, row_number: int | None, seed: int,
               position: int | None, presentation: int = 0) -> tuple[Messages, VerifiableEpisode]:
        gold = str(render(self.gold, variables, "answer.gold", row_number)).strip()
        if not gold:
            raise FieldError("answer.gold", "the gold answer renders empty", row_number=row_number)
        return self.player.messages(variables, row_number), VerifiableEpisode(gold)

    def score_text(self, text: str, gold: str, n_tokens: int | None = None) -> Score:
        """One completion against its gold: extraction, verifier, then the task's reward weights."""
        answer = self.extract(text)
        correct = 0.0 if answer is None else float(self.verify(answer, gold))
        value, _ = combine(correct, answer is not None, n_tokens, self.spec.reward)
        return Score(value, answer, f"extracted {answer!r}, gold {gold!r}: {correct:g}",
                     {"player/accuracy": correct, "player/answer_rate": float(answer is not None)})

    def score(self, completions: Sequence[Completion], log: LogMetric) -> list[Score]:
        return [self.score_text(c.text, c.episode.payload.gold, c.n_tokens) for c in completions]

    def check(self, episode: Episode[VerifiableEpisode]) -> str:
        gold, row = episode.payload.gold, episode.row
        completion = gold_as_completion(self.spec.answer.extract, gold)
        if self.extract(completion) is None:
            how = self.spec.answer.extract
            written = how if isinstance(how, str) else f"[{', '.join(how)}]"
            hint = ("; a `choice` verifier finds the letter in the whole reply itself: use `extract: full`"
                    if self.spec.answer.verifier == "choice" else "")
            raise FieldError("answer.extract", f"`{written}` extracts nothing from the gold {completion!r}{hint}",
                             row_number=row)
        try:
            score = self.score_text(completion, gold)
        except Exception as e:  # noqa: BLE001 - a user verifier failing on the gold is a task problem
            raise FieldError("answer.verifier", f"verifier `{self.spec.answer.verifier}` failed on the gold: "
                                                f"{type(e).__name__}: {e}", row_number=row) from None
        if score.metrics["player/accuracy"] < 1.0:
            raise FieldError("answer.verifier", f"gold {gold!r} does not verify against itself "
                                                f"(score {score.metrics['player/accuracy']})", row_number=row)
        return f"gold {gold!r} verifies"
