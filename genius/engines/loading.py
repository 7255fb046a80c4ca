"""Model loading and checking: safetensors only, no remote code by default, one-line errors.

`load_model` is the one way a policy is loaded, by training, both engines, lm-eval and the
diagnostics: a full HF folder as it is, a LoRA round as its base with the adapters of its
chain merged in order (genius/engines/lineage.py), every hash on the chain checked first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from genius.engines.lineage import is_adapter, merge_adapters, resolve_chain


def check_model(path: str) -> None:
    """A one-line FileNotFoundError for a model that cannot load, before transformers' long tracebacks.

    A path that does not exist is a hub name only when it looks like one (`org/name`) and the
    hub may be reached (HF_HUB_OFFLINE is not 1).
    """
    p = Path(path).expanduser()
    if not p.exists():
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        if offline or p.is_absolute() or path.startswith((".", "~")) or path.count("/") != 1:
            why = "; HF_HUB_OFFLINE=1, so it is not looked up on the hub" if offline else ""
            raise FileNotFoundError(f"model {path} does not exist{why}")
        return  # a hub name: transformers fetches it
    if is_adapter(p):  # a LoRA round: its chain's hashes, then its base as any model
        check_model(resolve_chain(path).base)
        return
    if not (p / "config.json").is_file():
        ggufs = sorted(p.glob("*.gguf")) if p.is_dir() else [p] if p.suffix == ".gguf" else []
        hint = f" (a GGUF file: `genius import-model --gguf {ggufs[0]}` turns it into one)" if ggufs else ""
        raise FileNotFoundError(f"model {path} is not an HF model folder: no config.json{hint}")
    if not any(p.glob("*.safetensors")):
        pickled = [f.name for f in p.glob("*.bin")]
        why = f" (only {', '.join(pickled)}: pickled weights are never loaded; save them as safetensors)" if pickled else ""
        raise FileNotFoundError(f"model {path} has no *.safetensors weights{why}")
    from safetensors import SafetensorError, safe_open

    for f in sorted(p.glob("*.safetensors")):
        try:
            with safe_open(f, "pt"):  # reads and checks the header only
                pass
        except SafetensorError as e:
            raise FileNotFoundError(f"model {path}: {f.name} is corrupt or truncated ({e})") from None
    if not any((p / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise FileNotFoundError(f"model {path} has no tokenizer (tokenizer.json or tokenizer_config.json)")


def load_model(path: str, dtype: str = "float32", device: str = "auto", trust_remote_code: bool = False):
    """(model, tokenizer) from an HF folder, a hub name or a LoRA round, safetensors only, no remote
    code by default. A LoRA round's adapters are merged on `device` (seconds on a CPU, less on a GPU)."""
    check_model(path)
    chain = resolve_chain(path)  # hashes were just checked: this process does not read them again
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    tokenizer = AutoTokenizer.from_pretrained(chain.base, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        chain.base, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code, use_safetensors=True
    )
    return merge_adapters(model.to(device), chain.adapters).eval(), tokenizer


def export_model(path: str, out: str, model_cfg, log=print) -> Path:
    """The policy at `path` (a LoRA round: its chain merged) as a plain HF folder `out`, tokenizer included.

    Written beside `out` and renamed into place; an existing `out` is refused, never overwritten.
    """
    out_dir = Path(out)
    if out_dir.exists():
        raise FileExistsError(f"{out} exists: export writes a new folder (remove it, or pick another)")
    model, tokenizer = load_model(path, model_cfg.dtype, "cpu", model_cfg.trust_remote_code)
    tmp = out_dir.with_name(f".{out_dir.name}.exporting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out_dir)
    log(f"exported {path} ({len(resolve_chain(path).adapters)} adapter(s) merged) to {out}")
    return out_dir
