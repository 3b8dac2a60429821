"""Training reward functions on crafted completions, the self-referee with a fake backend, the batch layout rules.

No model: the reward functions are called the way TRL 1.16 calls them (prompts, completions as chat messages,
completion_ids, the dataset's extra columns, log_metric), on episodes rendered from the shipped offline tasks.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import pytest
from test_referee import FakeReferee, scripted

from urpo_kit.compiler import prepare_task
from urpo_kit.config.schema import Grpo, Recipe, TaskRef
from urpo_kit.errors import ConfigError, FieldError
from urpo_kit.kinds import Episode
from urpo_kit.models import tiny_tokenizer
from urpo_kit.referee import SamplingParams
from urpo_kit.train.layout import LayoutError, batch_layout
from urpo_kit.rewards import spearman
from urpo_kit.train.metrics import curves
from urpo_kit.train.rewards import KindReward, StepObserver, reward_functions
from urpo_kit.train.self_referee import PING, SelfReferee, StepBackend
from urpo_kit.train.trainer import trl_record

TOKENIZER = tiny_tokenizer()

TASKS = Path(__file__).resolve().parents[1] / "tasks"


def episodes(task: str, n: int, overrides: Sequence[str] = ()) -> tuple[Any, list[Episode]]:
    prepared = prepare_task(TASKS / task, overrides, limit=n)
    eps = [prepared.task.episode(row, row_number=num, position=i)
           for i, (row, num) in enumerate(zip(prepared.rows.rows, prepared.rows.row_numbers))]
    return prepared.task, eps


def trl_batch(groups: list[tuple[Episode, list[str]]], position_offset: int = 0) -> dict[str, Any]:
    """What TRL passes a reward function: each prompt's G completions next to each other."""
    out: dict[str, list] = defaultdict(list)
    for ep, completions in groups:
        record = trl_record(ep, TOKENIZER)
        for text in completions:
            out["prompts"].append(record["prompt"])
            out["completions"].append(text)
            out["completion_ids"].append(list(range(len(text.split()))))
            for key in ("task", "kind", "episode", "messages"):
                out[key].append(record[key])
    return dict(out)


class Metrics:
    """Collects `log_metric` calls the way TRL averages them (mean of every value logged under a name)."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = defaultdict(list)

    def __call__(self, name: str, value: float) -> None:
        self.values[name].append(value)

    def mean(self, name: str) -> float:
        return statistics.fmean(self.values[name])


def reward(kind: str, *tasks: Any) -> KindReward:
    """The reward function of one kind over the given resolved tasks (those of that kind)."""
    return KindReward(kind, [t for t in tasks if t.kind == kind])


def recipe_for(*task_files: str) -> Recipe:
    return Recipe(tasks=[TaskRef(task=TASKS / f) for f in task_files])


# --------------------------------------------------------------------------------------------- verifiable
def test_verifiable_reward_on_crafted_completions():
    spec, [ep] = episodes("arithmetic.yaml", 1)
    gold = ep.payload.gold
    completions = [f"So \\boxed{{{gold}}}.", f"\\boxed{{{int(gold) + 1}}}", f"the answer is {gold}", ""]
    metrics = Metrics()
    fn = reward("verifiable", spec)
    rewards = fn(**trl_batch([(ep, completions)]), log_metric=metrics)
    # correct 1.0 + format 0.1; a boxed wrong answer earns the format term only; no box earns nothing
    assert rewards == pytest.approx([1.1, 0.1, 0.0, 0.0])
    assert fn.__name__ == "verifiable"
    assert metrics.mean("arithmetic/player/accuracy") == 0.25
    assert metrics.mean("arithmetic/player/answer_rate") == 0.5
    assert metrics.mean("arithmetic/player/reward_mean") == pytest.approx(0.3)
    assert metrics.values["arithmetic/player/zero_var_frac"] == [0.0]


def test_each_reward_function_returns_none_for_other_kinds():
    arith, [a] = episodes("arithmetic.yaml", 1)
    pairs, [p] = episodes("pairs-synthetic.yaml", 1)
    batch = trl_batch([(a, ["\\boxed{1}"] * 2), (p, ["Ranking: [1] > [2]"] * 2)])
    assert reward("verifiable", arith, pairs)(**batch)[2:] == [None, None]
    assert reward("preference", arith, pairs)(**batch)[:2] == [None, None]
    assert all(r is not None for r in reward("verifiable", arith, pairs)(**batch)[:2])


def test_group_with_equal_rewards_counts_as_zero_variance():
    spec, [ep] = episodes("arithmetic.yaml", 1)
    metrics = Metrics()
    reward("verifiable", spec)(**trl_batch([(ep, ["no idea"] * 4)]), log_metric=metrics)
    assert metrics.values["arithmetic/player/zero_var_frac"] == [1.0]
    assert metrics.values["arithmetic/player/reward_std"] == [0.0]


# --------------------------------------------------------------------------------------------- preference
def test_preference_reward_scores_the_ranking_against_the_gold():
    spec, [ep] = episodes("pairs-synthetic.yaml", 1)
    labels = ep.payload.labels
    right = "Ranking: " + " > ".join(f"[{labels[i]}]" for i in ep.payload.gold)
    wrong = "Ranking: " + " > ".join(f"[{labels[i]}]" for i in reversed(ep.payload.gold))
    metrics = Metrics()
    rewards = reward("preference", spec)(**trl_batch([(ep, [right, wrong, "I cannot decide.", right])]),
                                                  log_metric=metrics)
    assert rewards == pytest.approx([1.1, 0.1, 0.0, 1.1])
    assert metrics.mean("pairs-synthetic/referee/accuracy") == 0.5
    assert metrics.mean("pairs-synthetic/referee/parse_rate") == 0.75
    assert len(metrics.values["pairs-synthetic/referee/first_shown_best_rate"]) == 3  # parsed ones only


def test_a_prefilled_preference_prompt_is_continued_by_the_completion_and_parsed_with_its_start():
    spec, [ep] = episodes("pairs-synthetic.yaml", 1, ["referee.prefill='Ranking: ['"])
    assert ep.messages[-1] == {"role": "assistant", "content": "Ranking: ["}  # TRL continues a final assistant turn
    labels = ep.payload.labels
    right = f"{labels[ep.payload.gold[0]]}] > [{labels[ep.payload.gold[1]]}]"  # the completion alone: the prefill is the prompt's
    rewards = reward("preference", spec)(**trl_batch([(ep, [right, "?"])]), log_metric=Metrics())
    assert rewards == pytest.approx([1.1, 0.0])


def test_a_label_drawn_by_a_likelihood_trained_referee_ranks_its_candidate_first():
    """referee.verdict: likelihood on a trained preference task: a completion is the one label token a referee step
    drew; it names the candidate ranked first, and anything that is not a shown label is unparsed."""
    spec, [ep] = episodes("pairs-synthetic.yaml", 1, ["referee.verdict=likelihood"])
    labels, gold = ep.payload.labels, ep.payload.gold
    best, worse = labels[gold[0]], labels[gold[1]]
    metrics = Metrics()
    rewards = reward("preference", spec)(**trl_batch([(ep, [best, worse, "7", best])]), log_metric=metrics)
    assert rewards == pytest.approx([1.1, 0.1, 0.0, 1.1])
    assert metrics.mean("pairs-synthetic/referee/accuracy") == 0.5
    assert metrics.mean("pairs-synthetic/referee/parse_rate") == 0.75


def test_likelihood_trained_verdicts_over_more_than_two_candidates_need_top1_scoring():
    with pytest.raises(ConfigError, match="score: top1, or max_candidates: 2"):
        prepare_task(TASKS / "pairs-synthetic.yaml", ["referee.verdict=likelihood", "max_candidates=3"], limit=1)
    prepare_task(TASKS / "pairs-synthetic.yaml", ["referee.verdict=likelihood", "max_candidates=3", "score=top1"],
                 limit=1)


def test_a_label_that_is_not_one_token_after_the_prefill_is_refused_naming_the_tokenizer():
    spec, [ep] = episodes("pairs-synthetic.yaml", 1, ["referee.verdict=likelihood"])
    prompt = trl_record(ep, TOKENIZER)["prompt"]
    assert len(spec.label_token_ids(TOKENIZER, prompt, ["1", "2"])) == 2
    with pytest.raises(FieldError, match="not one token for tokenizer"):
        spec.label_token_ids(TOKENIZER, prompt, ["12345678", "2"])


# --------------------------------------------------------------------------------------------- self-referee
def open_ended(n: int = 1, overrides: Sequence[str] = ()):
    """The shipped open-ended task with a sampled, shuffled self-referee (what the fake backends answer), unless
    `overrides` say otherwise."""
    spec, eps = episodes("instructions-offline.yaml", n,
                         ["self_referee.verdict=sample", "self_referee.debias=shuffle", *overrides])
    return spec, eps


def test_self_referee_ranks_a_group_whose_order_is_known():
    # the fake referee prefers the answer holding the largest number, whatever the shuffled order shown
    spec, [ep] = open_ended()
    backend = FakeReferee()
    referee = SelfReferee([spec], recipe_for("instructions-offline.yaml"), StepBackend(backend))
    metrics = Metrics()
    answers = ["answer 3", "answer 9", "answer 5", "answer 1"]
    rewards = reward("open_ended", spec)(**trl_batch([(ep, answers)]), log_metric=metrics)
    # rank r of G=4 gets (4 - r) / 3; no length penalty below 200 tokens
    assert rewards == pytest.approx([1 / 3, 1.0, 2 / 3, 0.0])
    assert backend.calls == [1]  # one listwise judgment, one generate call
    assert metrics.values["instructions-offline/referee/parse_rate"] == [1.0]
    assert metrics.values["instructions-offline/referee/no_signal_rate"] == [0.0]
    assert "instructions-offline/referee/time_s" in metrics.values


def test_self_referee_fixed_ranking_without_shuffle():
    spec, [ep] = open_ended(overrides=["self_referee.debias=none"])
    referee = SelfReferee([spec], recipe_for("instructions-offline.yaml"),
                          StepBackend(scripted("Ranking: [2] > [1] > [4] > [3]")))
    rewards = reward("open_ended", spec)(**trl_batch([(ep, ["a", "b", "c", "d"])]))
    assert rewards == pytest.approx([2 / 3, 1.0, 0.0, 1 / 3])


def test_failed_referee_parse_gives_equal_rewards_and_is_counted():
    spec, [ep] = open_ended()
    referee = SelfReferee([spec], recipe_for("instructions-offline.yaml"), StepBackend(scripted("They are all good.")))
    metrics = Metrics()
    rewards = reward("open_ended", spec)(**trl_batch([(ep, ["a", "bb", "c", "d"])]),
                                                          log_metric=metrics)
    assert len(set(rewards)) == 1
    assert metrics.values["instructions-offline/referee/no_signal_rate"] == [1.0]
    assert metrics.values["instructions-offline/referee/parse_rate"] == [0.0]
    assert metrics.values["instructions-offline/player/zero_var_frac"] == [1.0]


def test_all_open_ended_groups_of_a_step_are_judged_in_one_call():
    spec, eps = open_ended(3)
    backend = FakeReferee()
    referee = SelfReferee([spec], recipe_for("instructions-offline.yaml"), StepBackend(backend))
    batch = trl_batch([(ep, [f"n {i}", f"n {i + 5}"]) for i, ep in enumerate(eps)])
    rewards = reward("open_ended", spec)(**batch)
    assert backend.calls == [3]
    assert rewards == pytest.approx([0.0, 1.0] * 3)


def test_a_rank_with_nothing_to_judge_still_calls_the_backend_once():
    spec, _ = open_ended()
    arith, [a] = episodes("arithmetic.yaml", 1)
    backend = FakeReferee(lambda _: "ok")
    seen: list[tuple[int, int]] = []

    class Recording:
        def generate(self, prompts, sampling: SamplingParams):
            seen.append((len(prompts), sampling.max_new_tokens))
            return backend.generate(prompts, sampling)

    referee = SelfReferee([spec], recipe_for("instructions-offline.yaml"), StepBackend(Recording()))
    rewards = reward("open_ended", spec, arith)(**trl_batch([(a, ["x", "y"])]))
    assert rewards == [None, None]
    assert seen == [(1, 1)]  # one 1-token generation from the ping prompt, so collectives stay aligned
    assert backend.calls == [1]


def test_ping_prompt_is_a_single_short_message():
    assert PING == [{"role": "user", "content": "."}]


def test_self_referee_uses_the_referee_role_sampling_under_the_task_overrides():
    spec, _ = open_ended(overrides=["self_referee.sampling.temperature=0.3"])
    recipe = recipe_for("instructions-offline.yaml")
    judge = SelfReferee([spec], recipe).judges[spec.name]
    assert judge.sampling == SamplingParams(temperature=0.3, top_p=recipe.roles.params("referee").top_p, max_new_tokens=64)


def test_both_orders_agreement_is_logged():
    spec, [ep] = open_ended(overrides=["self_referee.debias=both_orders"])
    referee = SelfReferee([spec], recipe_for("instructions-offline.yaml"), StepBackend(FakeReferee()))
    metrics = Metrics()
    reward("open_ended", spec)(**trl_batch([(ep, ["1", "22 22", "333 333 333", "4"])]),
                                                log_metric=metrics)
    assert metrics.values["instructions-offline/referee/both_orders_agreement"] == [1.0]
    # the perfect referee ranks by value: 333 > 22 > 4 > 1, and length 3 > 2 > 1 = 1
    assert metrics.values["instructions-offline/referee/rank_length_spearman"][0] > 0.9


def test_positions_are_recorded_per_step():
    spec, [a, b] = episodes("arithmetic.yaml", 2)
    observer = StepObserver()
    [fn] = reward_functions([spec], observer=observer)
    fn(**trl_batch([(a, ["x", "y"]), (b, ["z", "w"])]), trainer_state=SimpleNamespace(global_step=6))
    assert observer.drain() == {7: [0, 1]}
    assert observer.drain() == {}


def test_train_judgments_is_refused_up_front():
    spec, _ = open_ended(overrides=["self_referee.train_judgments=true"])
    with pytest.raises(Exception, match="train_judgments"):
        SelfReferee([spec], recipe_for("instructions-offline.yaml"))


# --------------------------------------------------------------------------------------------- metrics
def test_spearman():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)


def test_heldout_curves_hold_accuracies_only():
    """Seconds and counts on the accuracies' axis flattened them to a line at 0."""
    records = [{"step": s, "kind": "heldout", "player/a/accuracy": 0.1 * s, "referee/b/accuracy": 0.5,
                "heldout/time_s": 50.0, "referee/b/n": 32.0, "referee/b/parse_failures": 9.0} for s in (0, 6)]
    records.append({"step": 1, "kind": "train", "t/player/accuracy": 1.0})
    assert curves(records, "heldout", "/accuracy") == {"player/a/accuracy": [(0, 0.0), (6, 0.6000000000000001)],
                                                        "referee/b/accuracy": [(0, 0.5), (6, 0.5)]}


# --------------------------------------------------------------------------------------------- layout
def test_layout_consumes_prompts_per_step_times_group_size():
    layout = batch_layout(Grpo(prompts_per_step=8, group_size=4), 2, whole_groups=True)
    assert layout.generation_batch_size == 32
    assert layout.per_device_train_batch_size == 16 and layout.gradient_accumulation_steps == 1
    layout = batch_layout(Grpo(prompts_per_step=8, group_size=4, per_device_batch_size=4), 1, whole_groups=True)
    assert (layout.per_device_train_batch_size, layout.gradient_accumulation_steps) == (4, 8)
    assert layout.steps_per_generation == 8 and layout.generation_batch_size == 32


def test_layout_refuses_split_groups_only_when_the_self_referee_needs_them_whole():
    grpo = Grpo(prompts_per_step=3, group_size=4)
    with pytest.raises(LayoutError, match="splits prompt groups"):
        batch_layout(grpo, 2, whole_groups=True)
    assert not batch_layout(grpo, 2, whole_groups=False).whole_groups_per_process


@pytest.mark.parametrize("grpo", [Grpo(prompts_per_step=3, group_size=3), Grpo(prompts_per_step=4, group_size=4,
                                                                                per_device_batch_size=3),
                                  Grpo(prompts_per_step=4, group_size=4, gradient_accumulation_steps=3)])
def test_layout_refuses_uneven_splits(grpo):
    with pytest.raises(LayoutError):
        batch_layout(grpo, 2, whole_groups=False)


def test_likelihood_self_referee_gives_continuous_rewards_that_sum_to_one_per_group():
    # listwise likelihood: each answer's reward is the probability that its label is ranked first (sums to 1)
    from test_referee_likelihood import ForcedLM, by_value

    from urpo_kit.models import tiny_tokenizer
    from urpo_kit.referee import HFBackend

    spec, [ep] = open_ended(overrides=["self_referee.verdict=likelihood", "reward.length=null"])
    tok = tiny_tokenizer()
    backend = StepBackend(HFBackend(ForcedLM(tok, by_value()), tok))
    referee = SelfReferee([spec], recipe_for("instructions-offline.yaml"), backend)
    referee.check(4)
    metrics = Metrics()
    rewards = reward("open_ended", spec)(**trl_batch([(ep, ["1", "2", "3", "4"])]),
                                                          log_metric=metrics)
    assert rewards == pytest.approx([0.1, 0.2, 0.3, 0.4])  # value / (1 + 2 + 3 + 4), whatever the shuffle
    assert sum(rewards) == pytest.approx(1.0)
    assert metrics.values["instructions-offline/referee/parse_rate"] == [1.0]
    assert backend.calls == 1


def test_likelihood_self_referee_is_refused_with_vllm_before_any_model_loads():
    from urpo_kit.errors import UrpoError

    spec, _ = open_ended(overrides=["self_referee.verdict=likelihood"])
    recipe = recipe_for("instructions-offline.yaml")
    recipe.generation.backend = "vllm_server"
    with pytest.raises(UrpoError, match="generation.backend: hf"):
        SelfReferee([spec], recipe)


def test_position_balance_pushes_back_against_the_position_a_referee_overuses():
    spec, [ep] = episodes("pairs-synthetic.yaml", 1, ["position_balance=1.0", "reward.format=0"])
    labels = ep.payload.labels
    first, second = f"{labels[0]}] > [{labels[1]}]", f"{labels[1]}] > [{labels[0]}]"
    rewards = reward("preference", spec)(**trl_batch([(ep, [first, first, first, second])]))
    correct_first = ep.payload.gold[0] == 0
    # 3 of 4 picks at position 0: picking it earns no bonus, picking position 1 gains 0.5 - 0.25
    assert rewards[0] == pytest.approx(float(correct_first))
    assert rewards[3] == pytest.approx(float(not correct_first) + 0.25)
    balanced = reward("preference", spec)(**trl_batch([(ep, [first, second])]))
    assert balanced == pytest.approx([float(correct_first), float(not correct_first)])  # no term when balanced


def test_trl_prompt_continues_the_referee_prefill() -> None:
    """A preference episode's prompt, as TRL is given it, ends with the prefill, so the first sampled token is the
    verdict; a player prompt ends with the template's opened assistant turn, as TRL would write it."""
    from urpo_kit.models import load_tokenizer

    tokenizer = load_tokenizer("bundled:smollm2-135m-instruct")
    _, [pair] = episodes("pairs-synthetic.yaml", 1)
    record = trl_record(pair, tokenizer)
    assert record["prompt"].endswith("<|im_start|>assistant\nRanking: [") and record["prompt"].count("Ranking: [") == 2
    assert record["messages"] == pair.messages
    player = trl_record(Episode("p", [{"role": "user", "content": "Hi"}], pair.payload, 0, 0), tokenizer)
    assert player["prompt"] == tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                                             add_generation_prompt=True)
