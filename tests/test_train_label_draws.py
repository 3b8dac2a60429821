"""Systematic label draws on referee steps (train.label_draws, `grpo.referee_draws: systematic`): each draw follows
the label probabilities, the G draws of a prompt take each label floor or ceil of G p times, and a training run's
label-drawing referee steps draw that way while player steps generate."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from urpo_kit.config.loader import load_recipe
from urpo_kit.train import label_draws
from urpo_kit.train.label_draws import LabelDraws, prompt_groups, systematic_draws
from urpo_kit.train.trainer import train

from test_train import PAIRS_TASK, train_records, write_tasks


def test_a_groups_counts_are_floor_or_ceil_of_g_p_and_each_draw_follows_p():
    torch.manual_seed(0)
    probs = torch.tensor([[0.6, 0.3, 0.1]]).repeat(4 * 3000, 1)
    groups = [(i, i + 4) for i in range(0, probs.shape[0], 4)]
    drawn = systematic_draws(probs, groups).view(-1, 4)
    counts = torch.stack([(drawn == label).sum(-1) for label in range(3)], dim=-1)
    for label, p in enumerate((0.6, 0.3, 0.1)):
        assert set(counts[:, label].tolist()) <= {int(4 * p), int(4 * p) + 1}
        for row in range(4):  # every row of a group, not just the group's total, is drawn as p says
            assert abs((drawn[:, row] == label).float().mean().item() - p) < 0.03
    exact = systematic_draws(torch.tensor([[0.75, 0.25]]).repeat(4, 1), [(0, 4)])
    assert sorted(exact.tolist()) == [0, 0, 0, 1]


def test_prompt_groups_are_runs_of_identical_rows():
    ids = torch.tensor([[0, 5, 6], [0, 5, 6], [7, 8, 9], [7, 8, 9], [7, 8, 9], [0, 5, 6]])
    mask = torch.tensor([[0, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1], [0, 1, 1]])
    assert prompt_groups(ids, mask) == [(0, 2), (2, 5), (5, 6)]


class ForcedHead(torch.nn.Module):
    """A model whose next-token logits are fixed: label 3 has probability 3/4 over labels {3, 4} at temperature 1."""

    def __init__(self):
        super().__init__()
        self.rows: list[int] = []

    def forward(self, input_ids, attention_mask, position_ids, logits_to_keep, use_cache):
        self.rows.append(input_ids.shape[0])
        logits = torch.full((input_ids.shape[0], 1, 8), 5.0)
        logits[..., 3], logits[..., 4] = torch.log(torch.tensor(3.0)), 0.0
        return SimpleNamespace(logits=logits)

    def generate(self, **kwargs):
        return "generated"


def test_label_draws_replace_generation_only_while_active_with_one_pass_per_prompt():
    model = ForcedHead()
    config = SimpleNamespace(suppress_tokens=[0, 1, 2, 5, 6, 7], temperature=1.0)
    draws = LabelDraws(model, config, vocab_size=8)
    ids = torch.tensor([[1, 2]] * 4 + [[2, 2]] * 4)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "generation_config": config}
    assert model.generate(**inputs) == "generated"
    draws.active = True
    other = SimpleNamespace(suppress_tokens=[], temperature=1.0)  # not the trainer's: the self-referee generating
    assert model.generate(**{**inputs, "generation_config": other}) == "generated"
    out = model.generate(**inputs)
    assert out[:, :2].equal(ids)
    assert sorted(out[:4, 2].tolist()) == [3, 3, 3, 4] and sorted(out[4:, 2].tolist()) == [3, 3, 3, 4]
    assert model.rows == [2]  # one row per distinct prompt


@pytest.mark.parametrize("draws", ["systematic", "independent"])
def test_a_runs_label_drawing_referee_steps_draw_systematically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 draws: str):
    """Tiny model, steps by role: every referee step's labels come from systematic_draws (one call per step, a
    group per prompt), player steps generate; with `independent`, generation samples them."""
    calls: list[list[tuple[int, int]]] = []
    real = label_draws.systematic_draws

    def counting(probs, groups):
        calls.append(groups)
        return real(probs, groups)

    monkeypatch.setattr(label_draws, "systematic_draws", counting)
    path = write_tasks(tmp_path)
    (tmp_path / "pairs.yaml").write_text(PAIRS_TASK + "referee: {verdict: likelihood}\nmax_candidates: 2\n")
    recipe = load_recipe(path, ["grpo.steps_by_role=true", "grpo.steps=4", f"grpo.referee_draws={draws}"])
    run_dir = Path(train(recipe, progress=False).run_dir)
    referee_steps = [r for r in train_records(run_dir) if "pairs/referee/parse_rate" in r]
    assert referee_steps and all(r["completions/max_length"] == 1 for r in referee_steps)
    if draws == "independent":
        assert calls == []
    else:
        assert len(calls) == len(referee_steps)
        assert all(end - start == recipe.grpo.group_size for groups in calls for start, end in groups)


def test_one_token_completions_of_a_prompt_share_one_pass_with_trls_figures_and_gradients(tmp_path: Path):
    """label_draws.share_prompt_passes against TRL's own `_get_per_token_logps_and_entropies` (contract): the same
    log-probabilities, entropies and gradients for one-token completions of repeated left-padded prompts, from one
    forward pass per prompt; longer completions take TRL's path."""
    from trl import GRPOTrainer

    from urpo_kit.train.trainer import build_run

    path = write_tasks(tmp_path)
    trainer = build_run(load_recipe(path, ["roles.player.temperature=0.7"]), progress=False).trainer
    model = trainer.model
    model.train()
    pad = trainer.processing_class.pad_token_id
    prompts = [[pad, pad, 11, 12, 13], [21, 22, 23, 24, 25]]
    ids = torch.tensor([prompts[0] + [t] for t in (30, 31, 30)] + [prompts[1] + [t] for t in (40, 41, 42)],
                       device=model.device)
    mask = (ids != pad).long()
    calls = {"n": 0}
    forward = model.forward

    def counting(*args, **kwargs):
        calls["n"] += kwargs["input_ids"].shape[0]
        return forward(*args, **kwargs)

    def run(method):
        model.zero_grad()
        logps, entropies, _ = method(model, ids, mask, 1, compute_entropy=True)
        (logps.sum() + entropies.sum()).backward()
        return logps.detach(), entropies.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    theirs = run(lambda *a, **k: GRPOTrainer._get_per_token_logps_and_entropies(trainer, *a, **k))
    model.forward = counting
    ours = run(trainer._get_per_token_logps_and_entropies)
    assert calls["n"] == 2  # one row per distinct prompt
    assert torch.allclose(ours[0], theirs[0], atol=1e-5) and torch.allclose(ours[1], theirs[1], atol=1e-5)
    assert len(ours[2]) == len(theirs[2]) and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours[2], theirs[2]))
    calls["n"] = 0
    trainer._get_per_token_logps_and_entropies(model, torch.cat([ids, ids[:, -1:]], 1),
                                               torch.cat([mask, mask[:, -1:]], 1), 2)
    assert calls["n"] == ids.shape[0]  # two-token completions: TRL's pass over every row
