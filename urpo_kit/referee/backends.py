"""Generation backends for the referee role: text in, text out, batched, under no_grad.

One interface (`Backend.generate`) so the self-referee inside training, `urpo-kit judge`, `urpo-kit serve` and the
referee benchmark share one code path whatever runs the model: HF `generate` (CPU, one GPU, DDP and ZeRO-3 through
an unwrap context the trainer supplies), a vLLM server (`vllm serve`, weights synced by TRL each step) or a vLLM
engine colocated in the training process. vLLM is imported lazily: it is an optional extra for GPU machines.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Iterator, Protocol, Sequence

from urpo_kit.config.schema import SamplingParams
from urpo_kit.errors import UrpoError
from urpo_kit.models import fast_inference, last_token_logits

Messages = list[dict[str, str]]


class Backend(Protocol):
    def generate(self, prompts: Sequence[Messages], sampling: SamplingParams) -> list[str]:
        """One completion per chat prompt, in order."""


class LikelihoodBackend(Backend, Protocol):
    """A backend that can also read the next-token distribution after a prompt (`verdict: likelihood`)."""

    tokenizer: Any

    def next_token_logprobs(self, prompts: Sequence[Messages], token_ids: Sequence[Sequence[int]]) -> list[list[float]]:
        """Per chat prompt, the log-probabilities (over the whole vocabulary) of its `token_ids` as the next token."""


def chat_prompt(tokenizer: Any, messages: Messages) -> str:
    """The prompt text; a final assistant message (a referee prefill) is continued rather than closed."""
    if messages and messages[-1]["role"] == "assistant":
        return tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def continuation(prefill: str, value: str) -> str:
    """How a verdict value is written right after the prefill: glued to an opening bracket or a space ('[' + '2'),
    after a space otherwise ('Score:' + ' 7'), as a model writes it and as BPE tokenizers merge it."""
    return value if not prefill or prefill[-1] in "[(" or prefill[-1].isspace() else " " + value


def single_token_ids(tokenizer: Any, prompt_text: str, values: Sequence[str]) -> list[int] | str:
    """The one token each value adds to `prompt_text` (which ends with the prefill), or, when a value is not
    exactly one token there, a message naming the value and the pieces the tokenizer makes of it."""
    base = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    prefill_end = prompt_text[-20:]
    ids = []
    for value in values:
        text = continuation(prompt_text, value)
        full = tokenizer(prompt_text + text, add_special_tokens=False)["input_ids"]
        if len(full) != len(base) + 1 or full[:len(base)] != base:
            shared = next((i for i, (a, b) in enumerate(zip(base, full)) if a != b), len(base))
            pieces = tokenizer.convert_ids_to_tokens(full[shared:])
            name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
            return (f"`{value}` after {prefill_end!r} is not one token for tokenizer {name} (it becomes "
                    f"{pieces}); verdict: likelihood reads each label or score as one next token")
        ids.append(full[-1])
    return ids


class HFBackend:
    """Batched `model.generate` (and next-token reads) with left padding. `unwrap` yields the generation-ready model
    (TRL's unwrap helper under DDP/ZeRO-3); by default the model itself is used.

    `remember_next_token`: keep the next-token log-probabilities of the prompts of the last `generate` call (they
    come with the generation's first step), so that `next_token_logprobs` on the same prompts costs nothing; only the
    last call's are kept, so memory stays bounded by one call (prompts x vocabulary floats). The held-out
    evaluation judges the same referee prompts as sampled text and as likelihood verdicts; with this, both readings
    come from one forward pass. Only for a model whose weights do not change while the backend lives."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 16, batch_tokens: int | None = None,
                 unwrap: Callable[[], ContextManager[Any]] | None = None,
                 progress: Callable[[int], None] | None = None, remember_next_token: bool = False):
        self.model, self.tokenizer, self.batch_size, self.batch_tokens = model, tokenizer, batch_size, batch_tokens
        self.unwrap = unwrap or (lambda: contextlib.nullcontext(self.model))
        self.progress = progress
        self.remembered: dict[str, Any] | None = {} if remember_next_token else None

    def _batches(self, texts: Sequence[str], new_tokens: int = 0) -> Iterator[tuple[Any, list[int], dict[str, Any]]]:
        """(model, indices, tokenized batch) per at most `batch_size` texts, and at most `batch_tokens` padded tokens
        with the `new_tokens` to generate (memory grows with both: a few long texts are a batch of their own),
        longest first (less padding; callers put results back in order), under no_grad in eval mode with the fast
        no-gradient forward (`urpo_kit.models.fast_inference`); the model's mode is restored and progress reported."""
        import torch

        tok = self.tokenizer
        lengths = [len(ids) for ids in tok(list(texts), add_special_tokens=False)["input_ids"]] if texts else []
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        tok.padding_side = "left"
        with self.unwrap() as model, torch.no_grad(), fast_inference(model):
            was_training = model.training
            model.eval()
            try:
                start = 0
                while start < len(order):
                    longest = lengths[order[start]] + new_tokens
                    size = self.batch_size if self.batch_tokens is None else \
                        max(1, min(self.batch_size, self.batch_tokens // max(longest, 1)))
                    idx, start = order[start:start + size], start + size
                    batch = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
                    yield model, idx, {k: v.to(model.device) for k, v in batch.items()}
                    if self.progress:
                        self.progress(len(idx))
            finally:
                model.train(was_training)

    def next_token_logprobs(self, prompts: Sequence[Messages], token_ids: Sequence[Sequence[int]]) -> list[list[float]]:
        """One forward pass per batch, logits of the last position only (`last_token_logits`)."""
        texts = [chat_prompt(self.tokenizer, m) for m in prompts]
        known = self.remembered or {}
        missing = [i for i, t in enumerate(texts) if t not in known]
        if self.progress and len(missing) < len(texts):
            self.progress(len(texts) - len(missing))  # read from the last generation
        read: dict[str, Any] = {}
        for model, idx, batch in self._batches([texts[i] for i in missing]):
            for row, logprobs in zip(idx, last_token_logits(model, batch).float().log_softmax(-1)):
                read[texts[missing[row]]] = logprobs
        return [(read[t] if t in read else known[t])[list(ids)].tolist() for t, ids in zip(texts, token_ids)]

    def generate(self, prompts: Sequence[Messages], sampling: SamplingParams) -> list[str]:
        texts = [chat_prompt(self.tokenizer, m) for m in prompts]
        out: list[str] = [""] * len(texts)
        tok = self.tokenizer
        remember = self.remembered is not None
        if remember:
            self.remembered = {}
        for model, idx, batch in self._batches(texts, sampling.max_new_tokens):
            kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "use_cache": True,
                                      "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id,
                                      "output_logits": remember, "return_dict_in_generate": remember}
            if sampling.temperature > 0:
                kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            generated = model.generate(**batch, **kwargs)
            if remember:  # the first step's raw logits: the next-token distribution after each prompt
                for i, logprobs in zip(idx, generated.logits[0].float().log_softmax(-1)):
                    self.remembered[texts[i]] = logprobs  # type: ignore[index]
                generated = generated.sequences
            completions = generated[:, batch["input_ids"].shape[1]:]
            for i, text in zip(idx, tok.batch_decode(completions, skip_special_tokens=True)):
                out[i] = text.strip()
        return out


_VLLM_NO_LIKELIHOOD = ("verdict: likelihood is not available with {name}: {why}. Use generation.backend: hf (the "
                       "self-referee then reads label probabilities from the training model itself), or "
                       "verdict: sample")


class VLLMServerBackend:
    """Generation through a vLLM server via TRL's client (the server holds the current step's weights)."""

    def __init__(self, client: Any, tokenizer: Any):
        self.client, self.tokenizer = client, tokenizer

    def next_token_logprobs(self, prompts: Sequence[Messages], token_ids: Sequence[Sequence[int]]) -> list[list[float]]:
        raise UrpoError(_VLLM_NO_LIKELIHOOD.format(
            name="generation.backend: vllm_server",
            why="TRL 1.16's vLLM client returns the log-probabilities of sampled tokens only, not of chosen ones"))

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

    def next_token_logprobs(self, prompts: Sequence[Messages], token_ids: Sequence[Sequence[int]]) -> list[list[float]]:
        raise UrpoError(_VLLM_NO_LIKELIHOOD.format(
            name="generation.backend: vllm_colocate",
            why="reading chosen tokens' probabilities through vLLM is not wired up here (untested without a GPU)"))

    def generate(self, prompts: Sequence[Messages], sampling: SamplingParams) -> list[str]:
        if not prompts:
            return []
        from vllm import SamplingParams as VSamplingParams  # optional GPU extra

        params = VSamplingParams(temperature=sampling.temperature, top_p=sampling.top_p,
                                 max_tokens=sampling.max_new_tokens, n=1)
        outputs = self.llm.generate([chat_prompt(self.tokenizer, m) for m in prompts], params, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outputs]
