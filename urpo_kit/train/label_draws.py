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

The G completions of such a step's prompt differ in one token, and the log-probability of that token depends on the
prompt alone: `share_prompt_passes` makes TRL's log-probability passes (loss, reference, old policy) run one forward
pass per distinct prompt instead of one per completion: the same figures and gradients, at down to a G-th of the
cost (a micro-batch that splits a group holds a part of it).
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


def group_rows(groups: list[tuple[int, int]], device: Any) -> tuple[Any, Any]:
    """(the first row of each group, the group of each row): one pass per group, its result spread back to rows."""
    import torch

    firsts = torch.tensor([start for start, _ in groups], device=device)
    sizes = torch.tensor([end - start for start, end in groups], device=device)
    return firsts, torch.repeat_interleave(torch.arange(len(groups), device=device), sizes)


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

        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        groups = prompt_groups(ids, mask)
        firsts, rows = group_rows(groups, ids.device)
        with torch.no_grad(), fast_inference(self.model):  # one pass per distinct prompt
            logits = last_token_logits(self.model, {"input_ids": ids[firsts], "attention_mask": mask[firsts]})
        labels = torch.tensor(sorted(set(range(self.vocab_size)) - set(config.suppress_tokens)), device=ids.device)
        probs = (logits.float()[:, labels] / config.temperature).softmax(-1).cpu()
        drawn = labels[systematic_draws(probs[rows.cpu()], groups).to(ids.device)]
        return torch.cat([ids, drawn[:, None].to(ids.dtype)], dim=1)


# TRL's multimodal inputs to `_get_per_token_logps_and_entropies`; a batch with any of them takes TRL's own path
_MULTIMODAL = ("pixel_values", "image_grid_thw", "pixel_attention_mask", "spatial_shapes", "image_sizes",
               "token_type_ids", "mm_token_type_ids", "image_position_ids")


def share_prompt_passes(trainer: Any) -> None:
    """Batches whose completions are one token long: TRL's per-token log-probabilities and entropies from one forward
    pass per run of identical prompts (module docstring), read at the loss temperature as TRL's fused head reads
    them; any other batch goes through TRL's own method (contract test)."""
    import torch

    original = trainer._get_per_token_logps_and_entropies

    def per_token_logps(model: Any, input_ids: Any, attention_mask: Any, logits_to_keep: int, batch_size: Any = None,
                        compute_entropy: bool = False, compute_aux_loss: bool = False, **extra: Any) -> Any:
        groups = prompt_groups(input_ids[:, :-1], attention_mask[:, :-1]) if logits_to_keep == 1 else []
        if (not groups or len(groups) == input_ids.shape[0] or compute_aux_loss or not bool(attention_mask[:, -1].all())
                or any(extra.get(name) is not None for name in _MULTIMODAL)):
            return original(model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                            compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **extra)
        firsts, rows = group_rows(groups, input_ids.device)
        with trainer.accelerator.autocast():
            logits = model(input_ids=input_ids[firsts, :-1], attention_mask=attention_mask[firsts, :-1],
                           logits_to_keep=1).logits[:, -1, :]
        logps = (logits.float() / trainer.temperature).log_softmax(-1)[rows]
        entropies = -(logps.exp() * logps).sum(-1, keepdim=True) if compute_entropy else None
        return logps.gather(-1, input_ids[:, -1:]), entropies, None

    trainer._get_per_token_logps_and_entropies = per_token_logps
