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
  tests/test_train_trl_contract.py 2>&1 | tail -15
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
