"""Can the policy judge its own responses? Self-Rewarding's judge on an instruct model, a few queries.

    python -m bench.self_rewarding_probe --model models/smollm2-135m-instruct

Samples --n responses per query (T=0.7), judges each --judgements times with the paper's
additive 5-point rubric through the chat template (genius.algorithm.self_rewarding), and
prints the scores, the tail of one judgement per query, the pair it forms (if any) and the
cost. The default queries are one reasoning-gym-style sum and one open question.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from genius.algorithm.responses import sample_responses
from genius.algorithm.self_rewarding import judge, judged_pair
from genius.data.queries import Query
from genius.data.reasoning_gym import prompt
from genius.engines.loading import load_model
from genius.engines.transformers_engine import TransformersEngine

QUERIES = [prompt("What is 17 + 25?"), "Name three primary colors."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="an instruct model folder (default: the tests' SmolLM2 import)")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--judgements", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=128, help="of each judgement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = args.model or str(next(Path(".cache/genius-tests").glob("smollm2-*")))
    model, tokenizer = load_model(path, device="cpu")
    engine = TransformersEngine(model, tokenizer)
    queries = [Query(f"p{i}", q) for i, q in enumerate(QUERIES)]
    start = time.perf_counter()
    ((groups, cost),) = list(sample_responses(engine, tokenizer, [queries], args.n, 0.7, 96, 0))
    print(f"sampled {cost['generated_tokens']} tokens in {time.perf_counter() - start:.0f} s")
    scores, texts, judged = judge(engine, tokenizer, groups, args.judgements, max_new_tokens=args.max_new_tokens)
    print(f"judged {judged['generated_tokens']} tokens in {judged['seconds']:.0f} s")
    for g, s, ts in zip(groups, scores, texts):
        scored = sum(x is not None for x in s)
        print(f"{g.query_id}: mean scores {s} ({scored} of {len(s)} responses scored); one judgement ends: {ts[0][0][-200:]!r}")
        print(f"  pair: {judged_pair(g, s)}")


if __name__ == "__main__":
    main()
