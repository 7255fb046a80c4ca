"""H4 of docs/RESULTS.md: the headroom of each round's checkpoint: greedy, pass@8 and best-of-8.

    python -m bench.headroom --test runs/science/toy/test.jsonl --limit 1000 MODEL_DIR...

For each checkpoint, 8 responses per test problem at --temperature (the sampling
temperature by default) are scored by their mean token log-prob, the self-reward Genius
selects by; best-of-8 is the accuracy of the highest-scored one, pass@8 the share of
problems with any right one (genius.evaluation.diagnostics.response_level). The responses
come from the library's engine scorer (genius.evaluation.scoring). One line of JSON each.
"""

from __future__ import annotations

import argparse
import json

from genius.config import EvalConfig, ModelConfig
from genius.evaluation.diagnostics import response_level
from genius.evaluation.scoring import open_engine, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--test", required=True)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    with open(args.test) as f:
        rows = [json.loads(line) for line in f][: args.limit]
    for path in args.models:
        engine, tokenizer = open_engine(path, EvalConfig(), ModelConfig(device="cpu"))
        sampled = score(engine, tokenizer, rows, "toy", args.n, args.temperature, 96, args.seed)
        greedy = score(engine, tokenizer, rows, "toy", 1, 0.0, 96)
        out = response_level(sampled.scores, sampled.correct, [c[0] for c in greedy.correct])
        print(
            json.dumps({"model": path, "problems": len(rows), "n": args.n, "temperature": args.temperature, **out}),
            flush=True,
        )


if __name__ == "__main__":
    main()
