"""H4 of docs/RESULTS.md: the headroom of each round's checkpoint: greedy, pass@8 and best-of-8.

    python bench/headroom.py --test runs/science/toy/test.jsonl --limit 1000 MODEL_DIR...

For each checkpoint, 8 responses per test problem at --temperature (the sampling
temperature by default) are scored by their mean token log-prob, the self-reward Genius
selects by; best-of-8 is the accuracy of the highest-scored one, pass@8 the share of
problems with any right one (genius.evaluation.diagnostics.response_level). One line of JSON each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--test", required=True)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from genius.algorithm.sampling import prompt_ids
    from genius.engines.loading import load_model
    from genius.engines.transformers_engine import TransformersEngine
    from genius.evaluation.diagnostics import response_level
    from genius.toy.task import extract_answer

    with open(args.test) as f:
        rows = [json.loads(line) for line in f][: args.limit]
    for path in args.models:
        model, tokenizer = load_model(path, device="cpu")
        engine = TransformersEngine(model, tokenizer, 512, 131072)
        prompts = [prompt_ids(tokenizer, r["query"]) for r in rows]

        def right(c, r, tokenizer=tokenizer):
            return extract_answer(tokenizer.decode(c.token_ids, skip_special_tokens=True)) == int(r["answer"])

        torch.manual_seed(args.seed)
        sampled = engine.generate(prompts, n=args.n, temperature=args.temperature, max_new_tokens=96, stop=None)
        greedy = engine.generate(prompts, n=1, temperature=0.0, max_new_tokens=96, stop=None)
        scores = [[float(np.mean(c.logprobs)) if c.logprobs else float("-inf") for c in cs] for cs in sampled]
        correct = [[right(c, r) for c in cs] for cs, r in zip(sampled, rows)]
        greedy_correct = [right(cs[0], r) for cs, r in zip(greedy, rows)]
        out = response_level(scores, correct, greedy_correct)
        print(
            json.dumps({"model": path, "problems": len(rows), "n": args.n, "temperature": args.temperature, **out}),
            flush=True,
        )


if __name__ == "__main__":
    main()
