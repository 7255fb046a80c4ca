"""Reference log-probs: computed once per round, kept beside the pairs, reused while valid.

The file `reference_logps.safetensors` (no pickle) holds a (P, 2) float32 tensor of
log pi_ref(chosen), log pi_ref(rejected) per pair, and a key in its metadata. The key hashes
what the numbers depend on: the token ids of every pair (so the pairs' text, the tokenizer
and the chat template at once), the reference model's weights and config, and the precision
the forward ran in. A run whose key matches reuses the file and holds no reference model;
any other run recomputes and overwrites it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from genius.engines.lineage import folder_hash
from genius.engines.loading import load_model
from genius.io import stable_hash, write_atomic
from genius.training.batches import Example, collate_pairs, pair_logps, pair_width
from genius.training.objective import NEEDS_REFERENCE
from genius.training.policy import adapters_off


def tokens_fingerprint(examples: list[Example]) -> str:
    return stable_hash(examples)


def model_fingerprint(path: str) -> str:
    """sha256 of a local model folder's files (`folder_hash`); a hub name stands for itself.

    A LoRA round's folder holds its lineage file, which holds its parent's hash: its hash
    covers the whole chain. Reading the weights costs seconds per GB, against minutes for a
    reference pass.
    """
    return folder_hash(path) if Path(path).is_dir() else f"hub:{path}"


def reference_key(tokens_fp: str, model_fp: str, dtype: str, precision: str) -> tuple[str, dict]:
    """The cache key from `tokens_fingerprint`, `model_fingerprint` and the forward's precision, and its parts."""
    parts = {"tokens": tokens_fp, "model": model_fp, "dtype": dtype, "precision": precision}
    return stable_hash(parts), parts


def load_reference(path: Path, key: str) -> torch.Tensor | None:
    """The cached (P, 2) log-probs when `path` holds them under `key`, else None."""
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("key") != key:
            return None
        return f.get_tensor("logps")


def save_reference(path: Path, key: str, logps: torch.Tensor, info: dict) -> None:
    tensors, metadata = {"logps": logps.float().contiguous()}, {"key": key, "info": json.dumps(info)}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))  # never half-written


@torch.no_grad()
def compute_reference(model, examples: list[Example], batch_size: int, pad_id: int, accelerator) -> torch.Tensor:
    """(P, 2) log-probs of (chosen, rejected) under `model`, each process scoring its share.

    A share is scored in batches of pairs of similar length (little padding), padded to equal
    length across processes (sharded backends need every process in every forward), then
    gathered; every process returns the whole tensor.
    """
    n, world, rank = len(examples), accelerator.num_processes, accelerator.process_index
    if n == 0:
        return torch.zeros(0, 2)
    per = math.ceil(n / world)
    shares = [sorted(range(r, n, world), key=lambda i: pair_width(examples[i])) for r in range(world)]
    shares = [s + [s[-1] if s else 0] * (per - len(s)) for s in shares]
    was_training = model.training
    model.eval()
    out = []
    for b in range(0, per, batch_size):
        chunk = [examples[i] for i in shares[rank][b : b + batch_size]]
        chosen, rejected, _, _ = pair_logps(model, collate_pairs(chunk, pad_id, accelerator.device))
        out.append(torch.stack([chosen, rejected], dim=1))
    model.train(was_training)
    gathered = accelerator.gather(torch.cat(out)).cpu()  # (world * per, 2), process by process
    result = torch.zeros(n, 2)
    result[torch.tensor([i for s in shares for i in s])] = gathered.float()
    return result


def round_reference(
    model, examples, cfg, model_cfg, reference_path, fingerprints, batch_size, pad_id, accelerator, cache: Path
):
    """(P, 2) reference log-probs on the device (None when the loss needs none), and where they came from.

    `cache`: the round's reference_logps.safetensors (genius.layout.RoundPaths).
    """
    if cfg.loss not in NEEDS_REFERENCE or not examples:
        return None, "not needed"
    model_fp = fingerprints["policy"] if reference_path is None else model_fingerprint(reference_path)
    key, parts = reference_key(fingerprints["tokens"], model_fp, model_cfg.dtype, str(accelerator.mixed_precision))
    ref = load_reference(cache, key)
    source = f"reused {cache}"
    if ref is None:
        started = time.time()
        with accelerator.autocast():
            if reference_path is None:  # the policy before any update; with LoRA, its base
                with adapters_off(accelerator.unwrap_model(model)):
                    ref = compute_reference(model, examples, batch_size, pad_id, accelerator)
            else:
                reference, _ = load_model(
                    reference_path, model_cfg.dtype, str(accelerator.device), model_cfg.trust_remote_code
                )
                ref = compute_reference(reference, examples, batch_size, pad_id, accelerator)
                del reference
        if accelerator.is_main_process:
            cache.parent.mkdir(parents=True, exist_ok=True)
            save_reference(cache, key, ref, parts | {"reference": reference_path or "policy"})
        source = f"computed in {time.time() - started:.1f}s, saved to {cache}"
    return ref.to(accelerator.device), source
