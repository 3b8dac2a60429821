"""Turn a recipe's `model:` section into a model, a tokenizer, or the arguments a trainer needs to load them.

Names are resolved in one place so that every consumer (trainer, referee, eval, judge) agrees on what
`bundled:...`, `tiny:...`, a folder or a hub id means.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from urpo_kit.config.schema import ModelSpec
from urpo_kit.errors import UrpoError
import urpo_kit.models.bundled as bundled
import urpo_kit.models.tiny as tiny
from urpo_kit.models.cache import build_once, cache_dir

if TYPE_CHECKING:  # torch, transformers and peft are imported where used: they take seconds to import
    import torch
    from peft import LoraConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _tiny_name(name: str, revision: str | None = None) -> str:
    if revision is not None:
        raise UrpoError(f"model.revision applies to hub ids only, not to {name}")
    arch = name.removeprefix(tiny.PREFIX)
    if arch not in tiny.NAMES:
        raise UrpoError(f"unknown tiny model {name}; known: {', '.join(tiny.PREFIX + n for n in tiny.NAMES)}")
    return arch


def _looks_like_path(name: str) -> bool:
    """A hub id is `name` or `owner/name`; anything else that names no folder is a missing folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def check_model_name(name: str, revision: str | None = None) -> None:
    """The checks of a model name that need no network and build nothing: a known `bundled:` or `tiny:` name, an
    existing folder, or the form of a hub id (`name` or `owner/name`); `revision` only with a hub id."""
    local = name.startswith((bundled.PREFIX, tiny.PREFIX)) or Path(name).expanduser().is_dir()
    if revision is not None and local:
        raise UrpoError(f"model.revision applies to hub ids only, not to {name}")
    if name.startswith(bundled.PREFIX):
        bundled.entry(name.removeprefix(bundled.PREFIX))
    elif name.startswith(tiny.PREFIX):
        _tiny_name(name)
    elif not local and _looks_like_path(name):
        raise UrpoError(f"model folder {name} does not exist (not a hub id either)")


def resolve_model_path(name: str, revision: str | None = None) -> str:
    """What `from_pretrained` should be given for `name`: a folder for bundled, tiny and local models, else the hub id.

    `bundled:NAME` converts the shipped GGUF once into the cache; `tiny:llama` writes its random weights once
    into the cache (for code that only takes a path, such as TRL given a string or lm-eval).
    `revision` applies to hub ids only: with anything else it is an error rather than silently ignored.
    """
    check_model_name(name, revision)
    if name.startswith(bundled.PREFIX):
        return str(bundled.bundled_folder(name.removeprefix(bundled.PREFIX)))
    if name.startswith(tiny.PREFIX):
        arch = _tiny_name(name)
        folder = cache_dir() / "models" / f"tiny-{arch}-{tiny.tiny_fingerprint()}"
        return str(build_once(folder, tiny.tiny_model_folder))
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    return name


def resolve_dtype(dtype: str, device: str | torch.device | None = None) -> torch.dtype:
    """`auto` means bfloat16 where the model will run on a CUDA GPU that supports it, else float32.

    With no `device`, the model is assumed to go to the GPU if there is one (where trainers put it).
    Explicit dtypes are honoured everywhere: bfloat16 on CPU works and is ~1.5x faster than float32 there.
    """
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _as_spec(spec: ModelSpec | str) -> ModelSpec:
    return ModelSpec(name=spec) if isinstance(spec, str) else spec


def _hub_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """`revision` and `trust_remote_code` for from_pretrained; revision only where it means something."""
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if spec.revision is not None:
        kwargs["revision"] = spec.revision
    return kwargs


def _load_error(spec: ModelSpec, error: Exception) -> UrpoError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return UrpoError(
        f"cannot load model {spec.name}: {first} (offline? use bundled:smollm2-135m-instruct or a local folder)"
    )


def load_tokenizer(spec: ModelSpec | str) -> PreTrainedTokenizerBase:
    """The model's tokenizer, left-padded (batched generation) and with a pad token (eos when it has none)."""
    from transformers import AutoTokenizer

    spec = _as_spec(spec)
    if spec.name.startswith(tiny.PREFIX):
        _tiny_name(spec.name, spec.revision)
        tokenizer = tiny.tiny_tokenizer()
    else:
        path = resolve_model_path(spec.name, spec.revision)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, **_hub_kwargs(spec))
        except OSError as error:
            raise _load_error(spec, error) from error
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UrpoError(f"the tokenizer of {spec.name} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def peft_config(spec: ModelSpec) -> LoraConfig | None:
    """The LoRA configuration for `spec.lora` (None: full fine-tuning); `all-linear` leaves the lm_head out."""
    if spec.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=spec.lora.r,
        lora_alpha=spec.lora.alpha,
        lora_dropout=spec.lora.dropout,
        target_modules=spec.lora.target_modules,
        task_type="CAUSAL_LM",
    )


def model_init_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """`GRPOConfig.model_init_kwargs` for a trainer given `resolve_model_path(spec.name, spec.revision)`.

    The dtype is a string so that the trainer config stays JSON-serialisable (TRL converts it); TRL itself
    defaults to float32 when no dtype is given. Gradient checkpointing and LoRA are not loading arguments:
    set `gradient_checkpointing` on the trainer config and pass `peft_config(spec)` to the trainer.
    """
    return {"dtype": str(resolve_dtype(spec.dtype)).removeprefix("torch."), **_hub_kwargs(spec)}


def load_model(
    spec: ModelSpec | str, *, device: str | torch.device | None = None, for_training: bool = False
) -> PreTrainedModel:
    """Load the model in the recipe's dtype, on `device` (None: left on CPU for the trainer to place).

    With `for_training`, the model is put in train mode with gradient checkpointing and LoRA adapters as the
    spec asks. Without it, the model is in eval mode and `spec.lora` is ignored: fresh adapters are the
    identity, and a trained adapter folder given as `name` is loaded by transformers itself.
    """
    spec = _as_spec(spec)
    dtype = resolve_dtype(spec.dtype, device)
    if spec.name.startswith(tiny.PREFIX):
        _tiny_name(spec.name, spec.revision)
        model = tiny.tiny_model()[0].to(dtype)
    else:
        from transformers import AutoModelForCausalLM

        path = resolve_model_path(spec.name, spec.revision)
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **_hub_kwargs(spec))
        except OSError as error:
            raise _load_error(spec, error) from error
    if model.generation_config.pad_token_id is None and model.generation_config.eos_token_id is not None:
        eos = model.generation_config.eos_token_id
        model.generation_config.pad_token_id = eos[0] if isinstance(eos, list) else eos  # as load_tokenizer does
    if device is not None:
        model.to(device)
    if not for_training:
        return model.eval()
    if spec.gradient_checkpointing:
        # transformers 5.24 renamed it (the old name warns); earlier 5.x releases only have the old name
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable({"use_reentrant": False})
        model.config.use_cache = False  # the cache is useless with checkpointing and transformers warns about it
    if spec.lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config(spec))
    return model.train()
