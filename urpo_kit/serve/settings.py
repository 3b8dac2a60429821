"""What shapes a judgment besides the rows: one settings object for `judge`, `serve` and the reward adapter."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from urpo_kit.config.schema import Mode, ModelSpec, RefereeSpec, Sampling, SamplingParams, VerdictKind
from urpo_kit.recast import stable_seed
from urpo_kit.referee import HFBackend, Judge
from urpo_kit.referee.backends import Backend

JUDGE_SAMPLING = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=128)  # greedy: a reward model repeats


class JudgeSettings(RefereeSpec):
    """The referee spec as `judge`, `serve` and the reward adapter use it: the one `RefereeSpec` and a seed. Its
    unset sampling is greedy with 128 new tokens; `template` is looked up from the working directory first, then
    among the built-in templates (e.g. `referee/rank.j2`). The commands' options are generated from these fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, description="seed for presentation orders and sampling")

    @property
    def params(self) -> SamplingParams:
        return Sampling.resolve(JUDGE_SAMPLING, self.sampling)

    def judge(self, backend: Backend, mode: Mode | None = None, *, verdict: VerdictKind | None = None,
              responses: int = 2) -> Judge:
        """A Judge with these settings (in `mode` or `verdict` instead of the settings' when given). A likelihood
        judge is checked here for rows of up to `responses` responses, so that a label or score that is not one
        token fails (UrpoError) before any row is judged rather than in the middle of a run."""
        spec = self.model_copy(update={"mode": mode or self.mode, "verdict": verdict or self.verdict})
        judge = Judge(backend, spec, sampling=self.params, base_dir=Path.cwd(), seed=self.seed)
        if judge.verdict == "likelihood":
            judge.check(responses)
        return judge

    def fingerprint(self, judge: Judge, model: str) -> dict[str, Any]:
        """Everything that decides a row's judgment, with the template's content rather than its name, so that
        editing a template or switching model re-judges rows in a resumed run."""
        template = Path(judge.renderer.template.filename).read_bytes()  # type: ignore[attr-defined]
        values = self.model_dump(mode="json") | {"mode": judge.mode.name, "verdict": judge.verdict,
                                                 "sampling": dataclasses.asdict(self.params),
                                                 "template": hashlib.sha256(template).hexdigest()}
        return values | {"model": model}

    def seed_batch(self, keys: list[str]) -> None:
        """Seed sampling from the seed and the batch's row keys: a re-run of the same batch samples the same
        judgments. Greedy decoding needs no seed, and then torch's global generator is left alone."""
        if self.params.temperature > 0:
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
