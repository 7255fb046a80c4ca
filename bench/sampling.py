"""Foresight sampling throughput: the authors' per-query schedule, ours, and a plain generate.

The same algorithm (params.yaml's `sampling` section) runs under two schedules on the same
engine, model and queries:
  per-query  one query at a time, M*N sequences per engine call (the authors' scripts)
  ours       `batch_queries` queries advanced together, one engine call per timestamp
and, as the ceiling, a plain batched sampling of whole responses to the same prompts (no
steps, no decisions) until as many tokens as ours generated: once with HF `generate`, once
with our engine in a single call; the faster of the two is the ceiling.

The targets: ours / per-query >= 8x at 64 queries on CPU; ours / ceiling >= 0.8; cost
linear from 16 to 256 queries within 15% (seconds per query at 256 over at 16).

Seconds are this process's CPU seconds by default (`--clock cpu`): everything runs on one
torch thread, and on a shared machine wall time also measures the neighbours (the same run
took 0.17 s of CPU and 0.26 s of wall time on a 2-core box with three other jobs). Each
measurement runs `--repeats` times, interleaved, and the fastest counts.

    python -m bench.sampling                      # 16, 64, 256 queries on the toy, 1 thread, best of 3
    python -m bench.sampling --sizes 64 -S sampling.batch_queries=32

The model is `runs/toy/model` when built, else a toy built once into /tmp/genius-bench-toy
(`--toy DIR` names another). Measured (toy: 161,600 parameters, 900 pre-training steps;
defaults M=2 N=4 K=5, batch_queries 64), tokens/s at 16 / 64 / 256 queries:
  CPU, 2-core box shared with 3 jobs, 1 thread, CPU seconds, best of 3:
    per-query ~8.0K; ours 38K / 44K / 44K; ceiling (our engine, plain) 55K / 59K / 65K
    -> ours/per-query 4.7x / 5.7x / 5.6x, ours/ceiling 0.70 / 0.75 / 0.68, linearity 0.93
  H200 (transformers 5.24, fp32), wall seconds, best of 2:
    per-query ~2.0K; ours 14K / 57K / 59K; ceiling 97K / 101K / 130K
    -> ours/per-query 7.1x / 29.5x / 27.0x, ours/ceiling 0.14 / 0.56 / 0.45
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
from genius.algorithm.sampling import foresight_sample, prompt_ids
from genius.config import SamplingConfig, load_params
from genius.data.queries import Query, read_queries
from genius.engines.loading import load_model
from genius.engines.transformers_engine import TransformersEngine

FALLBACK_TOY = Path("/tmp/genius-bench-toy")
clock = time.process_time  # --clock wall: time.perf_counter


def toy_dir(params, log=print) -> Path:
    """A built toy: the project's, else one built once into FALLBACK_TOY."""
    built = ROOT / params.toy.out_dir
    if (built / "model").exists():
        return built
    if not (FALLBACK_TOY / "model").exists():
        from genius.toy.build import build_toy

        log(f"no toy at {built}: building one into {FALLBACK_TOY} (a few minutes, once)")
        build_toy(params.toy.model_copy(update={"out_dir": str(FALLBACK_TOY)}), FALLBACK_TOY, log=log)
    return FALLBACK_TOY


def foresight(model, tokenizer, queries: list[Query], cfg: SamplingConfig) -> dict:
    """Time foresight sampling of `queries`; tokens = sampled tokens (steps and rollouts)."""
    engine = TransformersEngine(model, tokenizer, cfg.max_batch_sequences, cfg.max_batch_tokens)
    start = clock()
    records = list(foresight_sample(engine, tokenizer, queries, cfg))
    seconds = clock() - start
    assert len(records) == len(queries)
    c = engine.cost
    return {"seconds": seconds, "tokens": c.generated_tokens, "prefill": c.prefill_tokens, "calls": c.calls}


@torch.no_grad()
def hf_generate(model, tokenizer, queries: list[Query], cfg: SamplingConfig, tokens: int) -> dict:
    """Whole responses with HF `generate`, `max_batch_sequences` rows at a time, until `tokens`."""
    prompts = [prompt_ids(tokenizer, q.text) for q in queries]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    done, i, start = 0, 0, clock()
    while done < tokens:
        rows = [prompts[(i + j) % len(prompts)] for j in range(cfg.max_batch_sequences)]
        i += len(rows)
        width = max(map(len, rows))
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=model.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=model.device)
        out = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0,
            max_new_tokens=cfg.max_step_tokens + cfg.max_rollout_tokens, eos_token_id=eos, pad_token_id=pad,
        )[:, width:]
        ended = (out == eos).int()
        # real tokens per row: up to and including the first EOS, all of them without one
        first = torch.where(ended.any(1), ended.argmax(1) + 1, torch.full_like(ended[:, 0], out.shape[1]))
        done += int(first.sum())
    return {"seconds": clock() - start, "tokens": done}


def engine_generate(model, tokenizer, queries: list[Query], cfg: SamplingConfig, tokens: int) -> dict:
    """Whole responses with our engine, one call of M*N samples per prompt, until `tokens`."""
    engine = TransformersEngine(model, tokenizer, cfg.max_batch_sequences, cfg.max_batch_tokens)
    prompts = [prompt_ids(tokenizer, q.text) for q in queries]
    n, limit = cfg.step_beam_size * cfg.num_rollouts, cfg.max_step_tokens + cfg.max_rollout_tokens
    start = clock()
    while engine.cost.generated_tokens < tokens:
        engine.generate(prompts, n=n, temperature=cfg.temperature, max_new_tokens=limit)
    return {"seconds": clock() - start, "tokens": engine.cost.generated_tokens}


def rate(run: dict) -> float:
    return run["tokens"] / run["seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the toy is fastest on one)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement; the fastest counts")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="this process's CPU seconds, or wall")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--toy", help="a built toy folder (model/, queries.jsonl); default: see above")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (on a GPU, use --clock wall)")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    params = load_params(args.params, args.set)
    cfg = params.sampling
    toy = Path(args.toy) if args.toy else toy_dir(params)
    model, tokenizer = load_model(str(toy / "model"), device=args.device)
    queries = read_queries(toy / "queries.jsonl")
    if len(queries) < max(args.sizes):
        parser.error(f"{toy} has {len(queries)} queries, fewer than {max(args.sizes)}")
    print(
        f"model {toy / 'model'} ({sum(p.numel() for p in model.parameters()):,} parameters) on {args.device}, "
        f"{args.threads} thread(s); "
        f"M={cfg.step_beam_size} N={cfg.num_rollouts} K={cfg.num_foresight_steps} score={cfg.foresight_score} "
        f"batch_queries={cfg.batch_queries} max_batch_sequences={cfg.max_batch_sequences}; "
        f"{args.clock} seconds, best of {args.repeats}"
    )
    foresight(model, tokenizer, queries[:8], cfg)  # warm-up: first-call costs out of the timings
    hf_generate(model, tokenizer, queries[:8], cfg.model_copy(update={"max_batch_sequences": 8}), 1)

    header = (
        f"{'queries':>7} | {'per-query tok/s':>15} | {'ours tok/s':>10} | {'ceiling tok/s (hf / engine)':>27} | "
        f"{'ours/per-query':>14} | {'ours/ceiling':>12} | {'ours s/query':>12} | {'tokens':>7} | {'prefill':>7} | calls"
    )
    print(header)
    print("-" * len(header))
    per_query_seconds = {}
    for size in args.sizes:
        qs = queries[:size]
        runs: dict[str, list[dict]] = {"ours": [], "per_query": [], "hf": [], "plain": []}
        for _ in range(args.repeats):  # interleaved, so a busy spell on a shared machine hits all four
            runs["ours"].append(foresight(model, tokenizer, qs, cfg))
            runs["per_query"].append(foresight(model, tokenizer, qs, cfg.model_copy(update={"batch_queries": 1})))
            runs["hf"].append(hf_generate(model, tokenizer, qs, cfg, runs["ours"][-1]["tokens"]))
            runs["plain"].append(engine_generate(model, tokenizer, qs, cfg, runs["ours"][-1]["tokens"]))
        ours, per_query, hf, plain = (max(r, key=rate) for r in runs.values())
        ceiling = max(rate(hf), rate(plain))
        per_query_seconds[size] = ours["seconds"] / size
        print(
            f"{size:>7} | {rate(per_query):>15,.0f} | {rate(ours):>10,.0f} | "
            f"{f'{rate(hf):,.0f} / {rate(plain):,.0f}':>27} | {rate(ours) / rate(per_query):>13.1f}x | "
            f"{rate(ours) / ceiling:>12.2f} | {per_query_seconds[size]:>12.4f} | {ours['tokens']:>7} | "
            f"{ours['prefill']:>7} | {ours['calls']} vs {per_query['calls']}",
            flush=True,
        )
    lo, hi = min(args.sizes), max(args.sizes)
    if lo != hi:
        ratio = per_query_seconds[hi] / per_query_seconds[lo]
        print(f"cost per query at {hi} / at {lo} queries: {ratio:.2f} (linear within 15%: 0.85-1.15)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
