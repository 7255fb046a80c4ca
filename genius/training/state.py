"""Resumable training state: saved every `training.save_every` steps, loaded on restart.

A state folder holds what the next step depends on, without pickle:
  trainable.safetensors  the trainable parameters (all weights, or the LoRA adapter)
  optimizer.safetensors  the optimizer's tensors, keyed "<param index>/<name>"
  rng.safetensors        torch's CPU and CUDA generator states
  state.json             step, fingerprint, optimizer hyper-parameters, scheduler, Python RNG,
                         and the metrics of the steps so far
state.json is written last, so a folder without it is incomplete and ignored. A new state is
written beside the old one and swapped in by renames: a kill at any moment leaves one whole
state. The fingerprint (pairs, models, training settings) stops a run from resuming
another run's state. The data order needs no state: it is a function of (seed, epoch).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

VERSION = 1


def save_state(
    folder: Path, step: int, fingerprint: str, model, optimizer, scheduler, history: list[dict] = ()
) -> None:
    """Write the state after `step` optimizer steps (and their metrics rows) into `folder`, atomically."""
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad},
        str(tmp / "trainable.safetensors"),
    )
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in opt["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}/{name}"] = value.contiguous()
            else:
                scalars[f"{index}/{name}"] = value
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng |= {f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    save_file(rng, str(tmp / "rng.safetensors"))
    version, internal, gauss = random.getstate()
    info = {
        "version": VERSION,
        "step": step,
        "fingerprint": fingerprint,
        "optimizer_scalars": scalars,
        "param_groups": opt["param_groups"],
        "scheduler": scheduler.state_dict(),
        "python_random": [version, list(internal), gauss],
        "history": list(history),
    }
    (tmp / "state.json").write_text(json.dumps(info))
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def find_state(folder: Path, fingerprint: str) -> tuple[Path, dict] | None:
    """The newest complete state of this run (the folder, or the old one a kill left), else None."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        meta = candidate / "state.json"
        if meta.exists():
            info = json.loads(meta.read_text())
            if info.get("version") == VERSION and info.get("fingerprint") == fingerprint:
                return candidate, info
    return None


def load_state(found: tuple[Path, dict], model, optimizer, scheduler) -> int:
    """Restore model, optimizer, scheduler and RNG from `find_state`'s result; return the step."""
    folder, info = found
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in load_file(str(folder / "trainable.safetensors")).items():
            params[name].copy_(value)
    state: dict[int, dict] = {}
    for key, value in load_file(str(folder / "optimizer.safetensors")).items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in info["optimizer_scalars"].items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [g | {"betas": tuple(g["betas"])} if "betas" in g else g for g in info["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scheduler.load_state_dict(info["scheduler"])
    rng = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all([rng[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in rng])
    version, internal, gauss = info["python_random"]
    random.setstate((version, tuple(internal), gauss))
    return info["step"]
