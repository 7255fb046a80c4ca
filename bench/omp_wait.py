"""Decode speed by torch thread count and OpenMP wait policy, each in its own process, interleaved.

    python -m bench.omp_wait --model models/smollm2-135m-instruct
    python -m bench.omp_wait --model DIR --prompts 4 --tokens 16 --repeats 2

libgomp (torch's OpenMP) reads OMP_WAIT_POLICY once, when torch loads, so every setting runs in
a fresh process: SmolLM2 loaded, one warm-up call, then one timed call of our transformers engine
(`--prompts` prompts x 4 samples x `--tokens` new tokens). The settings run in turn, `--repeats`
times, so a busy spell on a shared machine falls on all of them. Each line prints generated
tokens per wall second and per CPU second of the process; the load average is printed before
and after. Why it matters: genius/openmp.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
SETTINGS = {  # name: (torch threads, environment)
    "1 thread": (1, {"OMP_WAIT_POLICY": "ACTIVE"}),  # one thread never waits at a barrier: the policy is moot
    "2 threads, OMP_WAIT_POLICY=ACTIVE": (2, {"OMP_WAIT_POLICY": "ACTIVE"}),
    # unset, libgomp spins 300,000 rounds before sleeping: its documented default, spelled out
    # because with neither variable set, importing genius sets PASSIVE (genius/openmp.py)
    "2 threads, libgomp's default (GOMP_SPINCOUNT=300000)": (2, {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "300000"}),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
}


def worker(model: str, threads: int, prompts: int, tokens: int) -> dict:
    import genius  # noqa: F401  first, as every stage does: the pinned arithmetic (genius/numerics.py)
    import torch

    from genius.algorithm.sampling import prompt_ids
    from genius.engines.loading import load_model
    from genius.engines.transformers_engine import TransformersEngine

    policy, tokenizer = load_model(model)
    engine = TransformersEngine(policy, tokenizer)
    torch.set_num_threads(threads)
    ids = [prompt_ids(tokenizer, f"What is {i} + {3 * i} - 7? Show your steps.") for i in range(prompts)]
    engine.generate(ids[:1], n=1, temperature=0.6, max_new_tokens=2)  # warm-up
    torch.manual_seed(0)
    wall, cpu = time.perf_counter(), time.process_time()
    out = engine.generate(ids, n=4, temperature=0.6, max_new_tokens=tokens)
    generated = sum(len(c.token_ids) for cs in out for c in cs)
    return {"wall": generated / (time.perf_counter() - wall), "cpu": generated / (time.process_time() - cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="an HF model folder")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per sample")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # the thread count, in a worker process
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.model, args.worker, args.prompts, args.tokens)))
        return
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min)", flush=True)
    rates: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for repeat in range(args.repeats):
        for name, (threads, env) in SETTINGS.items():
            environ = {k: v for k, v in os.environ.items() if k not in WAIT_KEYS} | {k: v for k, v in env.items() if v}
            cmd = [sys.executable, "-m", "bench.omp_wait", "--model", args.model, "--worker", str(threads),
                   "--prompts", str(args.prompts), "--tokens", str(args.tokens)]  # fmt: skip
            done = subprocess.run(cmd, env=environ, capture_output=True, text=True, check=True)
            rates[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"pass {repeat + 1}, {name}: {rates[name][-1]['wall']:.1f} tok/s wall", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)\n")
    base = max(r["wall"] for r in rates["1 thread"])
    print("| setting | best tok/s (wall) | tok/s per CPU second | vs 1 thread |\n|---|--:|--:|--:|")
    for name, runs in rates.items():
        best = max(runs, key=lambda r: r["wall"])
        print(f"| {name} | {best['wall']:.1f} | {best['cpu']:.1f} | {best['wall'] / base:.2f}x |")


if __name__ == "__main__":
    main()
