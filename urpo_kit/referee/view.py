"""The referee's view of candidates: labelled, in a seeded presentation order that is kept, rendered through the
referee template of a `RefereeSpec`; used by preference tasks, the self-referee and the Judge.

The permutation is kept so that a ranking over shown labels maps back to the original candidates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from urpo_kit.config.schema import RefereeSpec
from urpo_kit.recast import RenderError, Templates, chat, render
from urpo_kit.referee.modes import MODES


@dataclass
class RefereeView:
    """A rendered referee prompt: `order[i]` is the original index of the candidate shown with `labels[i]`."""

    messages: list[dict[str, str]]
    labels: list[str]
    order: list[int]
    prefill: str = ""   # the reply's given start (the last, assistant, message); the model's text continues it

    def to_original(self, shown_ranking: Sequence[int]) -> list[int]:
        """Map a ranking over shown positions to a ranking over original candidate indices."""
        return [self.order[i] for i in shown_ranking]


MAX_LETTER_LABELS = 26


def make_labels(n: int, style: str = "numbers") -> list[str]:
    if style == "letters":
        if n > MAX_LETTER_LABELS:
            raise ValueError(f"letters allow at most {MAX_LETTER_LABELS} candidates, got {n}")
        return [chr(ord("A") + i) for i in range(n)]
    return [str(i + 1) for i in range(n)]


class RefereeRenderer:
    """Renders referee prompts for a RefereeSpec: used by preference tasks, the self-referee and the Judge."""

    def __init__(self, spec: RefereeSpec, templates: Templates, *, field_prefix: str = "referee"):
        self.spec, self.mode, self.field_prefix = spec, MODES[spec.mode], field_prefix
        path = spec.template or Path(self.mode.template)
        self.template = templates.file(path, f"{field_prefix}.template")
        self.system = templates.inline(spec.system, f"{field_prefix}.system") if spec.system else None
        self.prefill = spec.prefill or (self.mode.prefill if spec.verdict == "likelihood" else "")

    def check_prefill(self, view: RefereeView) -> None:
        """The prefill starts the reply that the template's answer line asks for, so it must appear in the prompt
        (e.g. `Ranking: [` for an answer line `Ranking: [1] > [2]`): a prefill the template does not ask for
        makes the model continue a reply it was never shown how to write."""
        start = view.prefill.strip()
        user = next((m["content"] for m in view.messages if m["role"] == "user"), "")
        if start and start not in user:
            raise RenderError(f"{self.field_prefix}.prefill", f"{view.prefill!r} does not appear in the rendered "
                              f"{self.template.name} (its answer line asks for another reply start)",
                              )

    def render(self, prompt: str, candidates: Sequence[str], rng: random.Random | None,
               extra: dict[str, Any] | None = None) -> RefereeView:
        """Shuffle (when asked and an rng is given) and label the candidates, then render the referee messages."""
        order = list(range(len(candidates)))
        if self.spec.shuffle and rng is not None:
            rng.shuffle(order)
        return self.render_order(prompt, candidates, order, extra)

    def render_order(self, prompt: str, candidates: Sequence[str], order: list[int],
                     extra: dict[str, Any] | None = None) -> RefereeView:
        """Render with an explicit presentation order (e.g. the reverse order for `both_orders` debiasing)."""
        if sorted(order) != list(range(len(candidates))):
            raise ValueError(f"order {order} is not a permutation of the {len(candidates)} candidates")
        try:
            labels = make_labels(len(candidates), self.spec.labels)
        except ValueError as e:
            raise RenderError(f"{self.field_prefix}.labels", str(e)) from None
        shown = [{"label": lab, "text": candidates[i]} for lab, i in zip(labels, order)]
        variables = {**(extra or {}), "prompt": prompt, "candidates": shown, "labels": labels, "n": len(labels),
                     "scale": list(self.spec.scale)}
        user = render(self.template, variables, f"{self.field_prefix}.template")
        system = render(self.system, variables, f"{self.field_prefix}.system") if self.system else None
        return RefereeView(chat(system, user, self.prefill), labels, order, self.prefill)
