"""Referee steps that draw one label (a preference task with `referee.verdict: likelihood`, `grpo.steps_by_role`):
the G draws of a prompt by systematic sampling (`grpo.referee_draws: systematic`).

Drawn independently, whether a group of G draws is mixed (and so moves the model at all) is luck. A pair shown in
both orders pushes the label bias one way in one order and back in the other only in expectation; the luck of which
groups were mixed moves it every step, and with Adam's per-coordinate scaling those small net pushes are full-size
updates: the referee drifts to naming one position. Systematic sampling draws the G labels of a prompt from one
uniform `u`: the i-th draw takes the label whose cumulative probability first exceeds `(i + u) / G` (shuffled over
the G rows). Each draw alone is still distributed as the label probabilities (each `(i + u) / G` is uniform), so
GRPO's gradient estimate keeps its expectation; a label of probability p is drawn `floor(G p)` or `ceil(G p)`
times, so two orders of a content-blind pair draw the same counts and their pushes cancel.

It replaces generation on those steps (one token from the labels needs one forward pass, as generation's prefill
is) and leaves every other step to `model.generate`.
"""

from __future__ import annotations

from typing import Any

from urpo_kit.models import fast_inference, last_token_logits


def systematic_draws(probs: Any, groups: list[tuple[int, int]]) -> Any:
    """One index per row of `probs` (rows x choices); the rows [start, end) of each group share one uniform and
    their draws are spread over it (module docstring). Uses torch's global generator (the Trainer seeds and restores
    it)."""
    import torch

    out = torch.empty(probs.shape[0], dtype=torch.long)
    for start, end in groups:
        n = end - start
        points = (torch.arange(n, dtype=torch.float64) + torch.rand(()).item()) / n
        points = points[torch.randperm(n)]
        cumulative = probs[start:end].double().cumsum(-1)
        cumulative[:, -1] = 1.0  # rounding must not leave a point past the last choice
        out[start:end] = torch.searchsorted(cumulative, points[:, None]).squeeze(-1).clamp(max=probs.shape[1] - 1)
    return out


def prompt_groups(input_ids: Any, attention_mask: Any) -> list[tuple[int, int]]:
    """[start, end) of each run of identical consecutive rows: TRL lays a prompt's G completions side by side."""
    groups, start = [], 0
    for row in range(1, input_ids.shape[0] + 1):
        if row == input_ids.shape[0] or not (input_ids[row].equal(input_ids[start])
                                             and attention_mask[row].equal(attention_mask[start])):
            groups.append((start, row))
            start = row
    return groups


class LabelDraws:
    """Wraps `model.generate` (the policy TRL generates with); while `active`, TRL's call (the one with the trainer's
    `generation_config`; the self-referee's own generation passes through) draws one label per row from the
    tokenizer's tokens that config leaves unsuppressed (RoleStepCallback sets it), at its temperature, by
    `systematic_draws`."""

    def __init__(self, model: Any, config: Any, vocab_size: int):
        self.model, self.plain, self.config, self.vocab_size = model, model.generate, config, vocab_size
        self.active = False
        model.generate = self.generate

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        config = kwargs.get("generation_config")
        if not self.active or config is not self.config:
            return self.plain(*args, **kwargs)
        import torch

        batch = {"input_ids": kwargs["input_ids"], "attention_mask": kwargs["attention_mask"]}
        with torch.no_grad(), fast_inference(self.model):
            logits = last_token_logits(self.model, batch).float()
        labels = torch.tensor(sorted(set(range(self.vocab_size)) - set(config.suppress_tokens)),
                              device=logits.device)
        probs = (logits[:, labels] / config.temperature).softmax(-1).cpu()
        drawn = labels[systematic_draws(probs, prompt_groups(batch["input_ids"], batch["attention_mask"]))
                       .to(labels.device)]
        return torch.cat([batch["input_ids"], drawn[:, None].to(batch["input_ids"].dtype)], dim=1)
