"""The referee: rank or score candidate responses with a model, listwise, pairwise or pointwise.

Every judgment of a call is rendered first and sent to the backend in ONE batch, so the self-referee of a training
step costs one batched generation for all open-ended groups, and `urpo-kit judge` batches across rows.

Scores are per candidate in [0, 1], higher is better:
- listwise: the candidate at rank r of N gets (N - r) / (N - 1), averaged over samples and presentation orders;
- pairwise: each candidate's share of won comparisons against every other candidate (an unparsed comparison: 0.5 each);
- pointwise: (score - 1) / 9 for a 1-10 score.
A failed parse contributes nothing; when nothing parsed, every candidate gets 0.5 (no signal) and `ranking` is None.
Each judgment is also reported on its own (`Verdict.shown`, `Verdict.parses`) so that a judgment text can be read
against what the referee was shown, and a bad template or a confused referee can be diagnosed from the output.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence, get_args

from urpo_kit.config.schema import RefereePrompt
from urpo_kit.recast import RefereeRenderer, RefereeView, Templates, stable_seed
from urpo_kit.referee.backends import Backend, SamplingParams
from urpo_kit.rewards import parse_ranking, parse_score, rank_to_rewards

Mode = Literal["listwise", "pairwise", "pointwise"]
Debias = Literal["none", "shuffle", "both_orders"]
MODES: tuple[Mode, ...] = get_args(Mode)
DEBIAS: tuple[Debias, ...] = get_args(Debias)


@dataclass
class JudgeItem:
    """A prompt and the responses to judge. `key` seeds the presentation order reproducibly."""

    prompt: str
    candidates: list[str]
    key: str = ""


@dataclass
class Verdict:
    ranking: list[int] | None          # original candidate indices, best first (None: nothing parsed)
    scores: list[float]                 # per candidate, in [0, 1]
    raw: list[str] = field(default_factory=list)
    parsed: int = 0                     # judgments that parsed
    attempts: int = 0                   # judgments made
    agreement: float | None = None      # both_orders: share of order pairs that gave the same ranking (None: no pair
                                        # with both orders parsed, or not both_orders)
    shown: list[list[int]] = field(default_factory=list)   # per judgment: the candidate shown with each label
    parses: list[list[int] | float | None] = field(default_factory=list)  # per judgment: the ranking it gave over
                                        # original indices, or the 1-10 score (pointwise); None: failed to parse

    @property
    def ok(self) -> bool:
        return self.parsed > 0

    @property
    def status(self) -> Literal["ok", "partial", "failed"]:
        """Parse status of the row: every judgment parsed, some did, or none did."""
        if self.parsed == 0:
            return "failed"
        return "ok" if self.parsed == self.attempts else "partial"


@dataclass
class _Request:
    item: int
    view: RefereeView
    unit: tuple[int, ...]               # the candidates this judgment covers (all, a pair, or one)
    group: int                          # both_orders: requests of one group are the two orders of one sample


class Judge:
    """Turns JudgeItems into Verdicts with one backend call per `judge()`."""

    def __init__(self, backend: Backend, *, mode: Mode = "listwise", debias: Debias = "shuffle", samples: int = 1,
                 sampling: SamplingParams = SamplingParams(), spec: RefereePrompt | None = None,
                 base_dir: Path | None = None, seed: int = 0):
        # checked here: a misspelt mode would otherwise silently judge pointwise
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        if debias not in DEBIAS:
            raise ValueError(f"unknown debias {debias!r}; valid: {', '.join(DEBIAS)}")
        if samples < 1:
            raise ValueError(f"samples must be at least 1, got {samples}")
        self.backend, self.mode, self.debias, self.samples = backend, mode, debias, samples
        self.sampling, self.seed = sampling, seed
        self.renderer = RefereeRenderer(spec or RefereePrompt(), Templates(base_dir), mode=mode)

    def judge(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        """One Verdict per item. Raises ValueError before generating if an item has too few candidates."""
        least = 1 if self.mode == "pointwise" else 2
        for i, item in enumerate(items):
            if len(item.candidates) < least:
                raise ValueError(f"item {i}: {self.mode} judging needs at least {least} candidates, "
                                 f"got {len(item.candidates)}")
        requests = [r for i, item in enumerate(items) for r in self._requests(i, item)]
        replies = self.backend.generate([r.view.messages for r in requests], self.sampling)
        texts = [r.view.prefill + reply for r, reply in zip(requests, replies)]  # the verdict as the model wrote it
        by_item: dict[int, list[tuple[_Request, str]]] = {i: [] for i in range(len(items))}
        for r, t in zip(requests, texts):
            by_item[r.item].append((r, t))
        return [self._verdict(len(item.candidates), by_item[i]) for i, item in enumerate(items)]

    def judgments(self, n: int) -> int:
        """How many generations judging an item of `n` candidates takes (e.g. for a progress bar's total)."""
        return self.samples * sum(len(self._orders(list(range(len(u))))) for u in self._units(n))

    # -------------------------------------------------------------------------------------------- rendering
    def _units(self, n: int) -> list[tuple[int, ...]]:
        """The candidate subsets one judgment covers: all of them, every pair, or each alone."""
        if self.mode == "listwise":
            return [tuple(range(n))]
        if self.mode == "pairwise":
            return list(itertools.combinations(range(n), 2))
        return [(i,) for i in range(n)]

    def _orders(self, order: list[int]) -> list[list[int]]:
        return [order, order[::-1]] if self.debias == "both_orders" and len(order) > 1 else [order]

    def _requests(self, index: int, item: JudgeItem) -> list[_Request]:
        out, group = [], 0
        for sample in range(self.samples):
            for unit in self._units(len(item.candidates)):
                texts = [item.candidates[i] for i in unit]
                order = list(range(len(unit)))
                if self.debias != "none":
                    random.Random(stable_seed(self.seed, item.key, sample, unit)).shuffle(order)
                orders = self._orders(order)
                out += [_Request(index, self.renderer.render_order(item.prompt, texts, o), unit, group) for o in orders]
                group += 1
        return out

    # -------------------------------------------------------------------------------------------- scoring
    def _verdict(self, n: int, judged: list[tuple[_Request, str]]) -> Verdict:
        raw = [t for _, t in judged]
        shown = [[r.unit[j] for j in r.view.order] for r, _ in judged]
        if self.mode == "pointwise":
            points = [parse_score(text, 1, 10) for _, text in judged]
            values: list[list[float]] = [[] for _ in range(n)]
            for (r, _), point in zip(judged, points):
                if point is not None:
                    values[r.unit[0]].append((point - 1) / 9)
            parsed = sum(len(v) for v in values)
            scores = [sum(v) / len(v) if v else 0.5 for v in values]
            return Verdict(_ranking(scores) if parsed else None, scores, raw, parsed, len(judged), None, shown,
                           list(points))

        parses: list[list[int] | None] = []   # rankings over original candidate indices
        for r, text in judged:
            found = parse_ranking(text, r.view.labels)
            parses.append(None if found is None else [r.unit[j] for j in r.view.to_original(found)])
        rankings = [(r, p) for (r, _), p in zip(judged, parses) if p is not None]
        agreement = self._agreement(rankings) if self.debias == "both_orders" else None
        if not rankings:
            return Verdict(None, [0.5] * n, raw, 0, len(judged), agreement, shown, list(parses))
        scores = self._pairwise_scores(n, rankings) if self.mode == "pairwise" else self._listwise_scores(n, rankings)
        return Verdict(_ranking(scores), scores, raw, len(rankings), len(judged), agreement, shown, list(parses))

    @staticmethod
    def _agreement(rankings: list[tuple[_Request, list[int]]]) -> float | None:
        """Share of (sample, unit) groups whose two orders gave the same ranking, over groups where both parsed."""
        by_group: dict[int, list[list[int]]] = {}
        for r, ranking in rankings:
            by_group.setdefault(r.group, []).append(ranking)
        pairs = [g for g in by_group.values() if len(g) == 2]
        return sum(a == b for a, b in pairs) / len(pairs) if pairs else None

    @staticmethod
    def _listwise_scores(n: int, rankings: list[tuple[_Request, list[int]]]) -> list[float]:
        rewards = [rank_to_rewards(ranking, n) for _, ranking in rankings]
        return [sum(r[i] for r in rewards) / len(rewards) for i in range(n)]

    @staticmethod
    def _pairwise_scores(n: int, rankings: list[tuple[_Request, list[int]]]) -> list[float]:
        """Mean over opponents of the share of comparisons won; a pair never parsed counts 0.5 for both."""
        per_pair: dict[tuple[int, ...], list[float]] = {}
        for r, ranking in rankings:
            per_pair.setdefault(r.unit, []).append(1.0 if ranking[0] == r.unit[0] else 0.0)
        scores = [0.0] * n
        for a, b in itertools.combinations(range(n), 2):
            results = per_pair.get((a, b))
            share = sum(results) / len(results) if results else 0.5
            scores[a] += share / (n - 1)
            scores[b] += (1.0 - share) / (n - 1)
        return scores


def _ranking(scores: Sequence[float]) -> list[int]:
    """Candidates by score, best first; ties keep the original order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))
