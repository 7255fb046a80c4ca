"""How much the embedded default's base moves with the seed and with the CPU's arithmetic (issue 21).

    python -m bench.toy_spread --seeds 0 1 2 --capabilities avx2 default [-S toy.key=value ...]

Builds the toy (params.yaml's `toy` section, -S overrides) once per seed and per
`ATEN_CPU_CAPABILITY`, each in a fresh process, since torch reads the variable once, at
import. `native` leaves torch's own choice (genius pins nothing then: GENIUS_CPU_NUMERICS=native).
For each build: the SHA-256 of model.safetensors, the pre-training steps it ran, and the
base's accuracy on the test set, greedy and one sample at T=1.0, decoded by the engine the
rounds sample with (genius.engines.transformers_engine; lm-eval's `genius_toy` tasks decode
the same way, its T=1.0 draws differ). Then the spread (max - min) per capability and over all.
One line of JSON per build, the table at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(seed: int, params_path: str, overrides: list[str]) -> dict:
    """Build one toy in this process and score it (the parent set ATEN_CPU_CAPABILITY)."""
    import torch

    from genius.algorithm.sampling import prompt_ids
    from genius.config import load_params
    from genius.engines.transformers_engine import TransformersEngine
    from genius.toy import task
    from genius.toy.build import build_toy

    params = load_params(params_path, [*overrides, f"toy.seed={seed}"])
    out = Path(tempfile.mkdtemp(prefix="toy-spread-")) / "toy"
    build_toy(params.toy, out, log=lambda m: None)
    info = json.loads((out / "toy.json").read_text())
    test = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    model_dir = out / "model"
    from genius.engines.loading import load_model

    model, tokenizer = load_model(str(model_dir), device="cpu")
    torch.set_num_threads(1)
    engine = TransformersEngine(model, tokenizer)
    prompts = [prompt_ids(tokenizer, row["query"]) for row in test]

    def accuracy(temperature: float) -> float:
        torch.manual_seed(0)
        outs = engine.generate(prompts, n=1, temperature=temperature, max_new_tokens=64, stop=None)
        answers = [task.extract_answer(tokenizer.decode(o[0].token_ids, skip_special_tokens=True)) for o in outs]
        return sum(a == int(row["answer"]) for a, row in zip(answers, test)) / len(test)

    return {
        "seed": seed,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "sha256": hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest(),
        "steps": info.get("steps", params.toy.pretrain_steps),
        "dev_accuracy": info.get("dev_accuracy"),
        "greedy": accuracy(0.0),
        "t1": accuracy(1.0),
        "build_seconds": info["wall_seconds"],
    }


def run(seed: int, capability: str, params_path: str, overrides: list[str]) -> dict:
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if capability == "native":
        env["GENIUS_CPU_NUMERICS"] = "native"
    else:
        env["ATEN_CPU_CAPABILITY"] = capability
    cmd = [sys.executable, "-m", "bench.toy_spread", "--child", str(seed), "--params", params_path, *(a for o in overrides for a in ("-S", o))]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"seed {seed}, {capability}: exited {done.returncode}\n{done.stderr[-3000:]}")
    return {"setting": capability, **json.loads(done.stdout.strip().splitlines()[-1])}


def table(rows: list[dict]) -> str:
    lines = ["| setting | seed | steps | greedy | T=1.0 | sha256 (16) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['setting']} ({r['capability']}) | {r['seed']} | {r['steps']} | {r['greedy']:.1%} | {r['t1']:.1%} | {r['sha256'][:16]} |"
        )
    lines += ["", "| over | greedy min-max (spread) | greedy sd | T=1.0 min-max (spread) |", "|---|---|---|---|"]
    groups = {s: [r for r in rows if r["setting"] == s] for s in dict.fromkeys(r["setting"] for r in rows)}
    groups |= {f"seed {s}": [r for r in rows if r["seed"] == s] for s in dict.fromkeys(r["seed"] for r in rows)}
    groups["all"] = rows
    for name, group in groups.items():
        g, t = [r["greedy"] for r in group], [r["t1"] for r in group]
        sd = statistics.stdev(g) if len(g) > 1 else 0.0
        lines.append(
            f"| {name} | {min(g):.1%}-{max(g):.1%} ({100 * (max(g) - min(g)):.1f} pt) | {100 * sd:.1f} pt "
            f"| {min(t):.1%}-{max(t):.1%} ({100 * (max(t) - min(t)):.1f} pt) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--capabilities", nargs="+", default=["avx2", "default"], help="ATEN_CPU_CAPABILITY values, or native")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("-S", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.params, args.overrides)), flush=True)
        return
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(s, c) for c in args.capabilities for s in args.seeds]
    with ThreadPoolExecutor(args.workers) as pool:
        rows = []
        for row in pool.map(lambda job: run(*job, args.params, args.overrides), jobs):
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(table(rows))


if __name__ == "__main__":
    main()
