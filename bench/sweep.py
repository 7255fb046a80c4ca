"""Explore training settings for the replicate on one seed's round-1 pairs, many at once.

    python -m bench.sweep --plan configs/sweep.yaml --workers 15 --out sweep.jsonl

Each arm of the plan is a lineage, as in `make replicate` (flows/replicate.py), whose rounds
run through the round loop (genius/stages/lineage.py) and the `genius` CLI (in parallel, one
thread each), an arm with `pairs_from` training on that arm's pairs. Its checkpoints are then
scored in process by the library's engine scorer (genius.evaluation.scoring, the diagnostics'
own): greedy and T=1.0 on the plan's test set, with the same answer rule as the lm-eval task
(`A:<number>`). That scorer is ~50x faster than lm-eval on the toy and agreed with it on the
base (10.25% vs 10.2% greedy); `make replicate` itself scores with lm-eval, so the numbers
here are close to, not the same as, the flow's. Prints one line per arm as it finishes and a
table at the end; the rows go to --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from flows.replicate import borrow_pairs, lineage, prepare, trains_on_pairs
from genius.config import EvalConfig, ModelConfig, load_params
from genius.evaluation.scoring import open_engine, score
from genius.layout import RoundPaths, round_name
from genius.stages.lineage import Outside, run_rounds
from genius.stages.replicate import arm_dir, load_plan, overrides, summarise, table
from genius.stages.table import Stage, writer

TASKS = {"genius_toy": "greedy", "genius_toy_sampled": "T=1.0"}


def engine_accuracy(model_path: str, test_path: str, seed: int, limit: int | None = None) -> dict[str, float]:
    """Greedy and T=1.0 accuracy of one sample per test problem."""
    with open(test_path) as f:
        rows = [json.loads(line) for line in f][:limit]
    engine, tokenizer = open_engine(model_path, EvalConfig(), ModelConfig(device="cpu"))
    temperatures = {"genius_toy": 0.0, "genius_toy_sampled": 1.0}
    return {task: score(engine, tokenizer, rows, "toy", 1, t, 96, seed).accuracy() for task, t in temperatures.items()}


def scored_metrics(plan, seed: int, arm, r: int) -> dict:
    """Write metrics.json for (seed, arm, round r) the way read_accuracy expects it."""
    params = load_params(plan.params, overrides(plan, seed, arm))
    paths = RoundPaths.of(arm_dir(plan, seed, arm.name if arm else "base"), r)
    if not paths.metrics.exists():
        model = params.model.path if r == 0 else str(paths.checkpoint)
        acc = engine_accuracy(model, params.eval.test_path, seed)
        paths.dir.mkdir(parents=True, exist_ok=True)
        paths.metrics.write_text(json.dumps({"round": r, "accuracy": acc, "scorer": "engine"}) + "\n")
    return json.loads(paths.metrics.read_text())["accuracy"]


def run_cli(outside: Outside, stage: Stage, r: int) -> None:
    """A stage of a lineage through the `genius` CLI, unless its last output exists."""
    if not stage.done(outside.load(), r):
        subprocess.run(outside.command(stage, r), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def train_arm(plan, seed: int, arm) -> None:
    """Every round of one arm but its evaluation (scored here instead)."""
    params = load_params(plan.params, overrides(plan, seed, arm))
    prepare(plan, seed, arm, params.model.path)
    if arm.pairs_from and not trains_on_pairs(params).done(params, 1):
        borrow_pairs(plan, seed, arm)
    outside = lineage(plan, seed, arm)
    run_rounds(params, range(1, arm.rounds + 1), lambda stage, r: run_cli(outside, stage, r), skip=("evaluate",))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", default="configs/sweep.yaml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="sweep.jsonl")
    parser.add_argument("--deadline", type=float, default=1e9, help="seconds; arms not started by then are skipped")
    parser.add_argument("--score", nargs=3, metavar=("SEED", "ARM", "ROUND"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    plan = load_plan(args.plan)
    if args.score:  # a child process: score one checkpoint (processes, not threads: the GIL)
        seed, arm, r = int(args.score[0]), args.score[1], int(args.score[2])
        scored_metrics(plan, seed, None if arm == "base" else plan.arm(arm), r)
        return
    start = time.time()

    def scored(seed, arm, r):
        name = arm.name if arm else "base"
        cmd = [sys.executable, "-m", "bench.sweep", "--plan", args.plan, "--score", str(seed), name, str(r)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.loads(RoundPaths.of(arm_dir(plan, seed, name), r).metrics.read_text())["accuracy"]

    with ThreadPoolExecutor(args.workers) as pool:
        for seed, acc in zip(plan.seeds, pool.map(lambda s: scored(s, None, 0), plan.seeds)):
            print("base", seed, acc, flush=True)

    futures: dict = {}

    def one(seed, arm):
        if time.time() - start > args.deadline:
            return None
        if arm.pairs_from:  # wait for the source's round-1 pairs, not its later rounds
            source = next(f for f, (s, a) in list(futures.items()) if s == seed and a.name == arm.pairs_from)
            source_params = load_params(plan.params, overrides(plan, seed, plan.arm(arm.pairs_from)))
            while not writer(source_params, "pairs").done(source_params, 1):
                if source.done():
                    source.result()  # raises the source's failure
                time.sleep(2)
        t = time.time()
        train_arm(plan, seed, arm)
        return {r: scored(seed, arm, r) for r in range(1, arm.rounds + 1)}, time.time() - t

    order = [(s, a) for a in plan.arms if not a.pairs_from for s in plan.seeds]  # pair sources first
    order += [(s, a) for a in plan.arms if a.pairs_from for s in plan.seeds]
    with ThreadPoolExecutor(args.workers) as pool, open(args.out, "a") as out:
        for s, a in order:
            futures[pool.submit(one, s, a)] = (s, a)
        for f in as_completed(futures):
            seed, arm = futures[f]
            try:
                done = f.result()
            except Exception as e:  # one broken arm must not sink the sweep
                print(f"{arm.name} seed {seed}: FAILED {str(e)[-600:]}", flush=True)
                continue
            if done is None:
                continue
            acc, seconds = done
            row = {"arm": arm.name, "seed": seed, "set": arm.overrides, "accuracy": acc, "seconds": round(seconds)}
            out.write(json.dumps(row) + "\n")
            out.flush()
            line = "  ".join(f"{round_name(r)} " + " ".join(f"{100 * v:.1f}" for v in a.values()) for r, a in acc.items())
            print(f"[{time.time() - start:.0f}s] {arm.name} seed {seed}: {line}  ({seconds:.0f}s)", flush=True)

    from genius.stages.replicate import read_accuracy

    print(table(summarise(read_accuracy(plan), list(TASKS)), plan, TASKS))


if __name__ == "__main__":
    main()
