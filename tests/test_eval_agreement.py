"""Agreement with lm-eval itself (bundled SmolLM2, real GSM8K rows): `urpo-kit eval` and `lm_eval.simple_evaluate`
on the task folder it exports give the same score and the same generations. Kept short: 20 rows, 32 new tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from lm_eval_agreement import lm_eval_agreement

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"

pytestmark = pytest.mark.slow


@pytest.fixture
def one_thread():
    """Greedy generation is the same on any thread count; one thread keeps this test from thrashing (10x slower
    measured) when other processes share the 2 cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(not GSM8K.is_file(), reason="../shared/data/gsm8k is not here")
def test_exported_gsm8k_scores_the_same_as_lm_eval_directly(tmp_path: Path, one_thread: None) -> None:
    from urpo_kit.models import load_model, load_tokenizer

    name = "bundled:smollm2-135m-instruct"
    model, tokenizer = load_model(name), load_tokenizer(name)
    result = lm_eval_agreement(ROOT / "tasks" / "gsm8k.yaml", {"source": {"path": str(GSM8K)}}, model, tokenizer,
                               tmp_path, limit=20, max_new_tokens=32, batch_size=20)
    assert result.same_samples
    assert result.ours == result.direct
