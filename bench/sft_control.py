"""Selection or sharpening? SFT on Genius's positives against SFT on random own samples.

    python -m bench.sft_control --plan configs/replicate.yaml --workers 2

For each seed of the plan, after `make replicate` has run: take the Genius arm's round-1
pairs, and build a control set of the same size in which every positive is replaced by a
response the base model samples for the same query (at `sampling.temperature`, the
temperature the search samples steps at). Train both with `training.loss: sft` and the
plan's other settings, score both with the library's engine scorer (bench/sweep.py's) (greedy and T=1.0 on the
test set), and report, per seed and as mean +- SE, the accuracy of each and how often the
training targets themselves are right (the toy's queries carry their answer: the sum; it is
used here to measure, never to train).
"""

from __future__ import annotations

import argparse
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from bench.sweep import run_cli, scored_metrics
from flows.replicate import lineage, prepare, trains_on_pairs
from genius.algorithm.records import PreferencePair
from genius.config import EvalConfig, ModelConfig, load_params
from genius.evaluation.scoring import open_engine, score
from genius.io import read_jsonl, write_jsonl
from genius.layout import RoundPaths
from genius.stages.replicate import Arm, arm_dir, load_plan, mean_se, overrides
from genius.toy.task import extract_answer

TASKS = ("genius_toy", "genius_toy_sampled")


def right(query: str, response: str) -> bool:
    return extract_answer(response) == sum(int(x) for x in query.split("+"))


def random_positives(plan, seed: int, pairs: list[PreferencePair]) -> list[PreferencePair]:
    """The pairs with each `chosen` replaced by a fresh base-model sample for its query."""
    params = load_params(plan.params, overrides(plan, seed, None))
    engine, tokenizer = open_engine(params.model.path, EvalConfig(), ModelConfig(device="cpu"))
    queries = sorted({p.query for p in pairs})
    need = {q: sum(p.query == q for p in pairs) for q in queries}
    problems = [{"id": str(i), "query": q, "answer": ""} for i, q in enumerate(queries)]  # judged by `right` below
    t, limit = params.sampling.temperature, params.sampling.max_rollout_tokens
    out = score(engine, tokenizer, problems, "toy", max(need.values()), t, limit, seed).responses
    samples = dict(zip(queries, out))
    used = {q: 0 for q in queries}
    control = []
    for p in pairs:
        q = p.query
        control.append(replace(p, chosen=samples[q][used[q]], chosen_complete=True))
        used[q] += 1
    return control


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", default="configs/replicate.yaml")
    parser.add_argument("--source", default="genius", help="the arm whose round-1 pairs are used")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    plan = load_plan(args.plan)
    sft = {"training.loss": "sft"}
    arms = {"sft_positives": Arm(name="sft_positives", label="SFT on Genius positives", overrides=sft),
            "sft_random": Arm(name="sft_random", label="SFT on random own samples", overrides=sft)}
    source = {seed: RoundPaths.of(arm_dir(plan, seed, args.source), 1) for seed in plan.seeds}
    # its own folder: the base is scored here by the same engine scorer as the two arms
    plan = plan.model_copy(update={"arms": [plan.arm(args.source), *arms.values()], "out_dir": plan.out_dir / "control"})

    # Models are loaded in this process one at a time (transformers' loading is not
    # thread-safe); only the training subprocesses run in parallel.
    made = {}
    for seed in plan.seeds:
        pairs = [PreferencePair.from_json(row) for row in read_jsonl(source[seed].pairs)]
        made[seed] = {"sft_positives": pairs, "sft_random": random_positives(plan, seed, pairs)}
        for name, rows in made[seed].items():
            arm, d = arms[name], RoundPaths.of(arm_dir(plan, seed, name), 1)
            prepare(plan, seed, arm, load_params(plan.params, overrides(plan, seed, arm)).model.path)
            d.dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source[seed].queries, d.queries)
            if not d.pairs.exists():
                write_jsonl(d.pairs, (p.to_json() for p in rows))
    jobs = [(seed, arm) for seed in plan.seeds for arm in arms.values()]
    with ThreadPoolExecutor(args.workers) as pool:
        train = trains_on_pairs(load_params(plan.params, overrides(plan, plan.seeds[0], None)))
        list(pool.map(lambda job: run_cli(lineage(plan, *job), train, 1), jobs))
    results = []
    for seed in plan.seeds:
        result = {"seed": seed, "base": scored_metrics(plan, seed, None, 0)}
        for name, rows in made[seed].items():
            right_share = sum(right(p.query, p.chosen) for p in rows) / len(rows)
            result[name] = scored_metrics(plan, seed, arms[name], 1) | {"targets_right": right_share}
        print(json.dumps(result), flush=True)
        results.append(result)
    def fmt(pair, signed=False):
        return f"{'+' if signed and pair[0] >= 0 else ''}{100 * pair[0]:.1f} ± {100 * pair[1]:.1f}"

    print("| training targets | targets right | greedy | vs base | T=1.0 | vs base |\n|---|---|---|---|---|---|")
    for name, arm in arms.items():
        cells = [fmt(mean_se([r[name]["targets_right"] for r in results]))]
        for t in TASKS:
            cells += [fmt(mean_se([r[name][t] for r in results])), fmt(mean_se([r[name][t] - r["base"][t] for r in results]), True)]
        print(f"| {arm.label} | " + " | ".join(cells) + " |")
    for t in TASKS:  # what the selection adds over sampling alone, paired by seed
        diff = mean_se([r["sft_positives"][t] - r["sft_random"][t] for r in results])
        print(f"{t}: positives minus random samples {fmt(diff, True)} points")

if __name__ == "__main__":
    main()
