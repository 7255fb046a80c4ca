"""What the KV block size costs on vLLM-CPU: vLLM's CPU default (128 tokens a block) against smaller blocks, side by side.

    python -m bench.vllm_blocks                         # SmolLM2, the preset's 32 queries, 2 passes
    python -m bench.vllm_blocks --model DIR --queries 8 --passes 3 --blocks 128 32

vLLM's prefix cache shares whole KV blocks only. A chat prompt of SmolLM2's preset is 62-78
tokens, so with 128-token blocks little of what requests share (the prompt and beam prefix of a
beam's N candidates, the prompt + prefix + step a rollout continues) fills a block, and most of
it is prefilled again. One engine per block size (the engine's CPU default is
`genius.engines.vllm_engine.CPU_BLOCK_SIZE`; vLLM's CPU attention takes multiples of 32), each
running, on the same queries:

  foresight   the project's sampler (`genius.algorithm.sampling`) with configs/smollm2-rg.yaml's
              SamplingConfig: generated tokens/s, and the prompt tokens the engine computed rather
              than found in its cache (`EngineCost.prefill_tokens`)
  decode      a plain decode of whole responses: M*N samples of each query's prompt, up to a
              step and a rollout long (bench/round_profile.py's sampling ceiling)

A request's tokens depend on its seed alone, so the engines draw the same samples, but that the
CPU attention sums in an order that depends on the block size: log-probs differ in their last
bits, and a token whose draw falls at a boundary of its CDF can flip, and with it the rest of a
query's records. The table gives a digest of the records' texts and decisions per pass: where
two engines' digests match they did the same work and their seconds compare directly; where
they do not, tokens/s is the measure. Passes alternate between the engines, so load from other
jobs falls on all of them; ratios are to the first block size.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time

import torch

from bench.vllm_chunking import engine_bench_parser, engine_bench_setup
from genius.algorithm.sampling import foresight_sample, prompt_ids


def foresight(engine, queries, cfg) -> tuple[float, int, int, str]:
    """(seconds, generated tokens, computed prompt tokens, digest of the records) of one sampling pass."""
    generated, prefilled, start = engine.cost.generated_tokens, engine.cost.prefill_tokens, time.perf_counter()
    records = list(foresight_sample(engine, engine.tokenizer, queries, cfg))
    seconds = time.perf_counter() - start
    return seconds, engine.cost.generated_tokens - generated, engine.cost.prefill_tokens - prefilled, digest(records)


def digest(records) -> str:
    """sha256 of what the records sampled and decided (texts, beams, selections), not of the scores:
    log-probs differ in their last bits between block sizes (the CPU attention sums in another order)."""
    drawn = [
        [(c["beam"], c["step"], c["rollout"]) for c in t["candidates"]] + [t["selected"], t["chosen"], t["rejected"]]
        for r in records
        for t in r.timestamps
    ]
    return hashlib.sha256(json.dumps(drawn).encode()).hexdigest()[:12]


def decode(engine, prompts: list[list[int]], cfg) -> tuple[float, int]:
    """(seconds, generated tokens) of a plain seeded decode of whole responses."""
    torch.manual_seed(0)
    generated, start = engine.cost.generated_tokens, time.perf_counter()
    n, limit = cfg.step_beam_size * cfg.num_rollouts, cfg.max_step_tokens + cfg.max_rollout_tokens
    engine.generate(prompts, n=n, temperature=cfg.temperature, max_new_tokens=limit, stop=None)
    return time.perf_counter() - start, engine.cost.generated_tokens - generated


def main() -> None:
    parser = engine_bench_parser(__doc__.splitlines()[0], queries=32)
    parser.add_argument("--blocks", type=int, nargs="+", default=[128, 64, 32], help="KV block sizes, multiples of 32")
    args = parser.parse_args()

    from genius.engines.vllm_engine import VLLMEngine

    cfg, path, pool = engine_bench_setup(args)
    engines = {}
    for block in args.blocks:
        start = time.perf_counter()
        engines[block] = VLLMEngine(path, dtype="float32", seed=cfg.seed, block_size=block)
        print(f"block {block}: engine up in {time.perf_counter() - start:.0f} s", flush=True)
    rows = {block: {"foresight": [], "decode": [], "prefill": 0, "tokens": 0, "digests": []} for block in args.blocks}
    for p in range(args.passes):
        queries = pool[p * args.queries : (p + 1) * args.queries]
        prompts = [prompt_ids(engines[args.blocks[0]].tokenizer, q.text) for q in queries]
        for block, engine in engines.items():
            row = rows[block]
            seconds, tokens, prefill, digest = foresight(engine, queries, cfg)
            row["foresight"].append(seconds)
            row["tokens"] += tokens
            row["prefill"] += prefill
            row["digests"].append(digest)
            decode_seconds, decoded = decode(engine, prompts, cfg)
            row["decode"].append(decode_seconds)
            print(f"pass {p + 1} block {block}: foresight {tokens} tokens in {seconds:.1f} s ({prefill} prompt tokens computed, "
                  f"records {digest}); decode {decoded} tokens in {decode_seconds:.1f} s", flush=True)  # fmt: skip
    print(f"\n{args.queries} queries a pass, {args.passes} passes, M={cfg.step_beam_size} N={cfg.num_rollouts} "
          f"K={cfg.num_foresight_steps}, T={cfg.temperature}, {args.threads} threads")  # fmt: skip
    print("| block | foresight s (sum) | tok/s | tok/s vs first | prompt tokens computed | records | decode s (sum) | vs first |")
    print("|--:|--:|--:|--:|--:|---|--:|--:|")
    first = rows[args.blocks[0]]
    first_rate = first["tokens"] / sum(first["foresight"])
    for block, row in rows.items():
        f, d = sum(row["foresight"]), sum(row["decode"])
        digests = ", ".join(row["digests"])
        print(f"| {block} | {f:.1f} | {row['tokens'] / f:.1f} | {row['tokens'] / f / first_rate:.2f}x | {row['prefill']:,} | {digests} "
              f"| {d:.1f} | {sum(first['decode']) / d:.2f}x |")  # fmt: skip
    if args.passes > 1:
        print("per-pass foresight seconds:", {b: [round(s, 1) for s in r["foresight"]] for b, r in rows.items()})
        print("median pass, foresight:", {b: round(statistics.median(r["foresight"]), 1) for b, r in rows.items()})


if __name__ == "__main__":
    main()
