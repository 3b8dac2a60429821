"""Turn the reward components of one completion into the scalar GRPO sees, keeping the parts for metrics."""

from __future__ import annotations

from urpo_kit.config.schema import LengthPenalty, RewardSpec


def length_penalty(n_tokens: int | None, spec: LengthPenalty | None) -> float:
    """0 up to `max_tokens`, falling linearly to `-weight` at `2 * max_tokens` and staying there; 0 if unknown."""
    if spec is None or n_tokens is None or n_tokens <= spec.max_tokens:
        return 0.0
    over = min((n_tokens - spec.max_tokens) / spec.max_tokens, 1.0)
    return -spec.weight * over


def combine(correct: float, formatted: bool, n_tokens: int | None, spec: RewardSpec) -> tuple[float, dict[str, float]]:
    """Weighted total and its weighted parts (`correct`, `format`, `length`), which sum to the total.

    `correct` is the verifier or ranking score in [0, 1]; `formatted` is whether an answer or ranking was parsed.
    """
    parts = {
        "correct": spec.correct * float(correct),
        "format": spec.format * float(formatted),
        "length": length_penalty(n_tokens, spec.length),
    }
    return sum(parts.values()), parts
