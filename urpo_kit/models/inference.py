"""Forward passes without gradients (generation, judging, held-out evaluation), made cheap on a CPU.

Two costs that a frozen, LoRA-adapted model pays there and a plain one does not:

- **LoRA layers.** PEFT's LoRA layer, with the adapters in float32 beside a bfloat16 base (its default, for training
  stability), casts every layer's input to float32, runs the two small products, scales, adds and casts the result
  back; on a CPU that costs about twice the base model's own products. Here each vanilla LoRA linear layer computes,
  in the base layer's dtype, `x (W + s B A)^T` with the sum built for the call when the input has more rows than the
  layer has inputs and outputs together (a prefill), else `base(x) + (x A^T)(s B)^T` with the second product fused
  into the addition. `A` and `s B` are cast once when the context opens; the base weights are never changed (nothing
  is merged in place), so a bfloat16 base loses nothing; the adapters are read in the base dtype, as a GPU's
  autocast reads them.
- **The LM head's input.** transformers reads the last position's logits from a slice of the hidden states
  (`logits_to_keep`), which is not contiguous for a batch. For a weight that needs no gradient, torch's CPU `matmul`
  then broadcasts the head's weight over the batch and copies it once per row: 16 prompts, 49k-token vocabulary,
  1.2 s for a product that takes 10 ms on a contiguous input. The head gets its input made contiguous.

Measured on SmolLM2-135M with LoRA r16 (bfloat16, 16 referee prompts of ~580 tokens, one forward pass, 2 idle cores):
10.7-12 s through PEFT, 3.4-3.9 s here, 3.7-3.8 s for the same model without adapters.

Anything else falls through to PEFT unchanged: a pass that records gradients (the training loss), disabled or merged
adapters, per-request adapter names, LoRA variants (DoRA), adapter biases, dropout while training, and sharded weights
(ZeRO-3, FSDP2).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

_MISSING = object()
_OPEN: weakref.WeakSet[Any] = weakref.WeakSet()  # models inside fast_inference now


def _low_rank(module: Any) -> tuple[Any, Any, bool] | None:
    """(A, (s B)^T, needs dropout check) for the module's active adapters stacked along the rank, or None when some
    active adapter is not plain LoRA or the weights are sharded."""
    import torch

    adapters = [a for a in module.active_adapters if a in module.lora_A]
    if not adapters or any(a in module.lora_variant or module.lora_bias.get(a, False) for a in adapters):
        return None
    weight = module.get_base_layer().weight
    if any(type(w.data) is not torch.Tensor or hasattr(w, "ds_id")
           for w in (weight, *(module.lora_A[n].weight for n in adapters))):
        return None  # sharded (FSDP2 DTensor, DeepSpeed ZeRO-3): PEFT's own forward gathers what it needs
    dtype = weight.dtype
    a = torch.cat([module.lora_A[n].weight for n in adapters]).to(dtype)
    b_t = torch.cat([module.lora_B[n].weight * module.scaling[n] for n in adapters], dim=1).t().contiguous().to(dtype)
    dropout = any(not isinstance(module.lora_dropout[n], torch.nn.Identity) for n in adapters)
    return a, b_t, dropout


def _fast_forward(module: Any, peft_forward: Callable[..., Any], a: Any, b_t: Any, dropout: bool) -> Callable[..., Any]:
    import torch

    base = module.get_base_layer()
    mergeable = type(base) is torch.nn.Linear

    def forward(x: Any, *args: Any, **kwargs: Any) -> Any:
        if (torch.is_grad_enabled() or args or kwargs or module.disable_adapters or module.merged
                or (dropout and module.training) or x.dtype != a.dtype):
            return peft_forward(x, *args, **kwargs)
        if mergeable and (x.numel() // x.shape[-1]) * sum(base.weight.shape) > base.weight.numel():
            return torch.nn.functional.linear(x, torch.addmm(base.weight, b_t.t(), a), base.bias)
        result = base(x)
        result.view(-1, result.shape[-1]).addmm_(torch.nn.functional.linear(x.reshape(-1, x.shape[-1]), a), b_t)
        return result

    return forward


def _contiguous_input(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    first = args[0] if args else None
    if first is None or not hasattr(first, "is_contiguous") or first.is_contiguous():
        return None
    return (first.contiguous(), *args[1:])


def _lora_linear() -> Any:
    """PEFT's LoRA linear layer class, or an empty tuple (matching nothing) without peft."""
    try:
        from peft.tuners.lora import Linear
    except ImportError:
        return ()
    return Linear


@contextlib.contextmanager
def fast_inference(model: Any) -> Iterator[None]:
    """For the duration, the model's LoRA linear layers run the fast no-gradient forward and its LM head reads a
    contiguous input (module docstring); other models only get the latter. Open it after any precision change (the
    adapters are cast on entry). Nested use (a backend's batches inside an evaluation) is the outer one's."""
    if model in _OPEN:
        yield
        return
    _OPEN.add(model)
    patched: list[tuple[Any, Any]] = []
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    hook = head.register_forward_pre_hook(_contiguous_input) if head is not None else None
    lora_linear = _lora_linear()
    try:
        for module in model.modules():
            if isinstance(module, lora_linear) and (low_rank := _low_rank(module)) is not None:
                patched.append((module, module.__dict__.get("forward", _MISSING)))
                module.forward = _fast_forward(module, module.forward, *low_rank)
        yield
    finally:
        if hook is not None:
            hook.remove()
        _OPEN.discard(model)
        for module, own in patched:
            if own is _MISSING:
                del module.forward
            else:
                module.forward = own


def fast_generate(model: Any) -> None:
    """Make `model.generate` run under `fast_inference` (TRL's trainer calls it on the unwrapped policy for every
    transformers generation)."""
    plain = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        with fast_inference(model):
            return plain(*args, **kwargs)

    model.generate = generate


def last_token_logits(model: Any, batch: dict[str, Any]) -> Any:
    """Logits at the last position of a left-padded batch (one forward pass, no cache): position ids count from each
    row's first real token, so a padded prompt reads as it would alone, as generation reads it."""
    positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return model(**batch, position_ids=positions, logits_to_keep=1, use_cache=False).logits[:, -1, :]
