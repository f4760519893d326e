# Two entry points set up a fresh machine on their own: `make demo` and `make test`.
# Both create .venv (torch 2.13.0 first, then the pinned requirements) once; reruns reuse it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ACCEL_CPU := recipes/accelerate/zero3_cpu.yaml
# DeepSpeed compiles its CPU communication op once; keep it with the checkout so every launch reuses it.
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test bench clean-demo

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The demo: build a tiny Mistral-architecture model and small local datasets, then dSFT and dDPO it
# under a real 2-process DeepSpeed ZeRO-3 launch (CPU: gloo, fp32).
demo: install
	$(PY) scripts/build_smoke_data.py runs/smoke/data
	$(PY) scripts/build_tiny_model.py runs/smoke/tiny-model
	$(VENV)/bin/accelerate launch --config_file $(ACCEL_CPU) scripts/run_sft.py recipes/smoke/sft.yaml
	$(VENV)/bin/accelerate launch --config_file $(ACCEL_CPU) scripts/run_dpo.py recipes/smoke/dpo.yaml
	@echo
	@echo "datasets:  runs/smoke/data/sft, runs/smoke/data/prefs"
	@echo "dSFT model: runs/smoke/sft   (model card: runs/smoke/sft/README.md)"
	@echo "dDPO model: runs/smoke/dpo   (model card: runs/smoke/dpo/README.md)"
	@echo "tensorboard --logdir runs/smoke"

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) bench/help_latency.py
	$(PY) bench/client_throughput.py
	$(PY) bench/rouge_filter.py

clean-demo:
	rm -rf runs/smoke
