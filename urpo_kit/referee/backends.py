"""Generation backends for the referee role: text in, text out, batched, under no_grad.

One interface (`Backend.generate`) so the self-referee inside training, `urpo-kit judge`, `urpo-kit serve` and the
referee benchmark share one code path whatever runs the model: HF `generate` (CPU, one GPU, DDP and ZeRO-3 through
an unwrap context the trainer supplies), a vLLM server (`vllm serve`, weights synced by TRL each step) or a vLLM
engine colocated in the training process. vLLM is imported lazily: it is an optional extra for GPU machines.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Protocol, Sequence

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling for one role; temperature 0 means greedy decoding."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 64

    @classmethod
    def merge(cls, base: Any, override: Any | None = None) -> "SamplingParams":
        """Role defaults (`RoleSampling`) with a task's optional overrides (`Sampling`, unset fields are None)."""
        values = {k: getattr(base, k) for k in ("temperature", "top_p", "max_new_tokens")}
        if override is not None:
            values.update({k: v for k in values if (v := getattr(override, k, None)) is not None})
        return cls(**values)


class Backend(Protocol):
    def generate(self, prompts: Sequence[Messages], sampling: SamplingParams) -> list[str]:
        """One completion per chat prompt, in order."""


def chat_prompt(tokenizer: Any, messages: Messages) -> str:
    """The prompt text; a final assistant message (a referee prefill) is continued rather than closed, as TRL does."""
    if messages and messages[-1]["role"] == "assistant":
        return tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class HFBackend:
    """Batched `model.generate` with left padding. `unwrap` yields the generation-ready model (TRL's unwrap helper
    under DDP/ZeRO-3); by default the model itself is used."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 16,
                 unwrap: Callable[[], ContextManager[Any]] | None = None,
                 progress: Callable[[int], None] | None = None):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.unwrap = unwrap or (lambda: contextlib.nullcontext(self.model))
        self.progress = progress

    def generate(self, prompts: Sequence[Messages], sampling: SamplingParams) -> list[str]:
        import torch

        texts = [chat_prompt(self.tokenizer, m) for m in prompts]
        # longest first: less padding per batch; results are put back in the caller's order
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: list[str] = [""] * len(texts)
        tok = self.tokenizer
        tok.padding_side = "left"
        with self.unwrap() as model, torch.no_grad():
            was_training = model.training
            model.eval()
            try:
                for start in range(0, len(order), self.batch_size):
                    idx = order[start:start + self.batch_size]
                    batch = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
                    batch = {k: v.to(model.device) for k, v in batch.items()}
                    kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "use_cache": True,
                                              "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id}
                    if sampling.temperature > 0:
                        kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
                    else:
                        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                    generated = model.generate(**batch, **kwargs)
                    completions = generated[:, batch["input_ids"].shape[1]:]
                    for i, text in zip(idx, tok.batch_decode(completions, skip_special_tokens=True)):
                        out[i] = text.strip()
                    if self.progress:
                        self.progress(len(idx))
            finally:
                model.train(was_training)
        return out


class VLLMServerBackend:
    """Generation through a vLLM server via TRL's client (the server holds the current step's weights)."""

    def __init__(self, client: Any, tokenizer: Any):
        self.client, self.tokenizer = client, tokenizer

    def generate(self, prompts: Sequence[Messages], sampling: SamplingParams) -> list[str]:
        if not prompts:
            return []
        result = self.client.generate(
            [chat_prompt(self.tokenizer, m) for m in prompts], n=1, temperature=sampling.temperature,
            top_p=sampling.top_p, max_tokens=sampling.max_new_tokens,
        )
        return [t.strip() for t in self.tokenizer.batch_decode(result["completion_ids"], skip_special_tokens=True)]


class VLLMColocateBackend:
    """Generation with a vLLM `LLM` engine living in this process (TRL's colocate mode)."""

    def __init__(self, llm: Any, tokenizer: Any):
        self.llm, self.tokenizer = llm, tokenizer

    def generate(self, prompts: Sequence[Messages], sampling: SamplingParams) -> list[str]:
        if not prompts:
            return []
        from vllm import SamplingParams as VSamplingParams  # optional GPU extra

        params = VSamplingParams(temperature=sampling.temperature, top_p=sampling.top_p,
                                 max_tokens=sampling.max_new_tokens, n=1)
        outputs = self.llm.generate([chat_prompt(self.tokenizer, m) for m in prompts], params, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outputs]
