#!/usr/bin/env bash
# GPU smoke check for the device machine (an H200 lent for a few minutes; see README "GPU check").
# Wheels for what that image lacks (trl, datasets, pydantic, math-verify) travel in .whl/ (ignored by git);
# the image brings torch, transformers, accelerate, peft. vLLM is not there and cannot travel (wheel > 64 MiB).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 URPO_KIT_CACHE=/tmp/urpo-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, trl, peft, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)"
# 1) the trainer's and referee's unit tests with CUDA visible (models land on the GPU, bf16 where auto)
timeout 240 python3 -m pytest -q -x -p no:cacheprovider tests/test_referee.py tests/test_referee_likelihood.py tests/test_train.py \
  tests/test_train_trl_contract.py tests/test_models.py tests/test_train_label_draws.py tests/test_train_optim.py \
  -k 'not bundled' 2>&1 | tail -15
# 2) one short training run of the quickstart mix on the GPU with the tiny model (bundled weights cannot travel)
timeout 180 python3 -m urpo_kit train recipes/quickstart.yaml --set model.name=tiny:llama --set model.dtype=auto \
  --set model.lora=null --set grpo.steps=4 --set 'eval.suites=[]' --set output_dir=$OUT/gpu-run 2>&1 | tail -25
python3 - <<'PY'
import json, os
path = os.path.join(os.environ["OUT"], "gpu-run", "metrics.jsonl")
rows = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
print("metrics rows:", len(rows)); print(json.dumps(rows[-1], indent=0)[:1500] if rows else "none")
PY
# 3) likelihood verdicts on the GPU: one forward pass per order, probabilities per response (tiny model)
python3 - <<'PY'
import json, os, subprocess
rows = [{"prompt": "Pick the larger number.", "chosen": f"{9 + i}", "rejected": f"{i}"} for i in range(8)]
path = os.path.join(os.environ["OUT"], "pairs.jsonl")
open(path, "w").write("".join(json.dumps(r) + "\n" for r in rows))
out = os.path.join(os.environ["OUT"], "judged.jsonl")
subprocess.run(["python3", "-m", "urpo_kit", "judge", "--model", "tiny:llama", "--input", path, "--output", out,
                "--mode", "pairwise", "--verdict", "likelihood", "--debias", "both_orders"], timeout=120)
print(open(out).readline()[:600] if os.path.exists(out) else "no output")
PY
# 4) the fast no-gradient LoRA forward on the GPU (bfloat16 base, float32 adapters as PEFT makes them): its logits
#    against PEFT's, and the time of one judging-sized forward pass each way
python3 - <<'PY'
import time, torch
from peft import LoraConfig, get_peft_model
from urpo_kit.models import fast_inference, tiny_model
model = get_peft_model(tiny_model()[0].to("cuda", torch.bfloat16), LoraConfig(r=16, target_modules="all-linear"))
for name, p in model.named_parameters():
    if "lora_B" in name:
        p.data.normal_(0, 0.02)
ids = torch.randint(0, 100, (16, 580), device="cuda")
def timed(label):
    with torch.no_grad():
        model(input_ids=ids, logits_to_keep=1); torch.cuda.synchronize(); t = time.perf_counter()
        out = model(input_ids=ids, logits_to_keep=1).logits.float(); torch.cuda.synchronize()
    print(label, f"{(time.perf_counter() - t) * 1000:.1f} ms"); return out
peft_logits = timed("peft")
with fast_inference(model):
    fast_logits = timed("fast_inference")
print("max |fast - peft| logit:", (fast_logits - peft_logits).abs().max().item())
PY
