"""Model loading and checking: safetensors only, no remote code by default, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


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
    if (p / "adapter_config.json").is_file():  # a LoRA checkpoint: the adapter on its base model
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
    """(model, tokenizer) from an HF folder or hub name, safetensors only, no remote code by default."""
    check_model(path)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code, use_safetensors=True
    )
    return model.to(device).eval(), tokenizer
