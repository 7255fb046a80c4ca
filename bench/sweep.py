"""Explore training settings for the replicate on one seed's round-1 pairs, many at once.

    python bench/sweep.py --plan configs/sweep.yaml --workers 15 --out sweep.jsonl

Each arm of the plan is trained with the `genius` CLI (in parallel, one thread each) on the
pairs of its `pairs_from` arm, then scored in process by sampling from the checkpoint with
the engine: greedy and T=1.0 on the plan's test set, with the same answer rule as the
lm-eval task (`A:<number>`). That scorer is ~50x faster than lm-eval on the toy and agreed
with it on the base (10.25% vs 10.2% greedy); `make replicate` itself scores with lm-eval.
Prints one line per arm as it finishes and a table at the end; the rows go to --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.replicate import run_arm, stage_done  # noqa: E402
from genius.config import load_params  # noqa: E402
from genius.stages.replicate import arm_dir, load_plan, overrides, summarise, table  # noqa: E402

TASKS = {"genius_toy": "greedy", "genius_toy_sampled": "T=1.0"}


def engine_accuracy(model_path: str, test_path: str, seed: int, limit: int | None = None) -> dict[str, float]:
    """Greedy and T=1.0 accuracy of one sample per test problem."""
    import torch

    from genius.algorithm.sampling import prompt_ids
    from genius.engines.loading import load_model
    from genius.engines.transformers_engine import TransformersEngine
    from genius.toy.task import extract_answer

    rows = [json.loads(line) for line in open(test_path)][:limit]
    model, tokenizer = load_model(model_path, device="cpu")
    engine = TransformersEngine(model, tokenizer, 512, 131072)
    prompts = [prompt_ids(tokenizer, r["query"]) for r in rows]
    result = {}
    for task, temperature in (("genius_toy", 0.0), ("genius_toy_sampled", 1.0)):
        torch.manual_seed(seed)
        out = engine.generate(prompts, n=1, temperature=temperature, max_new_tokens=96, stop=None)
        right = [
            extract_answer(tokenizer.decode(c[0].token_ids, skip_special_tokens=True)) == int(r["answer"])
            for c, r in zip(out, rows)
        ]
        result[task] = sum(right) / len(rows)
    return result


def score(plan, seed: int, arm, r: int) -> dict:
    """Write metrics.json for (seed, arm, round r) the way read_accuracy expects it."""
    params = load_params(plan.params, overrides(plan, seed, arm))
    d = arm_dir(plan, seed, arm.name if arm else "base") / ("base" if r == 0 else f"r{r}")
    path = d / "metrics.json"
    if not path.exists():
        model = params.model.path if r == 0 else str(d / "checkpoint")
        acc = engine_accuracy(model, params.eval.test_path, seed)
        d.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"round": r, "accuracy": acc, "scorer": "engine"}) + "\n")
    return json.loads(path.read_text())["accuracy"]


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
        score(plan, seed, None if arm == "base" else plan.arm(arm), r)
        return
    start = time.time()

    def scored(seed, arm, r):
        name = arm.name if arm else "base"
        cmd = [sys.executable, __file__, "--plan", args.plan, "--score", str(seed), name, str(r)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        d = arm_dir(plan, seed, name) / ("base" if r == 0 else f"r{r}")
        return json.loads((d / "metrics.json").read_text())["accuracy"]

    with ThreadPoolExecutor(args.workers) as pool:
        for seed, acc in zip(plan.seeds, pool.map(lambda s: scored(s, None, 0), plan.seeds)):
            print("base", seed, acc, flush=True)

    futures: dict = {}

    def one(seed, arm):
        if time.time() - start > args.deadline:
            return None
        if arm.pairs_from:  # wait for the source's round-1 pairs, not its later rounds
            source = next(f for f, (s, a) in list(futures.items()) if s == seed and a.name == arm.pairs_from)
            while not stage_done(plan, seed, plan.arm(arm.pairs_from), "pairs", 1):
                if source.done():
                    source.result()  # raises the source's failure
                time.sleep(2)
        t = time.time()
        run_arm(plan, seed, arm, evaluate=False, log=lambda m: None)
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
            line = "  ".join(f"r{r} " + " ".join(f"{100 * v:.1f}" for v in a.values()) for r, a in acc.items())
            print(f"[{time.time() - start:.0f}s] {arm.name} seed {seed}: {line}  ({seconds:.0f}s)", flush=True)

    from genius.stages.replicate import read_accuracy

    print(table(summarise(read_accuracy(plan), list(TASKS)), plan, TASKS))


if __name__ == "__main__":
    main()
