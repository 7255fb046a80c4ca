"""Test-wide environment: offline, every cache and service home under a temp dir."""

import os
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="genius-tests-"))
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HOME": str(_HOME / "hf"),
    "PREFECT_HOME": str(_HOME / "prefect"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOCAL_STORAGE_PATH": str(_HOME / "prefect" / "storage"),
    "DVC_NO_ANALYTICS": "1",
    "DVC_SITE_CACHE_DIR": str(_HOME / "dvc"),
    "WANDB_MODE": "offline",
    "WANDB_DIR": str(_HOME / "wandb"),
    "WANDB_CACHE_DIR": str(_HOME / "wandb"),
    "WANDB_CONFIG_DIR": str(_HOME / "wandb"),
    "WANDB_DATA_DIR": str(_HOME / "wandb"),
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ[key] = value

ROOT = Path(__file__).resolve().parents[1]

# A seconds-scale variant of the embedded default: same code path, tiny sizes.
TINY = [
    "toy.pretrain_steps=30",
    "toy.hidden_size=32",
    "toy.num_queries=40",
    "toy.num_test=16",
    "queries.per_round=6",
    "sampling.num_foresight_steps=3",
    "sampling.max_rollout_tokens=48",
    "training.batch_size=8",
    "eval.batch_size=16",
]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the project's pipeline files in a temp dir, as cwd."""
    import shutil

    for name in ("params.yaml", "dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "eval", tmp_path / "eval", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(tmp_path)
    return tmp_path
