"""ACO training for one round: reference log-probs, then optimise, then save an HF checkpoint.

Reads top to bottom as the method (docs/ALGORITHM.md section 2): tokenize the round's pairs
exactly as the chat model sees them; take the frozen reference's sequence log-probs from the
cache beside the pairs, or compute them once (with the policy itself before its first update,
or with LoRA the starting policy, the new adapter off: no second model in memory); resume from the last saved
state if a previous attempt was killed; minimise the chosen loss (ACO by default, or a
Table 4 baseline) plus an optional SFT term; save the checkpoint: the whole model with
`save_pretrained`, or with LoRA the adapter and its lineage (genius/training/policy.py).

Runs under `accelerate`: one process on CPU or one GPU (bf16 autocast on GPUs), or many
with `accelerate launch --config_file configs/accelerate/<zero3|fsdp>.yaml` (README,
"Training at scale"). `training.batch_size` is the global batch per optimizer step whatever
the number of processes and `gradient_accumulation_steps`.

Files of a round beside its checkpoint (`work_dir`, default the checkpoint's parent):
reference_logps.safetensors (cache), train_state/ (resumable state, removed once the round
is done), train_steps.jsonl (one row of metrics per optimizer step).
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from genius.algorithm.records import PreferencePair
from genius.config import ModelConfig, TrainingConfig
from genius.engines.lineage import lineage_record
from genius.io import stable_hash, write_jsonl
from genius.layout import RoundPaths
from genius.progress import Progress
from genius.threads import torch_threads
from genius.training.batches import collate_pairs, micro_batches, pair_logps, sequence_tokens, step_batches, tokenize_pairs
from genius.training.launch import make_accelerator
from genius.training.objective import NEEDS_REFERENCE, pair_losses, stat_means, stat_sums, w_distribution
from genius.training.policy import load_policy, save_checkpoint
from genius.training.reference import model_fingerprint, round_reference, tokens_fingerprint
from genius.training.state import find_state, load_state, save_state

LENGTH_BUCKETS = 4  # micro-batches per accumulation step: less padding, a quarter of the activations


def train_round(
    pairs: list[PreferencePair],
    policy_path: str,
    out_dir: str | Path,
    cfg: TrainingConfig,
    model_cfg: ModelConfig,
    reference_path: str | None = None,
    log: Callable[[str], None] = print,
    track: Callable[[dict, int], None] | None = None,
    work_dir: str | Path | None = None,
    term_grad_norms: bool = False,
) -> dict:
    """Train the policy at `policy_path` on `pairs`; save to `out_dir`; return training metrics.

    `reference_path` None means the reference is the policy as it starts the round.
    `term_grad_norms`: also log, per step, the gradient norms of the preference term and of
    the SFT term apart (one more backward pass per micro-batch, for the SFT term alone).
    """
    out_dir = Path(out_dir)
    with torch_threads(cfg.threads):  # tiny models trained 4-20x faster on 1 thread than on 2 (measured, 2-core CPUs)
        work_dir = Path(work_dir or out_dir.parent)
        return _train(
            pairs, policy_path, out_dir, cfg, model_cfg, reference_path, log, track, RoundPaths(work_dir), term_grad_norms
        )


@dataclass
class Run:
    """What one round's training holds while it runs (`_prepare` builds it)."""

    accelerator: object
    model: torch.nn.Module
    tokenizer: object
    examples: list
    adv: torch.Tensor  # (P, 2): each pair's advantages A_w, A_l
    batches: list[list[int]]  # pair indices of every optimizer step
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    micro_size: int  # pairs per process per accumulation step
    pad_id: int


def _train(pairs, policy_path, out_dir, cfg, model_cfg, reference_path, log, track, work: RoundPaths, term_grad_norms) -> dict:
    """The round, in steps: prepare, take the reference, resume, optimise, save."""
    start = time.time()
    run = _prepare(pairs, policy_path, cfg, model_cfg)
    # what a LoRA round's adapter extends, hashed as loaded (not as it may be at the end)
    lineage = lineage_record(policy_path) if cfg.finetune == "lora" and run.accelerator.is_main_process else None
    needs_policy_hash = cfg.save_every or (cfg.loss in NEEDS_REFERENCE and reference_path is None)
    fingerprints = {
        "tokens": tokens_fingerprint(run.examples),
        "policy": model_fingerprint(policy_path) if needs_policy_hash else None,
    }
    ref_start = time.time()
    ref, ref_source = round_reference(
        run.model, run.examples, cfg, model_cfg, reference_path, fingerprints, run.micro_size, run.pad_id,
        run.accelerator, work.reference_logps,
    )  # fmt: skip
    ref_seconds = time.time() - ref_start  # computed, or read back from the cache
    log(f"reference log-probs: {ref_source}")

    run_key = _run_key(fingerprints, cfg, model_cfg, reference_path)
    found = find_state(work.train_state, run_key) if cfg.save_every else None
    first = load_state(found, run.accelerator.unwrap_model(run.model), run.optimizer, run.schedule) if found else 0
    history: list[dict] = found[1]["history"] if found else []  # the killed attempt's steps
    if first:
        log(f"resuming from step {first}/{len(run.batches)} ({found[0]})")
    log(
        f"training on {len(run.examples)} pairs: {len(run.batches)} steps of {cfg.batch_size} pairs "
        f"({run.accelerator.num_processes} process(es) x {run.accelerator.gradient_accumulation_steps} micro-batches), "
        f"loss {cfg.loss}, {cfg.finetune}, precision {run.accelerator.mixed_precision}"
    )
    loop_start = time.time()
    _optimise(run, ref, first, history, cfg, log, track, (work.train_state, run_key), term_grad_norms)
    loop_seconds = time.time() - loop_start

    save_checkpoint(run.model, run.tokenizer, out_dir, run.accelerator, lineage)
    metrics = _summary(history, pairs, cfg, ref_source, first, time.time() - start, loop_seconds, run.accelerator)
    metrics["reference_seconds"] = ref_seconds  # of `seconds` (bench/round_profile.py times the two apart)
    if run.accelerator.is_main_process:
        shutil.rmtree(work.train_state, ignore_errors=True)  # the round is done: its resumable state is spent
        write_jsonl(work.train_steps, history)  # replaced, not rewritten: it may be a link into DVC's cache
        (out_dir / "genius_training.json").write_text(json.dumps({"config": cfg.model_dump(), "metrics": metrics}, indent=2))
    run.accelerator.wait_for_everyone()
    return metrics


def _prepare(pairs, policy_path, cfg, model_cfg) -> Run:
    """The policy loaded, the pairs tokenized, the steps cut, the optimizer and schedule built, all under accelerate."""
    accelerator = make_accelerator(cfg, model_cfg)
    torch.manual_seed(cfg.seed)
    model, tokenizer = load_policy(policy_path, model_cfg, cfg)
    # what a LoRA round's adapter extends, hashed as loaded (not as it may be at the end)
    lineage = lineage_record(policy_path) if cfg.finetune == "lora" and accelerator.is_main_process else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    examples = tokenize_pairs(tokenizer, pairs)
    adv = torch.tensor([[p.adv_chosen, p.adv_rejected] for p in pairs], dtype=torch.float32).reshape(-1, 2)

    world, accumulation = accelerator.num_processes, cfg.gradient_accumulation_steps
    micro_size = max(1, math.ceil(cfg.batch_size / (world * accumulation)))
    # each accumulation step is cut into up to LENGTH_BUCKETS micro-batches of similar length
    accelerator.gradient_accumulation_steps = accumulation * min(LENGTH_BUCKETS, micro_size)
    if accelerator.state.deepspeed_plugin is not None:  # without a DataLoader DeepSpeed cannot infer these (untested here)
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
        ds_config["train_micro_batch_size_per_gpu"] = math.ceil(micro_size / min(LENGTH_BUCKETS, micro_size))
        ds_config["gradient_clipping"] = cfg.max_grad_norm
    batches = step_batches(len(examples), cfg.batch_size, cfg.epochs, cfg.seed)
    total_steps, warmup = len(batches), int(cfg.warmup_ratio * len(batches))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(linear_warmup_decay, warmup=warmup, total=total_steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    return Run(accelerator, model, tokenizer, examples, adv.to(accelerator.device), batches, optimizer, schedule, micro_size, pad_id)


def _optimise(run: Run, ref, first: int, history: list[dict], cfg, log, track, state: tuple[Path, str], term_grad_norms) -> None:
    """Optimizer steps `first`.. to the end, each appended to `history`; a resumable state (`state`: its
    folder and run key) every `save_every` steps; `term_grad_norms`: see train_round."""
    total_steps, accelerator = len(run.batches), run.accelerator
    progress = Progress(log, total_steps, "steps")
    progress(first)
    for step in range(first, total_steps):
        args = (run.batches[step], run.examples, ref, run.adv, run.model, run.optimizer, run.schedule, accelerator, cfg, run.pad_id)
        row = _step(*args, term_grad_norms) | {"step": step + 1}
        history.append(row)
        if track and accelerator.is_main_process:
            track(row, step + 1)
        if (step + 1) % max(1, total_steps // 10) == 0 or step + 1 == total_steps:
            log(f"step {step + 1}/{total_steps} loss {row['loss']:.4f} reward acc {row['reward_accuracy']:.2f} w {row['w_mean']:.3f}")
        progress(step + 1)
        last = step + 1 == total_steps
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and not last and accelerator.is_main_process:
            folder, key = state
            save_state(folder, step + 1, key, accelerator.unwrap_model(run.model), run.optimizer, run.schedule, history)


def linear_warmup_decay(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up over `warmup` steps, then linear decay to 0 (paper B.2)."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _run_key(fingerprints: dict, cfg: TrainingConfig, model_cfg: ModelConfig, reference_path) -> str:
    """What a resumable state belongs to: the pairs, the models and every setting that changes the result."""
    settings = {k: v for k, v in cfg.model_dump().items() if k not in ("save_every", "threads")}
    parts = fingerprints | {"reference": reference_path, "training": settings, "model": model_cfg.model_dump()}
    return stable_hash(parts)


class TrainingDiverged(RuntimeError):
    """The loss or the gradient is not finite: the round fails and saves nothing."""


def _step(
    batch, examples, ref, adv, model, optimizer, schedule, accelerator, cfg, pad_id, term_grad_norms=False
) -> dict:
    """One optimizer step over a global batch of pair indices; returns its metrics."""
    started = time.perf_counter()
    world, micro_count = accelerator.num_processes, accelerator.gradient_accumulation_steps
    # Each micro-batch's loss is its share of the global mean: accelerate divides by the
    # accumulation steps and data parallelism averages over processes, so undo both here.
    scale = micro_count * world / len(batch)
    lr = optimizer.param_groups[0]["lr"]
    sums, tokens, grad_norm, terms = 0, torch.zeros((), device=accelerator.device), float("nan"), {}
    sft_grads = _TermGradients(model) if term_grad_norms else None
    for micro in micro_batches(batch, examples, world, accelerator.process_index, micro_count):
        weight = 1.0 if micro else 0.0  # an empty share still runs (on one pair, weight 0): see micro_batches
        micro = micro or batch[:1]
        with accelerator.accumulate(model):
            chunk = [examples[i] for i in micro]
            chosen, rejected, len_w, len_l = pair_logps(model, collate_pairs(chunk, pad_id, accelerator.device))
            weights = torch.full((len(micro),), weight, device=accelerator.device)
            lengths = torch.stack([len_w, len_l], 1)
            total, parts = pair_losses(cfg, chosen, rejected, lengths, None if ref is None else ref[micro], adv[micro])
            if sft_grads is not None:  # accelerate divides the loss by the micro-batch count: so does this
                sft_grads.add((parts["sft_term"] * weights).sum() * scale / accelerator.gradient_accumulation_steps)
            accelerator.backward((total * weights).sum() * scale)
            sums = sums + stat_sums(total, parts, weights)
            tokens += sequence_tokens(chunk) * weight
            if accelerator.sync_gradients:
                terms = sft_grads.norms() if sft_grads is not None else {}
                grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
                if not (math.isfinite(grad_norm) and torch.isfinite(total).all()):  # before the step touches the weights
                    raise TrainingDiverged(
                        f"non-finite {'gradient norm' if not math.isfinite(grad_norm) else 'loss'} at learning rate {lr:g}: "
                        "training stopped before the step, no checkpoint saved (lower training.learning_rate or raise training.beta)"
                    )
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
    sums, tokens = accelerator.reduce(sums, "sum"), int(accelerator.reduce(tokens, "sum"))
    seconds = time.perf_counter() - started
    return stat_means(sums) | terms | {
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens": tokens,
        "tokens_per_second": tokens / seconds,
        "seconds": seconds,
    }


class _TermGradients:
    """The SFT term's gradient summed over a step's micro-batches, to split the step's gradient in two.

    The preference term's gradient is then the step's gradient minus the SFT term's: both
    norms are taken before clipping. On more than one process, each process measures the
    SFT term of its own share only (its accumulated gradient is not all-reduced).
    """

    def __init__(self, model):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.sft = [torch.zeros_like(p) for p in self.params]

    def add(self, sft_term: torch.Tensor) -> None:
        if not sft_term.requires_grad:  # a loss without an SFT term
            return
        grads = torch.autograd.grad(sft_term, self.params, retain_graph=True, allow_unused=True)
        for acc, g in zip(self.sft, grads):
            if g is not None:
                acc += g

    def norms(self) -> dict[str, float]:
        total = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        norm = lambda gs: float(torch.linalg.vector_norm(torch.stack([g.float().norm() for g in gs])))  # noqa: E731
        return {
            "grad_norm_sft": norm(self.sft),
            "grad_norm_preference": norm([t - s for t, s in zip(total, self.sft)]),
        }


def _summary(history, pairs, cfg, ref_source, first, seconds, loop_seconds, accelerator) -> dict:
    """The round's training metrics for train.json: means over all steps, the last step, w's distribution.

    Speed counts only the steps this attempt ran (`first` on), over this attempt's loop time.
    """
    mean = lambda key: sum(h[key] for h in history) / len(history) if history else None  # noqa: E731
    last = history[-1] if history else {}
    tokens = sum(h["tokens"] for h in history[first:])
    peak = (
        torch.cuda.max_memory_allocated()
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "pairs": len(pairs),
        "steps": len(history),
        "resumed_from_step": first,
        "loss": cfg.loss,
        "finetune": cfg.finetune,
        "loss_first": history[0]["loss"] if history else None,
        "loss_last": last.get("loss"),
        "loss_mean": mean("loss"),
        "reward_chosen": mean("reward_chosen"),
        "reward_rejected": mean("reward_rejected"),
        "reward_margin": mean("reward_margin"),
        "reward_accuracy": mean("reward_accuracy"),
        "reward_accuracy_last": last.get("reward_accuracy"),
        "w_mean": mean("w_mean"),
        "w_below_one": mean("w_below_one"),
        "pull_preference": mean("pull_preference"),  # -dL/dlog pi(T_w) of each term, per pair (objective.py)
        "pull_sft": mean("pull_sft"),
        "w": w_distribution(pairs, cfg) if cfg.loss == "aco" else {},
        "lr_peak": max((h["lr"] for h in history), default=None),
        "lr_last": last.get("lr"),
        "reference": ref_source,
        "tokens": tokens,
        "tokens_per_second": tokens / loop_seconds if loop_seconds > 0 else None,
        "peak_memory_mb": peak / 2**20,
        "precision": str(accelerator.mixed_precision),
        "processes": accelerator.num_processes,
        "seconds": seconds,
    }
