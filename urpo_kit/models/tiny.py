"""A tiny random-weight chat model built in code: for tests and smoke runs that must not need any download.

It mirrors the bundled SmolLM2 where code could notice: a Llama architecture with grouped-query attention and
tied embeddings, a ChatML chat template, `<|im_start|>` = 1 as bos and `<|im_end|>` = 2 as eos and pad.
The tokenizer is character-level over printable ASCII plus tab and newline (anything else becomes `<unk>`),
so any ASCII text round-trips exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: importing transformers' Llama takes seconds
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

PREFIX = "tiny:"
NAMES = ("llama",)

SPECIAL_TOKENS = ("<unk>", "<|im_start|>", "<|im_end|>")
CHARACTERS = "\t\n" + "".join(chr(c) for c in range(32, 127))

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

MAX_LENGTH = 4096  # characters are tokens here: leave room for long prompts plus completions


def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """A character-level ChatML tokenizer (100 tokens), left-padded for batched generation."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + tuple(CHARACTERS))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one token per character
    backend.decoder = decoders.Fuse()  # join characters back without spaces
    backend.add_special_tokens(list(SPECIAL_TOKENS))  # matched whole, before the per-character split
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        padding_side="left",
        chat_template=CHATML_TEMPLATE,
        model_max_length=MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )


def tiny_config(vocab_size: int) -> LlamaConfig:
    """Hidden 32, 2 layers, 4 query heads sharing 2 key/value heads: about 22k parameters.

    Weights are drawn 10x wider than Llama's default so that outputs depend on the whole context (at 0.02 the
    model only echoes its last token, which would hide padding bugs) while sampling stays diverse.
    """
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_LENGTH,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        initializer_range=0.2,
    )


def tiny_model(vocab_size: int | None = None, seed: int = 0) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """A random-weight LlamaForCausalLM and its tokenizer; the same seed gives the same weights.

    `vocab_size` may exceed the tokenizer's 100 tokens (the extra embedding rows are never produced by the
    tokenizer), e.g. to test code that handles padded vocabularies. The global RNG is left untouched.
    """
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    size = len(tokenizer) if vocab_size is None else vocab_size
    if size < len(tokenizer):
        raise ValueError(f"vocab_size {size} is smaller than the tiny tokenizer's {len(tokenizer)} tokens")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(tiny_config(size))
    model.eval()
    return model, tokenizer


def tiny_fingerprint(seed: int = 0) -> str:
    """A short hash of what a tiny folder would contain, so a cached folder goes stale when this code changes."""
    import torch
    import transformers

    tokenizer = tiny_tokenizer()
    config = tiny_config(len(tokenizer)).to_dict()
    backend = tokenizer.backend_tokenizer.to_str()
    text = json.dumps([config, backend, CHATML_TEMPLATE, seed, torch.__version__, transformers.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def tiny_model_folder(path: str | Path, *, vocab_size: int | None = None, seed: int = 0) -> Path:
    """Write a tiny model and tokenizer to `path` with save_pretrained, for code that loads from a folder."""
    path = Path(path)
    model, tokenizer = tiny_model(vocab_size=vocab_size, seed=seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
