"""One optimizer state per role, for runs whose steps each hold one role (`grpo.steps_by_role`).

With one shared state, Adam's moments blend the two roles' gradients: a referee step's gradient (clipped at
`max_grad_norm`, often several times a player step's in norm) is still most of the first moment at the next player
step (beta1 = 0.9), and its square sets the scale the player's update is divided by. The player then mostly applies
the referee's last direction. With a state per role each step's update is its own role's moving average, at the full
learning rate: two optimizers over the same parameters, the trainer's one, whose state is swapped at a role change.

The swap lives in the optimizer class (`with_role_state`), so checkpoints carry every role's state and a resumed run
continues each role's moments; the trainer creates it through `Trainer.optimizer_cls_and_kwargs`. Opt-in
(`grpo.optimizer_state: per_role`): in our 20-step quickstart runs it did not help either role (README).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

STASH_KEY = "urpo_role_state"  # the other roles' state inside the optimizer's state_dict


def with_role_state(base: type) -> type:
    """`base` (a torch optimizer class) with one state per role: `use_role(role)` before a step selects it."""

    class RoleState(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.role: str | None = None  # whose state `self.state` holds
            self.stashed: dict[str, Any] = {}  # the other roles' states

        def use_role(self, role: str) -> None:
            """Make `role`'s state current; the first use of a role starts it empty (step count 0)."""
            if self.role is not None and role != self.role:
                self.stashed[self.role] = self.state
                self.state = self.stashed.pop(role, defaultdict(dict))
            self.role = role

        def state_dict(self) -> dict[str, Any]:
            packed = super().state_dict()
            current = self.state
            try:
                other = {}
                for role, state in self.stashed.items():
                    self.state = state
                    other[role] = super().state_dict()["state"]
            finally:
                self.state = current
            packed[STASH_KEY] = {"role": self.role, "other": other}
            return packed

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            state_dict = dict(state_dict)
            saved = state_dict.pop(STASH_KEY, None)
            self.stashed.clear()
            for role, state in (saved or {}).get("other", {}).items():
                super().load_state_dict({**state_dict, "state": state})
                self.stashed[role] = self.state
            super().load_state_dict(state_dict)
            self.role = saved["role"] if saved else None

    RoleState.__name__ = RoleState.__qualname__ = f"RoleState{base.__name__}"
    return RoleState


def role_state_optimizer(args: Any, model: Any = None) -> tuple[type, dict[str, Any]]:
    """(class, kwargs) for `Trainer.optimizer_cls_and_kwargs`: the optimizer the training arguments name, with
    one state per role."""
    from transformers import Trainer

    base, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    return with_role_state(base), kwargs


def use_role(optimizer: Any, role: str) -> None:
    """Select `role`'s state on the trainer's optimizer, found under accelerate's wrapper."""
    inner = optimizer
    while not hasattr(inner, "use_role"):
        if not hasattr(inner, "optimizer"):
            raise TypeError(f"{type(optimizer).__name__} holds no per-role optimizer state")
        inner = inner.optimizer
    inner.use_role(role)
