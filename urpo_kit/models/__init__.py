"""Model and tokenizer loading: hub ids, local folders, the bundled SmolLM2 (`bundled:smollm2-135m-instruct`),
tiny random models for tests (`tiny:llama`), dtypes, gradient checkpointing and LoRA (and its fast no-gradient
forward)."""

from urpo_kit.models.bundled import BUNDLED, bundled_folder, gguf_path, load_gguf
from urpo_kit.models.cache import build_once, cache_dir
from urpo_kit.models.loading import (
    check_model_name,
    load_model,
    load_tokenizer,
    model_init_kwargs,
    peft_config,
    resolve_dtype,
    resolve_model_path,
)
from urpo_kit.models.inference import fast_generate, fast_inference, last_token_logits
from urpo_kit.models.tiny import tiny_model, tiny_model_folder, tiny_tokenizer

__all__ = [
    "BUNDLED",
    "build_once",
    "bundled_folder",
    "cache_dir",
    "check_model_name",
    "fast_inference",
    "fast_generate",
    "gguf_path",
    "last_token_logits",
    "load_gguf",
    "load_model",
    "load_tokenizer",
    "model_init_kwargs",
    "peft_config",
    "resolve_dtype",
    "resolve_model_path",
    "tiny_model",
    "tiny_model_folder",
    "tiny_tokenizer",
]
