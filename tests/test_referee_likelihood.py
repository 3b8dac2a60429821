"""Likelihood verdicts through the real HFBackend on a stub model whose next-token logits are forced.

`ForcedLM` reads the prompt it is given (the tiny character-level tokenizer makes every digit and letter one token)
and sets the logits of the label (or score) tokens from what the referee was shown, so each test knows the exact
probabilities the Judge must report.
"""

from __future__ import annotations

import math
import re
from types import SimpleNamespace
from typing import Callable

import pytest
import torch

from urpo_kit.config.schema import RefereeSpec
from urpo_kit.errors import UrpoError
from urpo_kit.models import tiny_tokenizer
from urpo_kit.referee import HFBackend, Judge, JudgeItem

_SHOWN = re.compile(r"\[Response ?(\w*)\]\n(.*?)\n\[End of response ?\w*\]", re.S)


class ForcedLM(torch.nn.Module):
    """A causal LM stand-in: `logits(shown)` maps the (label, text) pairs of the prompt to {token: logit};
    every other token gets -30 (near-zero probability, as for a model that does follow the prefill)."""

    def __init__(self, tokenizer, logits: Callable[[list[tuple[str, str]]], dict[str, float]]):
        super().__init__()
        self.tokenizer, self.logits_of = tokenizer, logits
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[str] = []

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    def forward(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=0, use_cache=None):
        out = torch.full((input_ids.shape[0], 1, len(self.tokenizer)), -30.0)
        for b in range(input_ids.shape[0]):
            text = self.tokenizer.decode(input_ids[b][attention_mask[b].bool()])
            self.seen.append(text)
            for token, logit in self.logits_of(_SHOWN.findall(text)).items():
                out[b, 0, self.tokenizer.convert_tokens_to_ids(token)] = logit
        return SimpleNamespace(logits=out)


def by_value(bias: float = 0.0) -> Callable[[list[tuple[str, str]]], dict[str, float]]:
    """Label logit = log(number in the response) (+ `bias` for the label shown first: a pure position bias)."""
    return lambda shown: {label: math.log(float(text)) + (bias if i == 0 else 0.0)
                          for i, (label, text) in enumerate(shown)}


def judge(logits, *, mode="pairwise", debias="none", **spec) -> Judge:
    tok = tiny_tokenizer()
    backend = HFBackend(ForcedLM(tok, logits), tok, batch_size=3)
    return Judge(backend, RefereeSpec(mode=mode, debias=debias, verdict="likelihood", **spec))


def test_known_label_probabilities_give_the_known_verdict():
    j = judge(by_value())
    [v] = j.judge([JudgeItem("Pick the larger.", ["3", "9"])])
    assert v.scores == pytest.approx([0.25, 0.75])  # 3 / (3 + 9) and 9 / (3 + 9)
    assert v.ranking == [1, 0]
    assert v.probabilities == [pytest.approx([0.25, 0.75])]
    assert v.status == "ok" and v.raw == []
    # the prompt ended with the default verdict start, which the label continues
    assert j.backend.model.seen[0].endswith("Ranking: [")


def test_swapping_the_order_mirrors_the_probabilities():
    j = judge(by_value(), mode="listwise")
    [a, b] = j.judge([JudgeItem("q", ["2", "6"]), JudgeItem("q", ["6", "2"])])
    assert a.scores == pytest.approx([0.25, 0.75])
    assert b.scores == pytest.approx(a.scores[::-1])
    assert b.probabilities[0] == pytest.approx(a.probabilities[0][::-1])  # per shown label, mirrored


def test_both_orders_averaging_cancels_a_pure_position_bias():
    only_position = lambda shown: {label: (2.0 if i == 0 else 0.0) for i, (label, _) in enumerate(shown)}
    [one] = judge(only_position).judge([JudgeItem("q", ["4", "5"])])
    assert one.scores[0] == pytest.approx(1 / (1 + math.exp(-2)))  # one order: the first shown wins
    [both] = judge(only_position, debias="both_orders").judge([JudgeItem("q", ["4", "5"])])
    assert both.scores == pytest.approx([0.5, 0.5])
    # a content signal under a position bias that flips every single-order verdict still wins on average
    [v] = judge(by_value(bias=2.0), debias="both_orders").judge([JudgeItem("q", ["4", "5"])])
    assert v.ranking == [1, 0] and len(v.probabilities) == 2
    assert all(p[0] > 0.5 for p in v.probabilities)  # each order alone names its first label
    assert v.agreement == 0.0


def test_pointwise_expected_score_matches_a_hand_computation():
    j = judge(lambda shown: {"3": math.log(0.2), "7": math.log(0.8)}, mode="pointwise", scale=(1, 9),
              prefill="Score: ")  # the character-level tokenizer makes " 7" two tokens: the space goes first
    [v] = j.judge([JudgeItem("q", ["anything"])])
    expected = 0.2 * 3 + 0.8 * 7  # 6.2 on the 1-9 scale
    assert v.parses == [pytest.approx(expected)]
    assert v.scores == [pytest.approx((expected - 1) / 8)]
    assert len(v.probabilities[0]) == 9


def test_listwise_scores_are_first_place_probabilities_and_sum_to_one():
    [v] = judge(by_value(), mode="listwise").judge([JudgeItem("q", ["1", "2", "5"])])
    assert v.scores == pytest.approx([1 / 8, 2 / 8, 5 / 8])
    assert v.ranking == [2, 1, 0]


def test_a_multi_token_score_or_label_is_refused_at_start_up():
    j = judge(by_value(), mode="pointwise", prefill="Score: ")  # scale 1-10: `10` is two characters, two tokens
    with pytest.raises(UrpoError, match=r"score\.j2.*`10`.*tokenizer") as e:
        j.check(1)
    assert "verdict: sample" in str(e.value)
    with pytest.raises(UrpoError, match=r"rank\.j2.*`10`"):
        judge(by_value(), mode="listwise").check(10)  # labels 1..10
    assert judge(by_value(), mode="listwise").check(9) == [tiny_tokenizer().convert_tokens_to_ids(str(i))
                                                            for i in range(1, 10)]


def test_a_remembering_backend_reads_likelihoods_from_its_last_generation_without_another_pass():
    from urpo_kit.models import tiny_model
    from urpo_kit.referee import SamplingParams

    model, tok = tiny_model()
    prompts = [[{"role": "user", "content": f"Is {n} big?"}, {"role": "assistant", "content": "Ranking: ["}]
               for n in (1, 22, 333)]
    ids = [[tok.convert_tokens_to_ids("1"), tok.convert_tokens_to_ids("2")]] * 3
    fresh = HFBackend(model, tok, batch_size=2).next_token_logprobs(prompts, ids)
    remembering = HFBackend(model, tok, batch_size=2, remember_next_token=True)
    remembering.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=2))
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        again = remembering.next_token_logprobs(prompts, ids)
    finally:
        handle.remove()
    assert calls == []  # no forward pass: read from the generation's first step
    assert again == [pytest.approx(f, abs=1e-4) for f in fresh]
