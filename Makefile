# Two commands: `make run` (set up, then self-train the embedded default) and `make test`.
# Everything installs into .venv from this project's own files; nothing is fetched from a hub.

PYTHON ?= python3
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

test: $(VENV)/.installed  ## run the test suite
	$(PY) -m pytest -q

serve: $(VENV)/.installed  ## a local Prefect server + deployment genius/iterate on a nightly cron
	$(PY) -m flows.serve

replicate: $(VENV)/.installed  ## Genius vs base and ablations, 3 seeds -> docs/RESULTS.md (~20-60 min on 2 cores)
	$(PY) -m flows.replicate

repro: $(VENV)/.installed  ## the same pipeline through DVC
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro  # stages call this venv's `genius`

install: $(VENV)/.installed

# torch first, pinned, so pip takes the local CPU wheel instead of a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

clean:  ## remove run outputs (not the venv)
	rm -rf runs .prefect
