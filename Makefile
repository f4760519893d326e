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

.PHONY: install demo test quality format bench clean-demo

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The demo: the whole loop on tiny local models: a tiny Mistral-architecture teacher served on 127.0.0.1 writes
# Self-Instruct prompts and dialogues, dSFT under a real 2-process DeepSpeed ZeRO-3 launch (CPU: gloo, fp32),
# a completion pool, a tiny local judge in logprob mode, binarization, dDPO under ZeRO-3, and a run report.
demo: install
	$(PY) scripts/build_tiny_model.py runs/smoke/tiny-model
	$(PY) scripts/run_pipeline.py recipes/smoke/pipeline.yaml
	@echo "tensorboard --logdir runs/smoke/pipeline"

# Debian's Chromium renders the run report in a test; installed once, as the tests need it.
test: install
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	$(PY) -m pytest -q --durations=25 tests

# The quality gate: formatting and lint (pyflakes, pycodestyle, import order) at line length 119.
quality: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) bench/help_latency.py
	$(PY) bench/client_throughput.py
	$(PY) bench/rouge_filter.py
	$(PY) bench/fault_resume.py
	$(PY) bench/bradley_terry.py
	$(PY) bench/merge.py
	$(PY) bench/decontamination.py

clean-demo:
	rm -rf runs/smoke
