"""One optimizer state per role (train.optim, `grpo.optimizer_state: per_role`; shared is the default): each role's
steps follow their own Adam moments, checkpoints carry every role's state, and a training run by role uses it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from urpo_kit.config.loader import load_recipe
from urpo_kit.errors import ConfigError
from urpo_kit.train.optim import STASH_KEY, use_role, with_role_state
from urpo_kit.train.trainer import build_run, train

from test_train import write_tasks

ROLES = ["player", "referee", "referee", "player", "referee", "player", "player"]


def gradient(role: str, step: int) -> torch.Tensor:
    """The referee's gradients are larger than the player's and point elsewhere, as in a URPO run."""
    g = torch.Generator().manual_seed(step)
    return torch.randn(5, generator=g) * (3.0 if role == "referee" else 0.3) + (1.0 if role == "referee" else -0.1)


def run(optimizers, roles=ROLES, start=0, param=None) -> torch.Tensor:
    """Apply one gradient per step with the role's optimizer (a dict) or one optimizer that swaps state."""
    for step, role in enumerate(roles, start=start):
        opt = optimizers[role] if isinstance(optimizers, dict) else optimizers
        if hasattr(opt, "use_role"):
            opt.use_role(role)
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = gradient(role, step)
        opt.step()
    return param


def test_each_role_steps_with_its_own_moments():
    """The same as two AdamW over the one parameter, one stepped per role; not what one shared AdamW does."""
    swapped, two, shared = (torch.nn.Parameter(torch.ones(5)) for _ in range(3))
    run(with_role_state(torch.optim.AdamW)([swapped], lr=0.1))
    run({role: torch.optim.AdamW([two], lr=0.1) for role in ("player", "referee")})
    run(torch.optim.AdamW([shared], lr=0.1))
    assert torch.allclose(swapped, two)
    assert not torch.allclose(swapped, shared, atol=1e-3)


def test_a_saved_and_reloaded_state_continues_every_roles_moments():
    """state_dict holds the other roles' states too (saved with torch.save, as the Trainer does); loading it into a
    fresh optimizer and going on gives the uninterrupted run's parameters."""
    cls = with_role_state(torch.optim.AdamW)
    straight = torch.nn.Parameter(torch.ones(5))
    run(cls([straight], lr=0.1), ROLES + ROLES)

    first = torch.nn.Parameter(torch.ones(5))
    opt = cls([first], lr=0.1)
    run(opt, ROLES)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert saved[STASH_KEY]["role"] == "player" and set(saved[STASH_KEY]["other"]) == {"referee"}

    resumed = torch.nn.Parameter(first.detach().clone())
    fresh = cls([resumed], lr=0.1)
    fresh.load_state_dict(saved)
    run(fresh, ROLES, start=len(ROLES))
    assert torch.allclose(resumed, straight)


def test_use_role_finds_the_optimizer_under_a_wrapper_and_refuses_a_plain_one():
    class Wrapper:  # accelerate's AcceleratedOptimizer keeps the optimizer as `.optimizer`
        def __init__(self, optimizer):
            self.optimizer = optimizer

    param = torch.nn.Parameter(torch.ones(2))
    inner = with_role_state(torch.optim.AdamW)([param])
    use_role(Wrapper(inner), "referee")
    assert inner.role == "referee"
    with pytest.raises(TypeError, match="no per-role optimizer state"):
        use_role(Wrapper(torch.optim.AdamW([param])), "player")


def by_role_recipe(tmp_path: Path, *overrides: str):
    path = write_tasks(tmp_path)
    (tmp_path / "pairs.yaml").write_text((tmp_path / "pairs.yaml").read_text()
                                         + "referee: {verdict: likelihood}\nmax_candidates: 2\n")
    return load_recipe(path, ["grpo.steps_by_role=true", *overrides])


def test_a_run_by_role_checkpoints_one_state_per_role_with_each_roles_step_count(tmp_path: Path):
    """In training (tiny model, steps by role), the checkpoint's optimizer state holds both roles, each having
    counted only its own steps; with `shared`, one state counts them all."""
    recipe = by_role_recipe(tmp_path / "a", "grpo.steps=4", "grpo.save_steps=4", "grpo.optimizer_state=per_role")
    run_dir = Path(train(recipe, progress=False).run_dir)
    roles = json.loads((run_dir / "stream.json").read_text())["step_roles"]
    saved = torch.load(run_dir / "checkpoint-4" / "optimizer.pt", weights_only=True)
    states = {saved[STASH_KEY]["role"]: saved["state"], **saved[STASH_KEY]["other"]}
    assert saved[STASH_KEY]["role"] == roles[-1] and set(states) == {"player", "referee"}
    for role, state in states.items():
        assert {float(s["step"]) for s in state.values()} == {float(roles.count(role))}

    shared = by_role_recipe(tmp_path / "b", "grpo.steps=4", "grpo.save_steps=4")  # the default
    saved = torch.load(Path(train(shared, progress=False).run_dir) / "checkpoint-4" / "optimizer.pt",
                       weights_only=True)
    assert STASH_KEY not in saved and {float(s["step"]) for s in saved["state"].values()} == {4.0}


def test_per_role_state_under_fsdp_or_deepspeed_is_a_located_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import trl

    class ShardedTrainer(trl.GRPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.is_fsdp_enabled = True

    monkeypatch.setattr(trl, "GRPOTrainer", ShardedTrainer)
    with pytest.raises(ConfigError, match="grpo.optimizer_state: one optimizer state per role is not supported"):
        build_run(by_role_recipe(tmp_path, "grpo.optimizer_state=per_role"), progress=False)
