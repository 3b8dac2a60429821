"""The row format shared by `urpo-kit judge` (JSONL), `urpo-kit serve` (JSON) and the reward adapter.

One pydantic model so that the CLI, the HTTP API and its OpenAPI schema accept exactly the same rows. Accepted:
- `{"prompt": ..., "responses": [r1, r2, ...]}`: 2 or more responses to rank;
- `{"prompt": ..., "chosen": ..., "rejected": ...}`: a preference pair (the chosen response is the gold best);
- `{"chosen": ..., "rejected": ...}` with no prompt: full conversations that share the prompt. Strings are
  hh-rlhf transcripts (the prompt is the shared prefix up to the last "\\n\\nAssistant:"); message lists are split
  at the first message where they differ.
A prompt may be a string or a list of chat messages (`[{"role": "user", "content": ...}, ...]`); a response may be
a string or a list of messages (TRL's conversational format: their contents are joined). Other keys are ignored,
and `id` is passed through to the output.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from urpo_kit.config.schema import VerdictKind
from urpo_kit.referee.judge import JudgeItem, Verdict

HH_ASSISTANT = "\n\nAssistant:"


class Message(BaseModel):
    """A chat message; keys other than role and content (e.g. `name`) are ignored."""

    model_config = ConfigDict(extra="ignore")
    role: str
    content: str


Text = str | list[Message]


@dataclass(frozen=True)
class RowInput:
    """A row reduced to what the referee sees: the prompt text, the response texts, the gold best (if known)."""

    prompt: str
    responses: list[str]
    gold: int | None = None


def messages_text(messages: list[Message]) -> str:
    """A lone user message is its content; a conversation becomes a `Role: content` transcript the referee can read."""
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].content
    return "\n\n".join(f"{m.role.capitalize()}: {m.content}" for m in messages)


def response_text(response: Text) -> str:
    return response if isinstance(response, str) else "\n\n".join(m.content for m in response)


def _split_transcripts(chosen: str, rejected: str) -> RowInput:
    common = os.path.commonprefix([chosen, rejected])
    cut = common.rfind(HH_ASSISTANT)
    if cut < 0:
        raise ValueError('no `prompt`, and `chosen`/`rejected` share no prefix ending in "\\n\\nAssistant:" '
                         "(give a `prompt`, or hh-rlhf style transcripts)")
    start = cut + len(HH_ASSISTANT)
    return RowInput(chosen[:cut].strip(), [chosen[start:].strip(), rejected[start:].strip()], 0)


def _split_conversations(chosen: list[Message], rejected: list[Message]) -> RowInput:
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise ValueError("no `prompt`, and the `chosen`/`rejected` conversations share no first message")
    responses = [response_text(chosen[shared:]), response_text(rejected[shared:])]
    return RowInput(messages_text(chosen[:shared]), responses, 0)


class JudgeRow(BaseModel):
    """One prompt and the responses to judge (see the module docstring for the accepted shapes)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"id": "q1", "prompt": "Name a prime number.", "responses": ["7", "8 is prime", "Nine"]},
        {"prompt": [{"role": "user", "content": "Say hi."}], "chosen": "Hi!", "rejected": "No."},
    ]})

    id: str | int | None = Field(None, description="passed through to the result")
    prompt: str | list[Message] | None = Field(None, description="the request: text or chat messages")
    responses: list[Text] | None = Field(None, description="2 or more responses to rank (or give chosen/rejected)")
    chosen: Text | None = Field(None, description="the preferred response of a pair (gold best)")
    rejected: Text | None = Field(None, description="the other response of a pair")

    _input: RowInput = PrivateAttr()

    @model_validator(mode="after")
    def _check(self) -> "JudgeRow":
        self._input = self._normalise()
        texts = {"prompt": self._input.prompt, "id": self.id if isinstance(self.id, str) else ""}
        texts.update({f"responses.{i}": r for i, r in enumerate(self._input.responses)})
        for name, text in texts.items():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:  # JSON may escape a lone surrogate ("\ud800"), no file or model can
                raise ValueError(f"`{name}` is not valid Unicode text (a lone surrogate at character {e.start})") \
                    from None
        return self

    @property
    def input(self) -> RowInput:
        """The row as the referee sees it: prompt text, response texts, gold best (chosen/rejected rows)."""
        return self._input

    def _normalise(self) -> RowInput:
        pair = (self.chosen is not None, self.rejected is not None)
        if self.responses is not None:
            if any(pair):
                raise ValueError("give either `responses` or `chosen`/`rejected`, not both")
            if self.prompt is None:
                raise ValueError("`prompt` is missing")
            if len(self.responses) < 2:
                raise ValueError(f"`responses` needs at least 2 responses, got {len(self.responses)}")
            return RowInput(self._prompt_text(), [response_text(r) for r in self.responses])
        if pair != (True, True):
            raise ValueError("give `responses` (a list), or both `chosen` and `rejected`")
        if self.prompt is not None:
            return RowInput(self._prompt_text(), [response_text(self.chosen), response_text(self.rejected)], 0)
        if isinstance(self.chosen, str) and isinstance(self.rejected, str):
            return _split_transcripts(self.chosen, self.rejected)
        if isinstance(self.chosen, list) and isinstance(self.rejected, list):
            return _split_conversations(self.chosen, self.rejected)
        raise ValueError("without a `prompt`, `chosen` and `rejected` must both be strings or both message lists")

    def _prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else messages_text(self.prompt or [])


def row_key(row: RowInput, *context: Any) -> str:
    """A stable hash of a row's content (and of whatever else decides its judgment): keys resumable output and seeds
    the presentation order, so a row is shown the same way whatever batch it lands in."""
    text = json.dumps([row.prompt, row.responses, *context], ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def judge_item(row: RowInput, key: str) -> JudgeItem:
    return JudgeItem(row.prompt, row.responses, key)


class JudgeResult(BaseModel):
    """The verdict on one row."""

    id: str | int | None = None
    ranking: list[int] | None = Field(description="response indices (0-based, input order), best first; null if no "
                                                  "judgment parsed")
    scores: list[float] = Field(description="per response (input order), in [0, 1], higher is better; sample: "
                                            "rank-based (0.5 each: no signal); likelihood: averaged probabilities "
                                            "(listwise: P(ranked first), sums to 1; pairwise: mean win probability "
                                            "over opponents, sums to N/2; pointwise: expected score on [0, 1])")
    verdict: VerdictKind = Field(description="sample: parsed from generated text; likelihood: read from the label "
                                             "(or score) probabilities after the prefill")
    status: Literal["ok", "partial", "failed"] = Field(description="did every judgment parse, some, or none")
    parsed: int = Field(description="judgments that parsed")
    attempts: int = Field(description="judgments made")
    agreement: float | None = Field(None, description="both_orders: share of order pairs that gave the same ranking")
    correct: float | None = Field(None, description="chosen/rejected rows: 1 if the chosen response scored highest, "
                                                    "0.5 for a tie (or a failed parse), else 0")
    raw: list[str] = Field(description="the judgment texts, in the order they were made (likelihood: empty)")
    shown: list[list[int]] = Field(description="per judgment: the response index shown with each label")
    parses: list[list[int] | float | None] = Field(description="per judgment: its ranking (response indices) or "
                                                               "its score (likelihood: the ranking its probabilities "
                                                               "imply, or the expected score); null where it did "
                                                               "not parse")
    probabilities: list[list[float]] = Field(description="likelihood, per judgment: the probability of each label "
                                                         "in `shown` order, or of each score low..high (pointwise); "
                                                         "sample: empty")


def gold_credit(verdict: Verdict, gold: int) -> float:
    """1 if the gold best scored strictly highest, 1/k if it tied with k-1 others for first (a failed parse ties all
    responses: chance level), else 0: accuracy that neither rewards nor hides a referee that cannot decide."""
    best = max(verdict.scores)
    if verdict.scores[gold] < best - 1e-9:
        return 0.0
    return 1.0 / sum(s >= best - 1e-9 for s in verdict.scores)


def to_result(row: RowInput, verdict: Verdict, kind: VerdictKind, row_id: str | int | None = None) -> JudgeResult:
    """The output row; `kind` is how the verdict was reached (the Judge's `verdict`), so a reader of the file or
    the response knows whether `scores` are ranks or probabilities."""
    correct = gold_credit(verdict, row.gold) if row.gold is not None else None
    return JudgeResult(id=row_id, ranking=verdict.ranking, scores=verdict.scores, verdict=kind, status=verdict.status,
                       parsed=verdict.parsed, attempts=verdict.attempts, agreement=verdict.agreement, correct=correct,
                       raw=verdict.raw, shown=verdict.shown, parses=verdict.parses,
                       probabilities=verdict.probabilities)


def validation_message(error: Any) -> str:
    """One line per problem of a pydantic ValidationError: `field.path: message`."""
    lines = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)
