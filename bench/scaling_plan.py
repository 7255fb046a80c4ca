"""A paper-scale plan: tokens, FLOPs and GPU-hours of one Genius round, from the algorithm's counts.

Counts follow our sampler (genius/algorithm/sampling.py). Per query, timestamp k = 1..K expands every
live beam into N candidate steps and rolls each out to the end of the response: 1 beam at
k = 1 (the empty prefix), M beams after, so N + (K-1)*M*N candidates (the often quoted
K*M*N is its upper bound). A candidate generates a step and a rollout. The foresight score
is the mean log-prob of tokens the engine generated, returned by that same forward pass:
scoring costs no extra pass. Prefill: the prompt plus the beam's prefix, once per beam and
timestamp (the N candidates share it, the rollout continues on the step's KV cache).

Training: one pair per timestamp at most, both responses of a pair the length of a full
trajectory at k (k steps and a rollout); the policy takes forward and backward passes
(6 x parameters x tokens), the reference one forward pass (2 x parameters x tokens).
Generation and prefill are forward passes: 2 x parameters x tokens. Attention's own FLOPs
(~2 x layers x context x width per token, ~2% at 1K tokens for an 8B model) are left out.

GPU-hours: sampling from the generation throughput of one engine (tokens generated per
second, `--tokens-per-second`, measured or assumed: say which); training from FLOPs at an
assumed model-FLOPs utilisation (MFU) of the GPU's dense bf16 peak and, given a measured
forward (scoring) throughput `--score-tokens-per-second`, from that: the reference is one
forward pass per token, the policy's forward and backward three.

    python -m bench.scaling_plan --tokens-per-second 11841 --score-tokens-per-second 33428 --gpu H200 \
        --throughput-source "measured: bench/engine_throughput.py, H200, transformers engine"
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

PEAK_BF16 = {"A100": 312e12, "H100": 989e12, "H200": 989e12}  # dense bf16 FLOP/s, vendor datasheets


@dataclass(frozen=True)
class Round:
    queries: int
    step_beam_size: int  # M
    num_rollouts: int  # N
    num_foresight_steps: int  # K
    step_tokens: float  # mean tokens of one step
    rollout_tokens: float  # mean tokens of one rollout (the rest of a response)
    prompt_tokens: float  # mean tokens of a query in its chat template
    pairs_per_query: float  # at most K; fewer when chosen and rejected coincide or responses end early


def candidates_per_query(r: Round) -> int:
    """N at k = 1 (one empty beam), M*N at each later timestamp."""
    return r.num_rollouts + (r.num_foresight_steps - 1) * r.step_beam_size * r.num_rollouts


def generated_per_query(r: Round) -> float:
    return candidates_per_query(r) * (r.step_tokens + r.rollout_tokens)


def prefill_per_query(r: Round) -> float:
    """Prompt + prefix of k-1 steps, once per beam at each timestamp k."""
    beams = [1] + [r.step_beam_size] * (r.num_foresight_steps - 1)
    return sum(b * (r.prompt_tokens + k * r.step_tokens) for k, b in enumerate(beams))


def pair_tokens_per_query(r: Round) -> float:
    """Chosen + rejected sequences: prompt and a trajectory of k steps and a rollout, mean over k."""
    mean_trajectory = sum(k * r.step_tokens + r.rollout_tokens for k in range(1, r.num_foresight_steps + 1))
    mean_trajectory /= r.num_foresight_steps
    return r.pairs_per_query * 2 * (r.prompt_tokens + mean_trajectory)


def plan(
    r: Round,
    parameters: float,
    tokens_per_second: float,
    gpus_per_engine: int,
    sampling_gpus: int,
    training_gpus: int,
    gpu: str,
    mfu: float,
    epochs: int,
    score_tokens_per_second: float | None = None,
) -> dict:
    """The plan's quantities, by name; hours are GPU-hours unless they say wall."""
    generated = r.queries * generated_per_query(r)
    prefill = r.queries * prefill_per_query(r)
    pair_tokens = r.queries * pair_tokens_per_query(r) * epochs
    sampling_flops = 2 * parameters * (generated + prefill)
    training_flops = 6 * parameters * pair_tokens
    reference_flops = 2 * parameters * r.queries * pair_tokens_per_query(r)  # once per round
    sampling_gpu_hours = generated / tokens_per_second * gpus_per_engine / 3600
    training_gpu_hours = (training_flops + reference_flops) / (PEAK_BF16[gpu] * mfu) / 3600
    measured = {}
    if score_tokens_per_second:  # forward-pass seconds: 3 per policy token (fwd + bwd), 1 per reference token
        reference_tokens = r.queries * pair_tokens_per_query(r)
        hours = (3 * pair_tokens + reference_tokens) / score_tokens_per_second / 3600
        measured = {
            "training GPU-hours, from the scoring rate": hours,
            "training wall hours, from it": hours / training_gpus,
        }
    return {
        "candidates per query": candidates_per_query(r),
        "tokens generated (and scored) per query": generated_per_query(r),
        "tokens generated": generated,
        "tokens prefilled": prefill,
        "pairs": r.queries * r.pairs_per_query,
        "training tokens (chosen + rejected, all epochs)": pair_tokens,
        "sampling FLOPs (2 x P x tokens)": sampling_flops,
        "training FLOPs (6 x P x tokens)": training_flops,
        "reference FLOPs (2 x P x tokens)": reference_flops,
        "sampling GPU-hours": sampling_gpu_hours,
        "sampling wall hours": sampling_gpu_hours / sampling_gpus,
        "training GPU-hours, from MFU": training_gpu_hours,
        "training wall hours, from MFU": training_gpu_hours / training_gpus,
        **measured,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=25_000)
    p.add_argument("-M", "--step-beam-size", type=int, default=2)
    p.add_argument("-N", "--num-rollouts", type=int, default=4)
    p.add_argument("-K", "--num-foresight-steps", type=int, default=4)
    p.add_argument("--step-tokens", type=float, default=64, help="mean tokens per step (assumed)")
    p.add_argument("--rollout-tokens", type=float, default=384, help="mean tokens per rollout (assumed)")
    p.add_argument("--prompt-tokens", type=float, default=96, help="mean tokens per templated query (assumed)")
    p.add_argument("--pairs-per-query", type=float, default=None, help="default K (the paper: 100K pairs, 25K queries)")
    p.add_argument("--parameters", type=float, default=8.03e9, help="Llama-3.1-8B: 8.03e9")
    p.add_argument("--tokens-per-second", type=float, required=True, help="generated tokens/s of one engine")
    p.add_argument("--score-tokens-per-second", type=float, default=None, help="forward-pass tokens/s of one GPU")
    p.add_argument("--throughput-source", default="assumed", help="where these numbers come from (printed)")
    p.add_argument("--gpus-per-engine", type=int, default=1, help="sampling.tensor_parallel_size")
    p.add_argument("--sampling-gpus", type=int, default=32, help="the paper: 32 A100s")
    p.add_argument("--training-gpus", type=int, default=8, help="the paper: 8 A100s")
    p.add_argument("--gpu", choices=sorted(PEAK_BF16), default="H100")
    p.add_argument("--mfu", type=float, default=0.35, help="model FLOPs utilisation of training (assumed)")
    p.add_argument("--epochs", type=int, default=1)
    a = p.parse_args()
    pairs = a.num_foresight_steps if a.pairs_per_query is None else a.pairs_per_query
    r = Round(a.queries, a.step_beam_size, a.num_rollouts, a.num_foresight_steps, a.step_tokens, a.rollout_tokens,
              a.prompt_tokens, pairs)  # fmt: skip
    rows = plan(r, a.parameters, a.tokens_per_second, a.gpus_per_engine, a.sampling_gpus, a.training_gpus, a.gpu,
                a.mfu, a.epochs, a.score_tokens_per_second)  # fmt: skip
    print("| quantity | value |\n|---|---|")
    for k, v in rows.items():
        value = f"{v:.2e}" if "FLOPs" in k else f"{v:,.0f}" if isinstance(v, int) or v >= 100 else f"{v:,.1f}"
        print(f"| {k} | {value} |")
    print(
        f"\nthroughput {a.tokens_per_second:,.0f} generated tokens/s per engine"
        + (f", {a.score_tokens_per_second:,.0f} scored tokens/s per GPU" if a.score_tokens_per_second else "")
        + f" ({a.throughput_source}); "
        f"{a.gpu}, training MFU {a.mfu:.0%} (assumed); {a.sampling_gpus} GPUs sampling, {a.training_gpus} training"
    )


if __name__ == "__main__":
    main()
