"""Preference tasks: the model as referee ranks candidates whose gold order is known; the ranking is the reward."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from urpo_kit.config.schema import RefereeSpec, TaskBase
from urpo_kit.errors import FieldError
from urpo_kit.kinds.base import Completion, Episode, LogMetric, Messages, Payload, ResolvedTask, Score
from urpo_kit.recast import Templates, render, stable_seed
from urpo_kit.referee.backends import single_token_ids
from urpo_kit.referee.modes import MODES
from urpo_kit.referee.view import MAX_LETTER_LABELS, RefereeRenderer, RefereeView
from urpo_kit.rewards import combine, parse_ranking, score_ranking

# What a trained judgment cannot use: GRPO samples one judgment per completion, at the player role's sampling.
_JUDGE_ONLY = ("debias", "samples", "sampling")


class PreferenceTask(TaskBase):
    """Referee task: rank candidates whose gold order is known (best first)."""

    kind: Literal["preference"] = Field(..., description="the model as referee ranks candidates with a known order")
    prompt: str = Field("{{ prompt }}", description="Jinja2: the question the candidates answer")
    candidates: str = Field("ranked", description="Jinja2 expression giving the candidate list, best first")
    referee: RefereeSpec = Field(default_factory=RefereeSpec, description="how the referee is shown the candidates")
    score: Literal["exact", "top1", "kendall", "pairwise"] = Field(
        "exact", description="how the parsed ranking is scored against the gold order")
    min_candidates: int = Field(2, ge=2, description="a row with fewer candidates is skipped (counted)")
    max_candidates: int = Field(8, ge=2, description="a row with more candidates is skipped (counted)")
    balance_positions: bool = Field(
        True, description="with `referee.shuffle`: the best candidate is shown at position (row number mod N), the "
        "others shuffled, so over any N consecutive rows it is shown at every position once. A plain shuffle of a "
        "few pairs per step often puts the best one second in most of them, and GRPO then rewards the position "
        "(two runs on the bundled model swung to always naming the second response by step 11); "
        "false: a plain seeded shuffle")
    orders_per_row: int = Field(
        1, ge=1, description="training: each row fills this many consecutive places of the stream, the best "
        "candidate one shown position further each time (needs `referee.shuffle` and `balance_positions`). 2 with "
        "two candidates shows every pair in both orders side by side, in one step when the task's prompts in a step "
        "are an even number (the only referee task of a recipe with `grpo.steps_by_role` and an even "
        "`prompts_per_step`): the position parts of the two groups' expected updates cancel and their content parts "
        "add up. Their sampling noise does not cancel, so a referee can still drift to one position. Each row is "
        "used that many times: a pass over the rows takes that many times as many prompts")
    position_balance: float = Field(
        0.0, ge=0.0, description="training only: a judgment whose top pick sits at shown position j gains "
        "weight x max(0, 1/N - f_j), f_j being the share of this step's judgments of the task that picked position "
        "j. With shuffled candidates the best one is equally likely at every position, so this rewards a referee "
        "for leaving a position it overuses; no bonus when picks are balanced, and a parsed pick never scores "
        "below an unparsed one")


@dataclass(frozen=True)
class PreferenceEpisode(Payload):
    """`gold` is the gold ranking over shown positions (best first); `order[i]` is the original index of the
    candidate shown with `labels[i]`."""

    kind = "preference"
    gold: list[int]
    labels: list[str]
    order: list[int]
    prefill: str = ""

    def gold_text(self) -> str:
        """The gold ranking written as the referee should write it (positions shown as their labels)."""
        return "Ranking: " + " > ".join(f"[{self.labels[i]}]" for i in self.gold)


class Preference(ResolvedTask[PreferenceEpisode]):
    kind = "preference"
    role = "referee"
    payload_type = PreferenceEpisode
    spec: PreferenceTask

    def __init__(self, spec: PreferenceTask, templates: Templates, *, allow_code: bool = False):
        super().__init__(spec, templates, allow_code=allow_code)
        if spec.min_candidates > spec.max_candidates:
            raise FieldError("min_candidates", f"min_candidates={spec.min_candidates} is above "
                                               f"max_candidates={spec.max_candidates}")
        if spec.referee.labels == "letters" and spec.max_candidates > MAX_LETTER_LABELS:
            raise FieldError("referee.labels", f"letters label at most {MAX_LETTER_LABELS} candidates; "
                                               f"lower max_candidates ({spec.max_candidates}) or use numbers")
        if MODES[spec.referee.mode].pointwise:
            raise FieldError("referee.mode", "a preference task is scored as a ranking: use listwise (or pairwise "
                                             "for two candidates)")
        for name in _JUDGE_ONLY:
            if name in spec.referee.model_fields_set:
                raise FieldError(f"referee.{name}", "does not apply to a trained preference task: GRPO samples one "
                                                    "judgment per completion, at the player role's sampling")
        if spec.orders_per_row > 1 and not (spec.referee.shuffle and spec.balance_positions):
            raise FieldError("orders_per_row", "shows a row in several orders chosen by balance_positions: it needs "
                                               "referee.shuffle: true and balance_positions: true")
        if self.samples_labels and spec.max_candidates > 2 and spec.score != "top1":
            raise FieldError("score", "with referee.verdict: likelihood a trained judgment is one label drawn from "
                                      "the label probabilities (the candidate ranked first): use score: top1, or "
                                      "max_candidates: 2")
        self.question = templates.inline(spec.prompt, "prompt")
        self.candidates = templates.expression(spec.candidates, "candidates")
        self.referee = RefereeRenderer(spec.referee, templates)

    def ranked_candidates(self, variables: dict[str, Any], row_number: int | None = None) -> list[str]:
        spec = self.spec
        value = render(self.candidates, variables, "candidates", row_number)
        if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
            raise FieldError("candidates", f"must give a list of strings, got {type(value).__name__}",
                             row_number=row_number)
        if not spec.min_candidates <= len(value) <= spec.max_candidates:
            raise FieldError("candidates", f"{len(value)} candidates, expected "
                                           f"{spec.min_candidates}..{spec.max_candidates}", row_number=row_number)
        if len(set(value)) != len(value):
            raise FieldError("candidates", "two candidates are identical, so the gold order is ambiguous",
                             row_number=row_number)
        return list(value)

    def question_text(self, variables: dict[str, Any], row_number: int | None = None) -> str:
        return str(render(self.question, variables, "prompt", row_number))

    @property
    def presentations(self) -> int:
        return self.spec.orders_per_row

    def render(self, variables: dict[str, Any], *, row_number: int | None, seed: int,
               position: int | None, presentation: int = 0) -> tuple[Messages, PreferenceEpisode]:
        ranked = self.ranked_candidates(variables, row_number)
        rng = random.Random(stable_seed(seed, self.name, row_number, position))
        question = self.question_text(variables, row_number)
        if self.spec.balance_positions and self.spec.referee.shuffle and row_number is not None:
            best = (row_number + presentation) % len(ranked)
            view = self.referee.render_order(question, ranked, balanced_order(len(ranked), best, rng))
        else:
            view = self.referee.render(question, ranked, rng)
        # gold ranking over shown positions: where the best original candidate is shown, then the second best, ...
        gold = [view.order.index(i) for i in range(len(ranked))]
        return view.messages, PreferenceEpisode(gold, view.labels, view.order, view.prefill)

    @property
    def samples_labels(self) -> bool:
        """Whether a trained judgment is one label drawn from the label probabilities after the prefill
        (`referee.verdict: likelihood`) rather than free text: the referee steps' vocabulary is the labels."""
        return self.spec.referee.verdict == "likelihood"

    def label_token_ids(self, tokenizer: Any, prompt_text: str, labels: Sequence[str]) -> list[int]:
        """The token each label is right after `prompt_text` (a referee prompt ending with its prefill): what a
        referee step may sample when `samples_labels`. A label that is not one token there is a FieldError."""
        found = single_token_ids(tokenizer, prompt_text, labels)
        if isinstance(found, str):
            raise FieldError("referee.verdict", f"{found}; use labels that are single tokens, a prefill that ends "
                                                "where the verdict starts, or verdict: sample")
        return found

    def read(self, completion: Completion) -> list[int] | None:
        """A completion as a ranking over shown positions; it continues its prompt's prefill, so the verdict is
        read with it, as the mode parses any reply. A sampled label (`samples_labels`) ranks its candidate first and
        the others after it in shown order (only the first position is scored then: top1, or two candidates)."""
        payload = completion.episode.payload
        if self.samples_labels:
            label = completion.text.strip()  # the one token drawn (a label, unless another task's label set)
            if label not in payload.labels:
                return None
            choice = payload.labels.index(label)
            return [choice, *(i for i in range(len(payload.labels)) if i != choice)]
        return self.referee.mode.parse(payload.prefill + completion.text, payload.labels, payload.prefill,
                                       self.spec.referee.scale)

    def score(self, completions: Sequence[Completion], log: LogMetric) -> list[Score]:
        rankings = [self.read(c) for c in completions]
        shares = position_shares(rankings)
        out = []
        for c, ranking in zip(completions, rankings):
            gold = c.episode.payload.gold
            value, _ = combine(score_ranking(ranking, gold, self.spec.score), ranking is not None, c.n_tokens,
                               self.spec.reward)
            if ranking is not None and self.spec.position_balance:  # a bonus only: a parsed pick stays above none
                value += self.spec.position_balance * max(0.0, 1 / len(ranking) - shares[ranking[0]])
            metrics = {"referee/accuracy": score_ranking(ranking, gold, "exact"),
                       "referee/parse_rate": float(ranking is not None)}
            if ranking is not None:  # position bias: how often the candidate shown first is ranked best
                metrics["referee/first_shown_best_rate"] = float(ranking[0] == 0)
            out.append(Score(value, ranking, f"ranking {ranking}, gold {gold}", metrics))
        return out

    def check(self, episode: Episode[PreferenceEpisode]) -> str:
        payload = episode.payload
        self.referee.check_prefill(RefereeView(episode.messages, payload.labels, payload.order, payload.prefill))
        verdict = payload.gold_text()
        parsed = parse_ranking(verdict, payload.labels)
        if parsed is None or score_ranking(parsed, payload.gold, self.spec.score) < 1.0:
            raise FieldError("referee.template", f"the gold ranking {verdict!r} does not parse back to itself",
                             row_number=episode.row)
        return f"{len(payload.labels)} candidates, gold {verdict!r}"


def balanced_order(n: int, best: int, rng: random.Random) -> list[int]:
    """A presentation order (original index per shown position) with the best candidate (index 0) at shown position
    `best` (< n) and the others shuffled around it."""
    others = list(range(1, n))
    rng.shuffle(others)
    others.insert(best, 0)
    return others


def position_shares(rankings: Sequence[list[int] | None]) -> list[float]:
    """The share of the parsed judgments whose top pick is at each shown position (one task's batch)."""
    parsed = [r for r in rankings if r is not None]
    if not parsed:
        return []
    counts = [0] * max(len(r) for r in parsed)
    for r in parsed:
        counts[r[0]] += 1
    return [c / len(parsed) for c in counts]
