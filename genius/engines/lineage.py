"""A LoRA round's checkpoint, and the chain of rounds its policy is made of.

A LoRA round saves its adapter only (peft's `adapter_model.safetensors` and
`adapter_config.json`, a few MB) and a lineage file, `genius_lineage.json`, naming the
policy it trained on top of (its parent: the base model or an earlier round's checkpoint)
with that parent's content hash, and the base (the full model the chain starts from) with
its hash. The policy of round k is the base plus the adapters of the rounds on its lineage,
applied in order, since each adapter was trained on top of the previous ones merged.

`resolve_chain` walks the parents back to the base and checks every hash: a base or an
adapter that changed since a round trained on it is refused with one line, never silently
used (the round would be another model). Each lineage file holds its parent's hash, so a
checkpoint's own hash covers its whole chain, base included: DVC, which hashes the parent
folder a stage depends on, sees any change up the chain once that chain is retrained.

Paths are as the round registry writes them: relative to the project, where every stage runs.
An adapter without a lineage file (one saved by peft elsewhere) is taken as one link on the
base its `adapter_config.json` names, unchecked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

LINEAGE = "genius_lineage.json"
ADAPTER = "adapter_config.json"
METRICS = "genius_training.json"  # written beside a round's checkpoint by genius/training/recipe.py
FORMAT = 1


class LineageError(FileNotFoundError):
    """A LoRA checkpoint whose chain cannot be loaded as it was trained; the message is one line."""


@dataclass(frozen=True)
class Chain:
    """A policy as loadable parts: a full model, then adapters to merge on it, oldest first."""

    base: str
    adapters: tuple[str, ...] = ()


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER).is_file()


def read_lineage(path: str | Path) -> dict | None:
    file = Path(path) / LINEAGE
    if not file.is_file():
        return None
    try:
        record = json.loads(file.read_text())
        record["parent"], record["parent_sha256"], record["base"], record["base_sha256"]  # noqa: B018 (the keys exist)
    except (ValueError, KeyError, TypeError) as e:
        raise LineageError(f"{file} is not a lineage file of genius ({type(e).__name__}: {e})") from None
    return record


_hashes: dict[tuple, str] = {}  # this process's folder hashes, keyed by every file's (name, size, mtime, inode)


def folder_hash(path: str | Path) -> str:
    """sha256 of a model or adapter folder: every top-level file, by name, but hidden ones, *.md
    and the training metrics (genius_training.json, with its timings).

    Everything transformers and peft read lies at the top level; a README may change freely.
    Reading costs about a second per GB; a folder whose files' size, mtime and inode are
    unchanged is not read again in this process (stages load a policy more than once).
    """
    folder = Path(path)
    skip = lambda f: f.name.startswith(".") or f.suffix == ".md" or f.name == METRICS  # noqa: E731
    files = sorted(f for f in folder.iterdir() if f.is_file() and not skip(f))
    key = (str(folder.resolve()), *((f.name, s.st_size, s.st_mtime_ns, s.st_ino) for f in files for s in [f.stat()]))
    if key not in _hashes:
        digest = hashlib.sha256()
        for f in files:
            digest.update(f"{f.name}\0{f.stat().st_size}\0".encode())
            with open(f, "rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
        _hashes[key] = digest.hexdigest()
    return _hashes[key]


def resolve_chain(path: str) -> Chain:
    """The base and the adapters that make up the policy at `path`, every recorded hash checked.

    A full model folder (or a hub name) is a chain of its own, and nothing is hashed.
    """
    links: list[tuple[str, dict | None]] = []
    current = path
    while is_adapter(current):
        record = read_lineage(current)
        links.append((current, record))
        if record is None:  # a foreign peft adapter: its config names the base
            current = _named_base(current)
            break
        parent = record["parent"]
        if not Path(parent).exists():
            raise LineageError(
                f"model {path}: {current} was trained on {parent}, which does not exist: a LoRA round is its base plus "
                "every adapter of its chain (genius gc keeps them; restore it from the DVC remote with `dvc pull`)"
            )
        if len(links) > 10_000:
            raise LineageError(f"model {path}: its lineage files form a cycle through {current}")
        current = parent
    links.reverse()
    _check_hashes(path, current, links)
    return Chain(current, tuple(adapter for adapter, _ in links))


def _named_base(adapter: str) -> str:
    base = json.loads((Path(adapter) / ADAPTER).read_text()).get("base_model_name_or_path")
    if not base:
        raise LineageError(f"{Path(adapter) / ADAPTER} names no base_model_name_or_path: cannot tell which model the adapter is for")
    return base


def _check_hashes(path: str, base: str, links: list[tuple[str, dict | None]]) -> None:
    """The base, and each link's parent, hash as they did when the link was trained (a foreign adapter: unchecked)."""
    if not Path(base).is_dir() or not any(record for _, record in links):  # a hub name, a missing base (check_model says)
        return
    now = folder_hash(base)
    for i, (adapter, record) in enumerate(links):
        if record is None:
            continue
        if record["base_sha256"] != now:
            raise LineageError(
                f"model {path}: its base {base} changed since {adapter} was trained on it (sha256 "
                f"{str(record['base_sha256'])[:12]} then, {now[:12]} now): a LoRA round is never loaded on another base; "
                "put the original back, or start a new lineage"
            )
        parent = links[i - 1][0] if i else None
        if parent and record["parent_sha256"] != folder_hash(parent):
            raise LineageError(
                f"model {path}: {parent} changed since {adapter} was trained on it (sha256 "
                f"{str(record['parent_sha256'])[:12]} then, {folder_hash(parent)[:12]} now): retrain the rounds after it "
                "(dvc repro), or put it back (dvc checkout)"
            )


def lineage_record(parent: str) -> dict:
    """The lineage file of an adapter about to be trained on `parent` (checked by `resolve_chain` first)."""
    chain = resolve_chain(parent)
    local = Path(chain.base).is_dir()
    base_sha = folder_hash(chain.base) if local else None
    parent_sha = (folder_hash(parent) if Path(parent).is_dir() else None) if chain.adapters else base_sha
    return {"format": FORMAT, "parent": parent, "parent_sha256": parent_sha, "base": chain.base, "base_sha256": base_sha}


def write_lineage(folder: str | Path, record: dict) -> None:
    """Write the lineage file, and point peft's `base_model_name_or_path` at the parent: applied on
    the bare base by a tool that knows no lineage, a later round's adapter would be another model."""
    folder = Path(folder)
    (folder / LINEAGE).write_text(json.dumps(record, indent=2) + "\n")
    config = json.loads((folder / ADAPTER).read_text())
    (folder / ADAPTER).write_text(json.dumps(config | {"base_model_name_or_path": record["parent"]}, indent=2) + "\n")


def read_adapter(path: str) -> tuple[int, float, dict[str, tuple]]:
    """(rank r, scale s, {module name: (A, B)}) of a plain LoRA adapter, whose delta on a module's
    weight is s B A (A: r x in, B: out x r; s = lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA).

    Module names are the model's own (`model.layers.0.self_attn.q_proj`), peft's prefix removed.
    """
    import math

    from safetensors.torch import load_file

    config = json.loads((Path(path) / ADAPTER).read_text())
    unsupported = [k for k in ("use_dora", "fan_in_fan_out", "rank_pattern", "alpha_pattern", "modules_to_save") if config.get(k)]
    weights = load_file(str(Path(path) / "adapter_model.safetensors"))
    unsupported += [k for k in weights if not k.endswith((".lora_A.weight", ".lora_B.weight"))][:1]
    if unsupported:
        raise LineageError(f"{path}: {unsupported[0]} is set: only plain LoRA on linear layers is merged and stacked here")
    r = int(config["r"])
    scale = config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)
    names = [k.removesuffix(".lora_A.weight") for k in weights if k.endswith(".lora_A.weight")]
    modules = {n.removeprefix("base_model.model."): (weights[f"{n}.lora_A.weight"], weights[f"{n}.lora_B.weight"]) for n in names}
    wrong = [n for n, (a, b) in modules.items() if a.shape[0] != r or b.shape[1] != r]
    if wrong:
        raise LineageError(f"{path}: {wrong[0]}'s A and B do not have the rank r = {r} its config says")
    return r, scale, modules


def merge_adapters(model, adapters: tuple[str, ...]):
    """`model` with each adapter's delta s B A added to its weights in turn, in float32, on the
    model's device: W <- W + s B A is what peft's forward computes, W x + s B (A x), regrouped."""
    import torch

    with torch.no_grad():
        for adapter in adapters:
            _, scale, modules = read_adapter(adapter)
            for name, (a, b) in modules.items():
                weight = model.get_submodule(name).weight
                delta = (b.to(weight.device, torch.float32) @ a.to(weight.device, torch.float32)) * scale
                weight.copy_((weight.float() + delta).to(weight.dtype))
    return model


def chain_paths(path: str) -> list[str]:
    """Every folder the policy at `path` is read from: its base (when local) and its adapters."""
    chain = resolve_chain(path)
    return [p for p in (chain.base, *chain.adapters) if Path(p).exists()]


def stack_adapters(adapters: tuple[str, ...], out: str | Path) -> int:
    """Write to `out` one LoRA whose delta is the sum of `adapters`' deltas; returns its rank.

    Adapter i adds s_i B_i A_i to a weight W (A_i: r_i x in, B_i: out x r_i; s_i = alpha_i / r_i,
    alpha_i / sqrt(r_i) with rsLoRA). The sum over i is B A with A = [A_1; ...; A_k] (rows
    stacked) and B = [s_1 B_1, ..., s_k B_k] (columns side by side): a LoRA of rank
    R = r_1 + ... + r_k at scale 1, written as lora_alpha = r = R. A module an adapter leaves
    alone gets zero blocks. An engine that serves one adapter serves a whole chain this way.
    """
    import torch
    from safetensors.torch import save_file

    blocks = [read_adapter(adapter) for adapter in adapters]
    rank = sum(r for r, _, _ in blocks)
    tensors = {}
    for module in sorted(set().union(*(mods for _, _, mods in blocks))):
        a_any, b_any = next(mods[module] for _, _, mods in blocks if module in mods)
        a_parts, b_parts = [], []
        for r, scale, mods in blocks:
            a, b = mods.get(module, (torch.zeros(r, a_any.shape[1]), torch.zeros(b_any.shape[0], r)))
            a_parts.append(a.float())
            b_parts.append(b.float() * scale)
        tensors[f"base_model.model.{module}.lora_A.weight"] = torch.cat(a_parts, 0).to(a_any.dtype).contiguous()
        tensors[f"base_model.model.{module}.lora_B.weight"] = torch.cat(b_parts, 1).to(b_any.dtype).contiguous()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    targets = sorted({k.removesuffix(".lora_A.weight").rsplit(".", 1)[-1] for k in tensors if k.endswith(".lora_A.weight")})
    config = json.loads((Path(adapters[0]) / ADAPTER).read_text()) | {
        "r": rank, "lora_alpha": rank, "use_rslora": False, "target_modules": targets, "lora_dropout": 0.0,
        "rank_pattern": {}, "alpha_pattern": {},
    }  # fmt: skip
    (out / ADAPTER).write_text(json.dumps(config, indent=2) + "\n")
    return rank
