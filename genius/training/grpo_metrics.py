"""What a user watches during a GRPO round: TRL's logs as rows of train_steps.jsonl, and the round's summary."""

from __future__ import annotations

import math
import resource

import torch
from transformers import TrainerCallback

from genius.config import GrpoConfig, TrainingConfig


ROW_KEYS = {  # train_steps.jsonl name -> TRL's log name
    "reward": "reward",
    "reward_std": "reward_std",
    "majority_agreement": "majority_agreement",
    "majority_correct": "majority_correct",  # measurement only, where labels exist
    "answered": "answered",  # share of responses with a final answer
    "entropy": "entropy",  # mean token entropy of the policy over the responses
    "response_length": "completions/mean_length",
    "truncated": "completions/clipped_ratio",  # share of responses cut at max_completion_tokens
    "kl": "kl",  # to the reference, per token (beta > 0)
    "clip_ratio": "clip_ratio/region_mean",
    "zero_std_groups": "frac_reward_zero_std",  # groups whose responses all scored alike: no gradient
    "loss": "loss",
    "grad_norm": "grad_norm",
    "lr": "learning_rate",
    "seconds": "step_time",
    "generation_seconds": "generation_seconds",
}


def step_rows(log_history: list[dict], cfg: GrpoConfig) -> list[dict]:
    """One row per optimizer step from TRL's log history (logging_steps=1), in the project's names.

    generated_tokens: response tokens sampled for the step; prefill_tokens: prompt tokens the
    sampler ran through the policy (the project's engine: each query's prompt once for its G
    rows; TRL's generate: once per row); tokens: prompt + response tokens the update ran over
    (a batch reused by num_iterations > 1 counts again). Update seconds are the step's seconds
    less generation: rewards, reference and loss passes, the optimizer.
    """
    rows, seen, batch_tokens = [], 0.0, 0
    for logs in log_history:
        if "loss" not in logs or "step" not in logs:
            continue  # the final summary entry
        row = {name: logs[key] for name, key in ROW_KEYS.items() if key in logs} | {"step": logs["step"]}
        generation = row.get("generation_seconds", 0.0)
        if generation:
            batch_tokens, seen = round(logs["num_tokens"] - seen), logs["num_tokens"]  # TRL counts in floats
        update = row["seconds"] - generation
        generated = round(row["response_length"] * cfg.batch_queries * cfg.num_generations) if generation else 0
        prompts = batch_tokens - generated if generation else 0  # every row's prompt, as the update sees them
        rows.append(row | {
            "generated_tokens": generated,
            "prefill_tokens": prompts // cfg.num_generations if cfg.engine == "genius" else prompts,
            "tokens": batch_tokens,
            "generation_tokens_per_second": generated / generation if generation else None,
            "update_tokens_per_second": batch_tokens / update if update > 0 else None,
        })  # fmt: skip
    return rows


class StepLog(TrainerCallback):
    """Each optimizer step: its row into `history` and to `track` (wandb); a line to `log` every tenth of the round."""

    def __init__(self, history: list, cfg: GrpoConfig, log, track):
        self.history, self.cfg, self.log, self.track = history, cfg, log, track
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs or not state.is_world_process_zero:
            return
        self.logs.append(logs | {"step": state.global_step})
        row = step_rows(self.logs, self.cfg)[-1]  # token counts are differences of TRL's running total
        self.history.append(row)
        if self.track:
            self.track(row, state.global_step)
        total = state.max_steps
        if state.global_step % max(1, total // 10) == 0 or state.global_step == total:
            get = lambda key: row.get(key, math.nan)  # noqa: E731  (kl: only with beta > 0)
            self.log(
                f"step {state.global_step}/{total} reward {get('reward'):.3f} agreement {get('majority_agreement'):.2f} "
                f"entropy {get('entropy'):.3f} length {get('response_length'):.1f} kl {get('kl'):.4f}"
            )


def round_summary(
    steps: list[dict], reward: str, cfg: GrpoConfig, training: TrainingConfig, queries: int, resumed: int, seconds: float, trainer
) -> dict:
    """The round's training metrics for train.json: first, last and mean of what a user watches, cost and speed.

    Cost and speed count only the steps this attempt ran (from `resumed` on): the rollouts
    (generated and prefilled tokens, generation seconds) and the update (its tokens and seconds).
    """
    first, last = (steps[0], steps[-1]) if steps else ({}, {})
    ran = steps[resumed:]
    total = lambda key: sum(r.get(key) or 0 for r in ran)  # noqa: E731
    generation = total("generation_seconds")
    update = total("seconds") - generation
    watched = ("reward", "majority_agreement", "majority_correct", "answered", "entropy", "response_length", "kl")
    peak = (
        torch.cuda.max_memory_allocated()
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "method": "grpo",
        "reward": reward,
        "engine": cfg.engine,
        "queries": queries,
        "steps": len(steps),
        "resumed_from_step": resumed,
        "finetune": training.finetune,
        **{f"{k}_{which}": row.get(k) for k in watched for which, row in (("first", first), ("last", last))},
        **{f"{k}_mean": _mean(steps, k) for k in watched},
        "lr_peak": max((r["lr"] for r in steps), default=None),
        "generated_tokens": total("generated_tokens"),
        "prefill_tokens": total("prefill_tokens"),
        "generation_seconds": generation,
        "generation_tokens_per_second": total("generated_tokens") / generation if generation > 0 else None,
        "tokens": total("tokens"),
        "update_seconds": update,
        "update_tokens_per_second": total("tokens") / update if update > 0 else None,
        "peak_memory_mb": peak / 2**20,
        "precision": "bf16" if trainer.args.bf16 else "fp32",
        "processes": trainer.accelerator.num_processes,
        "seconds": seconds,
    }


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None
