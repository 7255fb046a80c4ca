"""What the pinned CPU arithmetic costs: the toy's pre-training and greedy decoding under each capability.

    python -m bench.cpu_numerics [--settings native avx2 default] [--steps 50] [--repeats 3]

Each setting runs in a fresh process (torch reads ATEN_CPU_CAPABILITY once, at import), the
settings interleaved, `--repeats` times: `--steps` pre-training steps of the default toy and
one greedy decode of 500 test problems, on one thread. CPU seconds (process time, less
sensitive than wall time to a shared machine), the median per setting, and the ratio to the
first setting. `native` lets torch choose (GENIUS_CPU_NUMERICS=native): on an AVX2 CPU it is
the pinned `avx2` itself; on an AVX-512 one, the ratio native/avx2 is the pin's cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = """
import json, sys, time
import torch
from genius.config import ToyConfig
from genius.toy import build, task
from genius.toy.tokenizer import build_tokenizer

torch.set_num_threads(1)
steps = int(sys.argv[1])
cfg = ToyConfig(pretrain_steps=steps, dev_target=None)
tokenizer = build_tokenizer()
pool, held_out = task.generate_splits(cfg.seed, cfg.num_queries, cfg.num_test)
start = time.process_time()
model, _ = build.pretrain(cfg, tokenizer, {tuple(sorted(p.numbers)) for p in pool + held_out}, [], log=lambda m: None)
train = time.process_time() - start
start = time.process_time()
build.dev_accuracy(model, tokenizer, held_out)
decode = time.process_time() - start
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "train_s": train, "decode_s": decode}))
"""


def run(setting: str, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    env |= {"GENIUS_CPU_NUMERICS": "native"} if setting == "native" else {"ATEN_CPU_CAPABILITY": setting}
    done = subprocess.run([sys.executable, "-c", CHILD, str(steps)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{setting}: exited {done.returncode}\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=["native", "avx2", "default"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {s: [] for s in args.settings}
    for _ in range(args.repeats):
        for setting in args.settings:  # interleaved: a change in the machine's load hits every setting alike
            results[setting].append(run(setting, args.steps))
            print(json.dumps({"setting": setting, **results[setting][-1]}), flush=True)
    first = args.settings[0]
    median = {s: {k: statistics.median(r[k] for r in rs) for k in ("train_s", "decode_s")} for s, rs in results.items()}
    print(f"| setting | capability | {args.steps} steps, CPU s | x {first} | greedy decode of 500, CPU s | x {first} |")
    print("|---|---|---|---|---|---|")
    for s, m in median.items():
        print(
            f"| {s} | {results[s][0]['capability']} | {m['train_s']:.2f} | {m['train_s'] / median[first]['train_s']:.2f} "
            f"| {m['decode_s']:.2f} | {m['decode_s'] / median[first]['decode_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
