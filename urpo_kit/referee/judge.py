"""The referee: rank or score candidate responses with a model, listwise, pairwise or pointwise.

Every judgment of a call is rendered first and sent to the backend in ONE batch, so the self-referee of a training
step costs one batched generation for all open-ended groups, and `urpo-kit judge` batches across rows.

Scores are per candidate in [0, 1], higher is better:
- listwise: the candidate at rank r of N gets (N - r) / (N - 1), averaged over samples and presentation orders;
- pairwise: each candidate's share of won comparisons against every other candidate (an unparsed comparison: 0.5 each);
- pointwise: (score - 1) / 9 for a 1-10 score.
A failed parse contributes nothing; when nothing parsed, every candidate gets 0.5 (no signal) and `ranking` is None.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from urpo_kit.config.schema import RefereePrompt
from urpo_kit.recast import RefereeRenderer, RefereeView, Templates, stable_seed
from urpo_kit.referee.backends import Backend, SamplingParams
from urpo_kit.rewards import parse_ranking, parse_score, rank_to_rewards

Mode = Literal["listwise", "pairwise", "pointwise"]
Debias = Literal["none", "shuffle", "both_orders"]


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
    agreement: float | None = None      # both_orders: share of order pairs that gave the same ranking

    @property
    def ok(self) -> bool:
        return self.parsed > 0


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
        self.backend, self.mode, self.debias, self.samples = backend, mode, debias, samples
        self.sampling, self.seed = sampling, seed
        self.renderer = RefereeRenderer(spec or RefereePrompt(), Templates(base_dir), mode=mode)

    def judge(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        requests = [r for i, item in enumerate(items) for r in self._requests(i, item)]
        texts = self.backend.generate([r.view.messages for r in requests], self.sampling)
        by_item: dict[int, list[tuple[_Request, str]]] = {i: [] for i in range(len(items))}
        for r, t in zip(requests, texts):
            by_item[r.item].append((r, t))
        return [self._verdict(len(item.candidates), by_item[i]) for i, item in enumerate(items)]

    # -------------------------------------------------------------------------------------------- rendering
    def _requests(self, index: int, item: JudgeItem) -> list[_Request]:
        n = len(item.candidates)
        if self.mode == "listwise":
            units = [tuple(range(n))]
        elif self.mode == "pairwise":
            units = list(itertools.combinations(range(n), 2))
        else:
            units = [(i,) for i in range(n)]
        out, group = [], 0
        for sample in range(self.samples):
            for unit in units:
                texts = [item.candidates[i] for i in unit]
                order = list(range(len(unit)))
                if self.debias != "none":
                    random.Random(stable_seed(self.seed, item.key, sample, unit)).shuffle(order)
                orders = [order, order[::-1]] if self.debias == "both_orders" and len(unit) > 1 else [order]
                out += [_Request(index, self.renderer.render_order(item.prompt, texts, o), unit, group) for o in orders]
                group += 1
        return out

    # -------------------------------------------------------------------------------------------- scoring
    def _verdict(self, n: int, judged: list[tuple[_Request, str]]) -> Verdict:
        raw = [t for _, t in judged]
        if self.mode == "pointwise":
            values: list[list[float]] = [[] for _ in range(n)]
            for r, text in judged:
                if (score := parse_score(text, 1, 10)) is not None:
                    values[r.unit[0]].append((score - 1) / 9)
            parsed = sum(len(v) for v in values)
            scores = [sum(v) / len(v) if v else 0.5 for v in values]
            return Verdict(_ranking(scores) if parsed else None, scores, raw, parsed, len(judged))

        rankings: list[tuple[_Request, list[int]]] = []   # rankings over original candidate indices
        for r, text in judged:
            if (shown := parse_ranking(text, r.view.labels)) is not None:
                rankings.append((r, [r.unit[j] for j in r.view.to_original(shown)]))
        if not rankings:
            return Verdict(None, [0.5] * n, raw, 0, len(judged), 0.0 if self.debias == "both_orders" else None)
        scores = self._pairwise_scores(n, rankings) if self.mode == "pairwise" else self._listwise_scores(n, rankings)
        agreement = None
        if self.debias == "both_orders":
            by_group: dict[int, list[list[int]]] = {}
            for r, ranking in rankings:
                by_group.setdefault(r.group, []).append(ranking)
            pairs = [g for g in by_group.values() if len(g) == 2]
            agreement = sum(a == b for a, b in pairs) / len(pairs) if pairs else 0.0
        return Verdict(_ranking(scores), scores, raw, len(rankings), len(judged), agreement)

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
