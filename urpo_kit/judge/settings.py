"""What shapes a judgment besides the rows: one settings object for `judge`, `serve` and the reward adapter."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from urpo_kit.config.schema import Debias, Mode, ModelSpec, RefereeSpec, VerdictKind
from urpo_kit.errors import UrpoError
from urpo_kit.judge.rows import validation_message
from urpo_kit.recast import stable_seed
from urpo_kit.referee import HFBackend, Judge, SamplingParams
from urpo_kit.referee.backends import Backend

DEFAULT_SAMPLING = SamplingParams(temperature=0.0, max_new_tokens=128)  # greedy: a reward model should be repeatable


@dataclass(frozen=True)
class JudgeSettings:
    """Mode, debiasing, samples, sampling, template, labels, prefill, verdict (sample or likelihood), pointwise
    scale and seed; `template` is looked up from the working directory first, then among the built-in templates
    (e.g. `referee/rank.j2`)."""

    mode: Mode = "listwise"
    debias: Debias = "shuffle"
    samples: int = 1
    sampling: SamplingParams = field(default=DEFAULT_SAMPLING)
    template: Path | None = None
    labels: Literal["numbers", "letters"] = "numbers"
    prefill: str | None = None
    verdict: VerdictKind = "sample"
    scale: tuple[int, int] = (1, 10)
    seed: int = 0

    def judge(self, backend: Backend, mode: Mode | None = None, *, verdict: VerdictKind | None = None,
              responses: int = 2) -> Judge:
        """A Judge with these settings (in `mode` or `verdict` instead of the settings' when given). A likelihood
        judge is checked here for rows of up to `responses` responses, so that a label or score that is not one
        token fails (UrpoError) before any row is judged rather than in the middle of a run."""
        try:
            spec = RefereeSpec(mode=mode or self.mode, debias=self.debias, samples=self.samples,
                               template=self.template, labels=self.labels, prefill=self.prefill,
                               verdict=verdict or self.verdict, scale=self.scale)
        except ValidationError as e:
            raise UrpoError(f"referee settings: {validation_message(e)}") from None
        judge = Judge(backend, spec, sampling=self.sampling, base_dir=Path.cwd(), seed=self.seed)
        if judge.verdict == "likelihood":
            judge.check(responses)
        return judge

    def fingerprint(self, judge: Judge, model: str) -> dict[str, Any]:
        """Everything that decides a row's judgment, with the template's content rather than its name, so that
        editing a template or switching model re-judges rows in a resumed run."""
        template = Path(judge.renderer.template.filename).read_bytes()  # type: ignore[attr-defined]
        values = dataclasses.asdict(self) | {"mode": judge.mode.name, "verdict": judge.verdict,
                                             "template": hashlib.sha256(template).hexdigest()}
        return values | {"model": model}

    def seed_batch(self, keys: list[str]) -> None:
        """Seed sampling from the seed and the batch's row keys: a re-run of the same batch samples the same
        judgments. Greedy decoding needs no seed, and then torch's global generator is left alone."""
        if self.sampling.temperature > 0:
            import torch

            torch.manual_seed(stable_seed(self.seed, *keys) % 2**63)


def load_backend(model: str, *, dtype: str = "auto", batch_size: int = 16, batch_tokens: int | None = None,
                 threads: int | None = None) -> HFBackend:
    """An HFBackend for a model name as the recipes write it (hub id, folder, `bundled:...`, `tiny:llama`), whose
    generation batches hold at most `batch_size` sequences and `batch_tokens` padded tokens.

    `threads` sets torch's CPU threads: on a CPU shared with other jobs, fewer threads than cores avoids
    oversubscription (measured here under load: 1 thread judged 3-6x faster than 2 on 2 busy cores)."""
    import torch

    from urpo_kit.models import load_model, load_tokenizer

    if threads is not None:
        torch.set_num_threads(threads)
    spec = ModelSpec(name=model, dtype=dtype)
    return HFBackend(load_model(spec), load_tokenizer(spec), batch_size=batch_size, batch_tokens=batch_tokens)
