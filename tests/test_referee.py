"""The referee core: Judge turns crafted judgments into the right rankings and scores; HFBackend batches correctly.

`FakeReferee` (imported by the judge and serve tests) reads the rendered referee prompt and answers like a perfect
referee that prefers responses holding larger numbers, so tests know the right verdict whatever the shuffle.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import pytest

from urpo_kit.config.schema import RefereeSpec
from urpo_kit.referee import HFBackend, Judge, JudgeItem, SamplingParams

_SHOWN = re.compile(r"\[Response ?(\w*)\]\n(.*?)\n\[End of response ?\w*\]", re.S)


def _value(text: str) -> int:
    found = re.search(r"-?\d+", text)
    return int(found.group()) if found else 0


def perfect_reply(prompt: str) -> str:
    """Rank (or score) the shown responses by the number in each, as the built-in templates ask."""
    shown = _SHOWN.findall(prompt)
    if len(shown) == 1 and not shown[0][0]:  # the pointwise template: one unlabelled response
        return f"It is fine.\nScore: {min(max(_value(shown[0][1]), 1), 10)}"
    best_first = sorted(shown, key=lambda s: -_value(s[1]))
    return "Some thoughts.\nRanking: " + " > ".join(f"[{label}]" for label, _ in best_first)


class FakeReferee:
    """A Backend answering each prompt with `reply(user message)`; records the size of every generate call."""

    def __init__(self, reply: Callable[[str], str] = perfect_reply):
        self.reply = reply
        self.calls: list[int] = []

    def generate(self, prompts: Sequence[list[dict[str, str]]], sampling: SamplingParams) -> list[str]:
        self.calls.append(len(prompts))
        return [self.reply(messages[-1]["content"]) for messages in prompts]


def scripted(*texts: str) -> FakeReferee:
    """Answers the i-th judgment of a call with texts[i] (cycling)."""
    state = {"i": 0}

    def reply(_: str) -> str:
        state["i"] += 1
        return texts[(state["i"] - 1) % len(texts)]

    return FakeReferee(reply)


ITEM = JudgeItem("Pick the largest.", ["3", "9", "5", "1"], key="row")


@pytest.mark.parametrize("mode", ["listwise", "pairwise", "pointwise"])
@pytest.mark.parametrize("debias", ["none", "shuffle", "both_orders"])
def test_a_perfect_referee_gives_the_right_ranking_in_every_mode(mode, debias):
    backend = FakeReferee()
    judge = Judge(backend, RefereeSpec(mode=mode, debias=debias, samples=2))
    [verdict] = judge.judge([ITEM])
    assert verdict.ranking == [1, 2, 0, 3]
    assert verdict.status == "ok" and verdict.parsed == verdict.attempts == judge.judgments(4)
    assert backend.calls == [judge.judgments(4)]  # one batched generation
    assert verdict.scores[1] == max(verdict.scores) and verdict.scores[3] == min(verdict.scores)
    assert len(verdict.raw) == len(verdict.shown) == len(verdict.parses) == verdict.attempts
    if debias == "both_orders" and mode != "pointwise":
        assert verdict.agreement == 1.0
    else:
        assert verdict.agreement is None


def test_judgments_counts_generations():
    assert Judge(FakeReferee(), RefereeSpec(mode="listwise", debias="both_orders", samples=3)).judgments(4) == 6
    assert Judge(FakeReferee(), RefereeSpec(mode="pairwise", debias="shuffle")).judgments(4) == 6
    assert Judge(FakeReferee(), RefereeSpec(mode="pairwise", debias="both_orders")).judgments(3) == 6
    assert Judge(FakeReferee(), RefereeSpec(mode="pointwise", debias="both_orders", samples=2)).judgments(4) == 8


def test_shown_labels_map_back_to_original_candidates():
    # no shuffle: label [k] is candidate k-1, so "[2] > [3] > [1]" ranks candidates 1, 2, 0
    [verdict] = Judge(scripted("First I compare. Ranking: [2] > [3] > [1]"), RefereeSpec(debias="none")).judge(
        [JudgeItem("q", ["a", "b", "c"])])
    assert verdict.ranking == [1, 2, 0] and verdict.parses == [[1, 2, 0]] and verdict.shown == [[0, 1, 2]]
    assert verdict.scores == [0.0, 1.0, 0.5]


def test_a_shuffled_order_is_undone():
    [verdict] = Judge(scripted("Ranking: [1] > [2] > [3]"), RefereeSpec(debias="shuffle"), seed=3).judge(
        [JudgeItem("q", ["a", "b", "c"], key="k")])
    assert verdict.ranking == verdict.shown[0]  # "[1] > [2] > [3]" ranks whatever was shown in that order


@pytest.mark.parametrize("text", ["", "I cannot decide.", "Ranking: [4] > [1] > [2]", "Ranking: [1] > [1] > [2]",
                                  "Ranking: [1]", "[[[[", "Ranking:" + " > ".join(["[1]"] * 5000)])
def test_malformed_judgments_are_parse_failures_not_exceptions(text):
    [verdict] = Judge(scripted(text), RefereeSpec(mode="listwise")).judge([JudgeItem("q", ["a", "b", "c"])])
    assert verdict.status == "failed" and verdict.ranking is None and verdict.scores == [0.5] * 3
    assert verdict.parses == [None] and verdict.raw == [text]


def test_pointwise_parse_failures_and_out_of_scale_scores():
    [verdict] = Judge(scripted("Score: 8", "Score: 12", "no score"), RefereeSpec(mode="pointwise", debias="none")).judge(
        [JudgeItem("q", ["a", "b", "c"])])
    assert verdict.parses == [8.0, None, None] and verdict.status == "partial"
    assert verdict.scores == [pytest.approx(7 / 9), 0.5, 0.5] and verdict.ranking == [0, 1, 2]


def test_some_samples_failing_is_partial_and_uses_the_rest():
    [verdict] = Judge(scripted("Ranking: [2] > [1]", "garbage"), RefereeSpec(debias="none", samples=2)).judge(
        [JudgeItem("q", ["a", "b"])])
    assert verdict.status == "partial" and (verdict.parsed, verdict.attempts) == (1, 2)
    assert verdict.ranking == [1, 0] and verdict.scores == [0.0, 1.0]


def test_both_orders_disagreement_and_missing_pairs():
    # the same shown label wins in both orders: a position-biased referee, agreement 0 and a tie
    [verdict] = Judge(scripted("Ranking: [1] > [2]"), RefereeSpec(mode="pairwise", debias="both_orders")).judge(
        [JudgeItem("q", ["a", "b"], key="k")])
    assert verdict.agreement == 0.0 and verdict.scores == [0.5, 0.5]
    # one order unparsed: no pair to compare, so agreement is unknown rather than 0
    [verdict] = Judge(scripted("Ranking: [1] > [2]", "??"), RefereeSpec(mode="pairwise", debias="both_orders")).judge(
        [JudgeItem("q", ["a", "b"], key="k")])
    assert verdict.agreement is None and verdict.status == "partial"


def test_items_are_checked_before_generating():
    backend = FakeReferee()
    with pytest.raises(ValueError, match="at least 2 candidates"):
        Judge(backend).judge([JudgeItem("q", ["a", "b"]), JudgeItem("q", ["only one"])])
    assert backend.calls == []
    [verdict] = Judge(backend, RefereeSpec(mode="pointwise")).judge([JudgeItem("q", ["7"])])
    assert verdict.parses == [7.0]
    with pytest.raises(ValueError, match="mode"):  # the spec refuses it, before any Judge
        Judge(backend, RefereeSpec(mode="listwsie"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="samples"):
        Judge(backend, RefereeSpec(samples=0))


def test_the_presentation_order_depends_on_the_key_not_on_the_batch():
    judge = Judge(FakeReferee(), RefereeSpec(debias="shuffle"))
    alone = judge.judge([JudgeItem("q", list("abcdef"), key="x")])[0].shown
    batched = judge.judge([JudgeItem("q", list("abcdef"), key="y"), JudgeItem("q", list("abcdef"), key="x")])
    assert batched[1].shown == alone and batched[0].shown != alone


def test_a_prefill_is_sent_as_the_start_of_the_reply_and_parsed_with_it():
    from urpo_kit.config.schema import RefereeSpec

    sent: list[list[dict[str, str]]] = []

    class Recorder(FakeReferee):
        def generate(self, prompts, sampling):
            sent.extend(prompts)
            return [" 8" if i % 2 == 0 else "3 because it is short" for i in range(len(prompts))]

    judge = Judge(Recorder(), RefereeSpec(mode="pointwise", debias="none", prefill="Score:"))
    [verdict] = judge.judge([JudgeItem("q", ["a", "b"])])
    assert all(m[-1] == {"role": "assistant", "content": "Score:"} for m in sent)
    assert verdict.raw == ["Score: 8", "Score:3 because it is short"]
    assert verdict.parses == [8.0, 3.0] and verdict.ranking == [0, 1]


def test_chat_prompt_continues_a_final_assistant_message():
    from urpo_kit.models import tiny_tokenizer
    from urpo_kit.referee.backends import chat_prompt

    tokenizer = tiny_tokenizer()
    user = [{"role": "user", "content": "Rate it."}]
    open_turn = chat_prompt(tokenizer, user)
    continued = chat_prompt(tokenizer, user + [{"role": "assistant", "content": "Score:"}])
    assert continued.startswith(open_turn) and continued.endswith("Score:")


def test_hf_backend_batches_with_left_padding_like_one_by_one():
    from urpo_kit.models import tiny_model

    model, tokenizer = tiny_model()
    prompts = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "a much longer message " * 4}],
               [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x"}]]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
    seen: list[int] = []
    batched = HFBackend(model, tokenizer, batch_size=3, progress=seen.append).generate(prompts, greedy)
    one_by_one = HFBackend(model, tokenizer, batch_size=1).generate(prompts, greedy)
    assert batched == one_by_one and all(batched) and seen == [3]
    assert model.training is False
