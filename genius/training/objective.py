"""The per-pair training objective chosen by `training.loss`, and what each step logs.

`pair_losses` maps a batch's log-probs to per-pair losses through the pure functions of
`genius.algorithm.losses`; the step statistics are sums over pairs (so micro-batches and processes add
up exactly) turned into means once per optimizer step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genius.algorithm.losses import aco_loss, calibration_weight, dpo_loss, ipo_loss, ropo_loss, sft_loss, simpo_loss
from genius.algorithm.records import PreferencePair
from genius.config import TrainingConfig

NEEDS_REFERENCE = {"aco", "dpo", "ipo", "ropo"}  # SimPO and SFT are reference-free
STATS = (
    "loss",
    "preference_loss",
    "sft_loss",
    "reward_chosen",
    "reward_rejected",
    "reward_margin",
    "reward_accuracy",
    "w_mean",
    "w_below_one",
)


def pair_losses(
    cfg: TrainingConfig, chosen: Tensor, rejected: Tensor, lengths: Tensor, ref: Tensor | None, adv: Tensor
) -> tuple[Tensor, dict]:
    """Per-pair loss (B,) to minimise, and per-pair values to log, each (B,).

    chosen, rejected: summed policy log-probs (B,); lengths: (B, 2) response tokens of
    (chosen, rejected); ref: (B, 2) reference log-probs or None; adv: (B, 2) (A_w, A_l).
    The SFT term (`sft_weight`) is added to every preference loss; with `loss: sft` the
    loss is that term alone and the logged rewards are mean token log-probs.
    """
    len_w, len_l = lengths[:, 0], lengths[:, 1]
    ref_w, ref_l = (ref[:, 0], ref[:, 1]) if ref is not None else (None, None)
    w = torch.ones_like(chosen)
    if cfg.loss == "aco":
        losses, r_w, r_l, w = aco_loss(
            chosen, rejected, ref_w, ref_l, adv[:, 0], adv[:, 1], cfg.beta, cfg.alpha, cfg.calibration_clip
        )
    elif cfg.loss == "dpo":
        losses, r_w, r_l = dpo_loss(chosen, rejected, ref_w, ref_l, cfg.beta)
    elif cfg.loss == "ipo":
        losses, r_w, r_l = ipo_loss(chosen, rejected, ref_w, ref_l, len_w, len_l, cfg.beta)
    elif cfg.loss == "simpo":
        losses, r_w, r_l = simpo_loss(chosen, rejected, len_w, len_l, cfg.beta, cfg.simpo_gamma)
    elif cfg.loss == "ropo":
        losses, r_w, r_l = ropo_loss(chosen, rejected, ref_w, ref_l, cfg.beta, cfg.ropo_gamma, cfg.ropo_eta)
    elif cfg.loss == "sft":
        losses = sft_loss(chosen, len_w)
        r_w, r_l = (chosen / len_w.clamp(min=1)).detach(), (rejected / len_l.clamp(min=1)).detach()
    else:
        raise ValueError(f"unknown loss {cfg.loss!r}")
    sft = sft_loss(chosen, len_w)
    total = losses if cfg.loss == "sft" else losses + cfg.sft_weight * sft
    return total, {
        "preference_loss": losses.detach(),
        "sft_loss": sft.detach(),
        "reward_chosen": r_w,
        "reward_rejected": r_l,
        "w": w,
    }


def stat_sums(total: Tensor, parts: dict, weight: Tensor) -> Tensor:
    """(len(STATS) + 1,) weighted sums over the pairs of a micro-batch, the last entry the pair count."""
    r_w, r_l, w = parts["reward_chosen"], parts["reward_rejected"], parts["w"]
    values = [
        total.detach(),
        parts["preference_loss"],
        parts["sft_loss"],
        r_w,
        r_l,
        r_w - r_l,
        (r_w > r_l).float(),
        w,
        (w < 1).float(),
    ]
    return torch.stack([(v.float() * weight).sum() for v in values] + [weight.sum()])


def stat_means(sums: Tensor) -> dict[str, float]:
    """Means per pair from summed statistics (`stat_sums`, added over micro-batches and processes)."""
    count = max(float(sums[-1]), 1.0)
    return {name: float(v) / count for name, v in zip(STATS, sums[:-1])}


def w_distribution(pairs: list[PreferencePair], cfg: TrainingConfig) -> dict[str, float]:
    """How far ACO's calibration weight w departs from 1 over the round's pairs.

    w depends on the advantages only, not on the model, so its distribution is known before
    training: it says how often ACO differs from DPO at all (docs/ALGORITHM.md section 2).
    """
    if not pairs:
        return {}
    adv = torch.tensor([[p.adv_chosen, p.adv_rejected] for p in pairs], dtype=torch.float64)
    w = calibration_weight(adv[:, 0], adv[:, 1], cfg.alpha, cfg.calibration_clip)
    q = torch.quantile(w, torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0], dtype=torch.float64)).tolist()
    names = ("min", "p10", "p25", "p50", "p75", "p90", "max")
    return {"mean": float(w.mean()), "below_one": float((w < 1).double().mean()), **dict(zip(names, q))}
