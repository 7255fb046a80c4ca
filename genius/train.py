"""ACO training for one round: reference log-probs, then optimise, then save an HF checkpoint.

Reads top to bottom as the method (ALGORITHM.md section 2): tokenize the round's pairs
exactly as the chat model sees them, compute the frozen reference's sequence log-probs once
(with the policy itself before its first update when the reference is the previous policy:
no second model in memory), then minimise the ACO (or DPO) loss, plus an optional SFT term
on the positive, and save the result with `save_pretrained`.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from genius.config import ModelConfig, TrainingConfig
from genius.engine import load_model
from genius.losses import aco_loss, dpo_loss
from genius.sampling import prompt_ids


def tokenize_pairs(tokenizer, pairs: list[dict]) -> list[tuple[list[int], list[int], list[int]]]:
    """(prompt, chosen, rejected) token ids; a complete response ends with EOS."""
    eos = [tokenizer.eos_token_id]

    def response(text: str, complete: bool) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] + (eos if complete else [])

    return [
        (prompt_ids(tokenizer, p["query"]), response(p["chosen"], p["chosen_complete"]), response(p["rejected"], p["rejected_complete"]))
        for p in pairs
    ]


def collate(sequences: list[tuple[list[int], list[int]]], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    """Right-padded (input_ids, attention_mask, response_mask), each (B, L), from (prompt, response)."""
    width = max(len(p) + len(r) for p, r in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    response = torch.zeros_like(ids)
    for i, (p, r) in enumerate(sequences):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        attention[i, : len(p) + len(r)] = 1
        response[i, len(p) : len(p) + len(r)] = 1
    return ids.to(device), attention.to(device), response.to(device)


def sequence_logps(model, ids, attention, response) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log pi(response | prompt) per row, shape (B,), and the response lengths (B,)."""
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    token_logps = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    mask = response[:, 1:].float()
    return (token_logps * mask).sum(-1), mask.sum(-1)


@torch.no_grad()
def reference_logps(model, examples, batch_size: int, pad_id: int) -> torch.Tensor:
    """(P, 2) reference log-probs of (chosen, rejected) for every pair, computed once."""
    model.eval()
    out = []
    for b in range(0, len(examples), batch_size):
        chunk = examples[b : b + batch_size]
        seqs = [(p, c) for p, c, _ in chunk] + [(p, r) for p, _, r in chunk]
        logps, _ = sequence_logps(model, *collate(seqs, pad_id, model.device))
        out.append(torch.stack([logps[: len(chunk)], logps[len(chunk) :]], dim=1).cpu())
    return torch.cat(out)


def train_round(
    pairs: list[dict],
    policy_path: str,
    out_dir: str | Path,
    cfg: TrainingConfig,
    model_cfg: ModelConfig,
    reference_path: str | None = None,
    log: Callable[[str], None] = print,
    track: Callable[[dict, int], None] | None = None,
) -> dict:
    """Train the policy at `policy_path` on `pairs`; save to `out_dir`; return training metrics.

    `reference_path` None means the reference is the policy as it starts the round.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)  # tiny models train 4-20x faster on 1 thread here (INTEGRATION.md)
    try:
        return _train(pairs, policy_path, Path(out_dir), cfg, model_cfg, reference_path, log, track)
    finally:
        torch.set_num_threads(threads)


def _train(pairs, policy_path, out_dir, cfg, model_cfg, reference_path, log, track) -> dict:
    start = time.time()
    torch.manual_seed(cfg.seed)
    load = lambda path: load_model(path, model_cfg.dtype, model_cfg.device, model_cfg.trust_remote_code)  # noqa: E731
    model, tokenizer = load(policy_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    examples = tokenize_pairs(tokenizer, pairs)

    if reference_path is None:
        ref = reference_logps(model, examples, cfg.batch_size, pad_id)
    else:
        reference, _ = load(reference_path)
        ref = reference_logps(reference, examples, cfg.batch_size, pad_id)
        del reference

    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_ratio * total_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay to 0 (paper B.2)
        optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total_steps - s) / max(1, total_steps - warmup))
    )
    log(f"training on {len(examples)} pairs: {cfg.epochs} epochs x {steps_per_epoch} steps, loss {cfg.loss}")

    history: list[dict] = []
    tokens = 0
    order = list(range(len(examples)))
    rng = random.Random(cfg.seed)
    model.train()
    for epoch in range(cfg.epochs):
        rng.shuffle(order)
        for b in range(0, len(order), cfg.batch_size):
            idx = order[b : b + cfg.batch_size]
            chunk = [examples[i] for i in idx]
            seqs = [(p, c) for p, c, _ in chunk] + [(p, r) for p, _, r in chunk]
            ids, attention, response = collate(seqs, pad_id, model.device)
            logps, lengths = sequence_logps(model, ids, attention, response)
            n = len(chunk)
            stats = _loss(logps[:n], logps[n:], ref[idx].to(model.device), [pairs[i] for i in idx], lengths[:n], cfg)
            optimizer.zero_grad(set_to_none=True)
            stats["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            schedule.step()
            tokens += int(attention.sum())
            row = {k: v.item() for k, v in stats.items()} | {"grad_norm": float(grad_norm), "lr": schedule.get_last_lr()[0]}
            history.append(row)
            if track:
                track(row, len(history))
            if len(history) % max(1, total_steps // 10) == 0 or len(history) == total_steps:
                log(f"step {len(history)}/{total_steps} loss {row['loss']:.4f} reward acc {row['reward_accuracy']:.2f} w {row['w_mean']:.3f}")

    _save(model, tokenizer, out_dir)
    seconds = time.time() - start
    mean = lambda key: sum(h[key] for h in history) / len(history) if history else float("nan")  # noqa: E731
    metrics = {
        "pairs": len(examples),
        "steps": len(history),
        "loss_first": history[0]["loss"] if history else float("nan"),
        "loss_last": history[-1]["loss"] if history else float("nan"),
        "reward_accuracy": mean("reward_accuracy"),
        "reward_margin": mean("reward_margin"),
        "w_mean": mean("w_mean"),
        "w_below_one": mean("w_below_one"),
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
    }
    (out_dir / "genius_training.json").write_text(json.dumps({"config": cfg.__dict__, "metrics": metrics}, indent=2))
    return metrics


def _loss(chosen, rejected, ref, pairs, chosen_lengths, cfg: TrainingConfig) -> dict:
    """The batch loss and what to log; `ref` is (B, 2) reference log-probs."""
    adv_w = torch.tensor([p["adv_chosen"] for p in pairs], device=chosen.device)
    adv_l = torch.tensor([p["adv_rejected"] for p in pairs], device=chosen.device)
    if cfg.loss == "aco":
        losses, r_w, r_l, w = aco_loss(chosen, rejected, ref[:, 0], ref[:, 1], adv_w, adv_l, cfg.beta, cfg.alpha, cfg.calibration_clip)
    else:
        losses, r_w, r_l = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], cfg.beta)
        w = torch.ones_like(losses)
    sft = -(chosen / chosen_lengths.clamp(min=1)).mean()  # mean token NLL of the positive
    loss = losses.mean() + cfg.sft_weight * sft
    return {
        "loss": loss,
        "preference_loss": losses.mean().detach(),
        "sft_loss": sft.detach(),
        "reward_chosen": r_w.mean(),
        "reward_rejected": r_l.mean(),
        "reward_margin": (r_w - r_l).mean(),
        "reward_accuracy": (r_w > r_l).float().mean(),
        "w_mean": w.mean(),
        "w_below_one": (w < 1).float().mean(),
    }


def _save(model, tokenizer, out_dir: Path) -> None:
    """save_pretrained into a temp folder, then rename: a crash never leaves half a checkpoint."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
