"""The referee: rank or score candidate responses with a model, listwise, pairwise or pointwise.

Every judgment of a call is rendered first and sent to the backend in ONE batch, so the self-referee of a training
step costs one batched call for all open-ended groups, and `urpo-kit judge` batches across rows.

Two ways to reach a verdict (`RefereeSpec.verdict`):
- `sample`: generate the judgment text and parse it (a failed parse contributes nothing);
- `likelihood`: one forward pass; the prompt ends with the prefill (the reply start that names the verdict, e.g.
  `Ranking: [`), and the verdict is read from the next-token probabilities of the labels (or of the scores),
  renormalised over them. No generation, no parse failure. Each label or score must be one token after the prefill,
  checked before the first judgment (`Judge.check`), with an error naming the template and the tokenizer.

Scores are per candidate, higher is better:
- listwise, sample: the candidate at rank r of N gets (N - r) / (N - 1), averaged over samples and orders;
  listwise, likelihood: P(candidate's label is ranked first), averaged over samples and orders (scores sum to 1).
  The full ranking orders candidates by that probability: one forward pass. Successive conditioning (append the
  first label and read the second, ...) would give exact Plackett-Luce-style ranks at N - 1 passes; not done.
- pairwise: each candidate's mean over opponents of its win share: sampled wins (an unparsed comparison: 0.5
  each), or, with likelihood, the probability of its label in that comparison (scores sum to N / 2).
- pointwise: (score - low) / (high - low) on the `scale`; with likelihood the expected score over the score tokens
  (G-Eval's probability-weighted score).
Debiasing averages in probability space under likelihood: `both_orders` averages the two orders' probabilities,
`shuffle` and K `samples` average over presentation orders.
When nothing parsed (sample only), every candidate gets 0.5 (no signal) and `ranking` is None. Each judgment is
also reported on its own (`Verdict.shown`, `Verdict.parses`, and under likelihood `Verdict.probabilities`) so that
a judgment can be read against what the referee was shown.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from urpo_kit.config.schema import RefereeSpec
from urpo_kit.errors import UrpoError
from urpo_kit.recast import Templates, stable_seed
from urpo_kit.referee.modes import MODES
from urpo_kit.referee.view import RefereeRenderer, RefereeView
from urpo_kit.referee.backends import Backend, SamplingParams, chat_prompt, single_token_ids
from urpo_kit.rewards import rank_to_rewards



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
                                        # original indices, or the score (pointwise; likelihood: the expected
                                        # score); None: failed to parse
    probabilities: list[list[float]] = field(default_factory=list)  # likelihood: per judgment, the probability
                                        # of each shown label (in `shown` order), or of each score low..high

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

    def __init__(self, backend: Backend, spec: RefereeSpec | None = None, *, sampling: SamplingParams = SamplingParams(),
                 renderer: RefereeRenderer | None = None, base_dir: Path | None = None, seed: int = 0):
        """`spec` says everything about the judgment but its sampling, which the caller resolves (role defaults
        merged with `spec.sampling`). `renderer` is the spec's compiled renderer when the caller has one (a task
        compiled it at load time); otherwise the template is looked up from `base_dir`."""
        self.spec = spec or RefereeSpec()
        self.backend, self.sampling, self.seed = backend, sampling, seed
        self.mode, self.debias, self.samples, self.verdict = (MODES[self.spec.mode], self.spec.debias,
                                                              self.spec.samples, self.spec.verdict)
        self.renderer = renderer or RefereeRenderer(self.spec, Templates(base_dir))
        self._token_ids: dict[int, list[int]] = {}
        self._problems: dict[int, str | None] = {}

    def judge(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        """One Verdict per item. Raises ValueError before any model call if an item has too few candidates."""
        least = self.mode.least
        for i, item in enumerate(items):
            if len(item.candidates) < least:
                raise ValueError(f"item {i}: {self.mode} judging needs at least {least} candidates, "
                                 f"got {len(item.candidates)}")
        requests = [r for i, item in enumerate(items) for r in self._requests(i, item)]
        if self.verdict == "likelihood":
            ids = [self.check(len(r.view.labels)) for r in requests]
            logprobs = self.backend.next_token_logprobs([r.view.messages for r in requests], ids)  # type: ignore[attr-defined]
            outcomes: list[Any] = [_renormalise(lp) for lp in logprobs]
        else:
            replies = self.backend.generate([r.view.messages for r in requests], self.sampling)
            outcomes = [r.view.prefill + reply for r, reply in zip(requests, replies)]  # the verdict as written
        by_item: dict[int, list[tuple[_Request, Any]]] = {i: [] for i in range(len(items))}
        for r, outcome in zip(requests, outcomes):
            by_item[r.item].append((r, outcome))
        score = self._likelihood_verdict if self.verdict == "likelihood" else self._verdict
        return [score(len(item.candidates), by_item[i]) for i, item in enumerate(items)]

    def check(self, n: int) -> list[int]:
        """The token ids a likelihood verdict reads for a judgment showing `n` candidates (one per label, or per
        score for pointwise), checked once per `n`: a label or score that is not one token after the prefill is a
        UrpoError naming the template and the tokenizer. Call it at start-up with the largest `n` expected."""
        n = 1 if self.mode.pointwise else n
        if n not in self._token_ids:
            if self.verdict != "likelihood":
                raise ValueError("only verdict: likelihood reads token probabilities")
            tokenizer = getattr(self.backend, "tokenizer", None)
            if tokenizer is None or not hasattr(self.backend, "next_token_logprobs"):
                raise UrpoError(f"verdict: likelihood needs a backend that reads next-token probabilities; "
                                f"{type(self.backend).__name__} does not (use the HF backend, or verdict: sample)")
            probe = self.renderer.render_order("?", ["?"] * n, list(range(n)))
            found = single_token_ids(tokenizer, chat_prompt(tokenizer, probe.messages), self._values(probe))
            if isinstance(found, str):
                hint = "a scale whose scores are single tokens (e.g. scale: [1, 9])" if self.mode.pointwise \
                    else "labels that are single tokens (at most 9 numbers, or letters)"
                raise UrpoError(f"{self.template_file}: {found}; use {hint}, a prefill that ends where the "
                                "verdict starts, or verdict: sample")
            self._token_ids[n] = found
        return self._token_ids[n]

    def problem(self, n: int) -> str | None:
        """Why an item of `n` candidates cannot be judged here (its labels run out, or one is not a single token for
        a likelihood verdict), or None; once per `n`. Callers refuse such an item alone instead of failing the
        batch it would land in."""
        if n not in self._problems:
            try:
                shown = {len(r.view.labels) for r in self._requests(0, JudgeItem("?", ["?"] * n, "probe"))}
                if self.verdict == "likelihood":
                    for k in shown:
                        self.check(k)
                self._problems[n] = None
            except UrpoError as e:
                self._problems[n] = str(e)
        return self._problems[n]

    @property
    def template_file(self) -> str:
        return str(getattr(self.renderer.template, "filename", "") or "referee template")

    def _values(self, view: RefereeView) -> list[str]:
        """What a likelihood verdict reads: the shown labels, or the scores of the scale (pointwise)."""
        if self.mode.pointwise:
            low, high = self.spec.scale
            return [str(v) for v in range(low, high + 1)]
        return list(view.labels)

    def judgments(self, n: int) -> int:
        """How many generations judging an item of `n` candidates takes (e.g. for a progress bar's total)."""
        return self.samples * sum(len(self._orders(list(range(len(u))))) for u in self.mode.units(n))

    def prompt_tokens(self, prompt: int, responses: Sequence[int]) -> int:
        """The prompt tokens all judgments of an item read, from the token counts of its prompt and responses (the
        template's own text aside): the work an item causes, since pairwise reads every pair and both_orders and
        samples repeat judgments."""
        return self.samples * sum(len(self._orders(list(unit))) * (prompt + sum(responses[i] for i in unit))
                                  for unit in self.mode.units(len(responses)))

    # -------------------------------------------------------------------------------------------- rendering
    def _orders(self, order: list[int]) -> list[list[int]]:
        return [order, order[::-1]] if self.debias == "both_orders" and len(order) > 1 else [order]

    def _requests(self, index: int, item: JudgeItem) -> list[_Request]:
        out, group = [], 0
        for sample in range(self.samples):
            for unit in self.mode.units(len(item.candidates)):
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
        if self.mode.pointwise:
            low, high = self.spec.scale
            points = [self.mode.parse(text, r.view.labels, r.view.prefill, (low, high)) for r, text in judged]
            values: list[list[float]] = [[] for _ in range(n)]
            for (r, _), point in zip(judged, points):
                if point is not None:
                    values[r.unit[0]].append((point - low) / (high - low))
            parsed = sum(len(v) for v in values)
            scores = [sum(v) / len(v) if v else 0.5 for v in values]
            return Verdict(_ranking(scores) if parsed else None, scores, raw, parsed, len(judged), None, shown,
                           list(points))

        parses: list[list[int] | None] = []   # rankings over original candidate indices
        for r, text in judged:
            found = self.mode.parse(text, r.view.labels, r.view.prefill, self.spec.scale)
            parses.append(None if found is None else [r.unit[j] for j in r.view.to_original(found)])
        rankings = [(r, p) for (r, _), p in zip(judged, parses) if p is not None]
        agreement = self._agreement(rankings) if self.debias == "both_orders" else None
        if not rankings:
            return Verdict(None, [0.5] * n, raw, 0, len(judged), agreement, shown, list(parses))
        if self.mode.name == "pairwise":
            scores = _pairwise_scores(n, [(r.unit, float(p[0] == r.unit[0])) for r, p in rankings])
        else:
            rewards = [rank_to_rewards(p, n) for _, p in rankings]
            scores = [sum(r[i] for r in rewards) / len(rewards) for i in range(n)]
        return Verdict(_ranking(scores), scores, raw, len(rankings), len(judged), agreement, shown, list(parses))

    def _likelihood_verdict(self, n: int, judged: list[tuple[_Request, list[float]]]) -> Verdict:
        """Probabilities averaged over judgments, per candidate (see the module docstring for what they mean)."""
        shown = [[r.unit[j] for j in r.view.order] for r, _ in judged]
        probabilities = [p for _, p in judged]
        if self.mode.pointwise:
            low, high = self.spec.scale
            expected = [sum((low + k) * q for k, q in enumerate(p)) for p in probabilities]
            values: list[list[float]] = [[] for _ in range(n)]
            for (r, _), e in zip(judged, expected):
                values[r.unit[0]].append((e - low) / (high - low))
            scores = [sum(v) / len(v) for v in values]
            return Verdict(_ranking(scores), scores, [], len(judged), len(judged), None, shown, list(expected),
                           probabilities)
        # per judgment: the probability of each original candidate of its unit, and the ranking they imply
        by_candidate = [dict(zip(s, p)) for s, p in zip(shown, probabilities)]
        parses: list[list[int] | float | None] = [sorted(c, key=lambda i: (-c[i], i)) for c in by_candidate]
        if self.mode.name == "pairwise":
            scores = _pairwise_scores(n, [(r.unit, c[r.unit[0]]) for (r, _), c in zip(judged, by_candidate)])
        else:
            scores = [sum(c[i] for c in by_candidate) / len(by_candidate) for i in range(n)]
        agreement = None
        if self.debias == "both_orders":
            agreement = self._agreement([(r, p) for (r, _), p in zip(judged, parses)])  # type: ignore[misc]
        return Verdict(_ranking(scores), scores, [], len(judged), len(judged), agreement, shown, parses,
                       probabilities)

    @staticmethod
    def _agreement(rankings: list[tuple[_Request, list[int]]]) -> float | None:
        """Share of (sample, unit) groups whose two orders gave the same ranking, over groups where both parsed."""
        by_group: dict[int, list[list[int]]] = {}
        for r, ranking in rankings:
            by_group.setdefault(r.group, []).append(ranking)
        pairs = [g for g in by_group.values() if len(g) == 2]
        return sum(a == b for a, b in pairs) / len(pairs) if pairs else None


def _pairwise_scores(n: int, results: list[tuple[tuple[int, ...], float]]) -> list[float]:
    """Mean over opponents of the share of comparisons won: `results` holds (pair, share won by the pair's first
    candidate) per judgment, a sampled 1/0 or a probability; a pair never judged counts 0.5 for both."""
    per_pair: dict[tuple[int, ...], list[float]] = {}
    for unit, share in results:
        per_pair.setdefault(unit, []).append(share)
    scores = [0.0] * n
    for a, b in itertools.combinations(range(n), 2):
        shares = per_pair.get((a, b))
        share = sum(shares) / len(shares) if shares else 0.5
        scores[a] += share / (n - 1)
        scores[b] += (1.0 - share) / (n - 1)
    return scores


def _renormalise(logprobs: Sequence[float]) -> list[float]:
    """Probabilities over the values read (labels or scores), summing to 1: a softmax of their log-probabilities."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


def _ranking(scores: Sequence[float]) -> list[int]:
    """Candidates by score, best first; ties keep the original order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))
