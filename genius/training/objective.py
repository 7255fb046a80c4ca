"""The per-pair training objective chosen by `training.loss`, and what each step logs.

`LOSSES` is the table of objectives: a name, the pure function of `genius.algorithm.losses`
it calls, and whether it needs the reference's log-probs. Every objective splits its
per-pair loss into a preference term and an SFT term (NLL of the positive): the preference
losses add `sft_weight` x SFT to their own term, `sft` is the SFT term alone, and ScPO
weighs both of its terms by the vote margin. Adding a loss is a function and a row here, and
its name in `TrainingConfig.loss`.

`pair_losses` maps a batch's log-probs to per-pair losses through the table; the step
statistics are sums over pairs (so micro-batches and processes add up exactly) turned into
means once per optimizer step. Among them, each term's *pull* on the positive,
-dL/d log pi(T_w) per pair: for DPO's and ACO's term it is beta * sigmoid(-z), for the SFT
term sft_weight / |T_w| (docs/RESULTS.md weighs the two).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from genius.algorithm.losses import (
    aco_loss,
    calibration_weight,
    dpo_loss,
    ipo_loss,
    ropo_loss,
    scpo_loss,
    sft_loss,
    simpo_loss,
)
from genius.algorithm.records import PreferencePair
from genius.config import TrainingConfig

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
    "pull_preference",
    "pull_sft",
)


@dataclass(frozen=True)
class Batch:
    """A micro-batch of B pairs, each field (B,): summed policy log-probs, response lengths in
    tokens, reference log-probs (None for reference-free losses) and advantages (A_w, A_l)."""

    chosen: Tensor
    rejected: Tensor
    len_w: Tensor
    len_l: Tensor
    ref_w: Tensor | None
    ref_l: Tensor | None
    adv_w: Tensor
    adv_l: Tensor


Terms = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]  # preference term, SFT term, reward_w, reward_l, w: each (B,)


class Loss(NamedTuple):
    terms: Callable[[Batch, TrainingConfig], Terms]
    needs_reference: bool


def _sft_term(b: Batch, cfg: TrainingConfig) -> Tensor:
    return cfg.sft_weight * sft_loss(b.chosen, b.len_w)


def _aco(b: Batch, cfg: TrainingConfig) -> Terms:
    losses, r_w, r_l, w = aco_loss(
        b.chosen, b.rejected, b.ref_w, b.ref_l, b.adv_w, b.adv_l, cfg.beta, cfg.alpha, cfg.calibration_clip
    )
    return losses, _sft_term(b, cfg), r_w, r_l, w


def _dpo(b: Batch, cfg: TrainingConfig) -> Terms:
    losses, r_w, r_l = dpo_loss(b.chosen, b.rejected, b.ref_w, b.ref_l, cfg.beta)
    return losses, _sft_term(b, cfg), r_w, r_l, torch.ones_like(b.chosen)


def _ipo(b: Batch, cfg: TrainingConfig) -> Terms:
    losses, r_w, r_l = ipo_loss(b.chosen, b.rejected, b.ref_w, b.ref_l, b.len_w, b.len_l, cfg.beta)
    return losses, _sft_term(b, cfg), r_w, r_l, torch.ones_like(b.chosen)


def _simpo(b: Batch, cfg: TrainingConfig) -> Terms:
    losses, r_w, r_l = simpo_loss(b.chosen, b.rejected, b.len_w, b.len_l, cfg.beta, cfg.simpo_gamma)
    return losses, _sft_term(b, cfg), r_w, r_l, torch.ones_like(b.chosen)


def _ropo(b: Batch, cfg: TrainingConfig) -> Terms:
    losses, r_w, r_l = ropo_loss(b.chosen, b.rejected, b.ref_w, b.ref_l, cfg.beta, cfg.ropo_gamma, cfg.ropo_eta)
    return losses, _sft_term(b, cfg), r_w, r_l, torch.ones_like(b.chosen)


def _sft(b: Batch, cfg: TrainingConfig) -> Terms:
    """SFT on the positives: the SFT term alone, unweighted; the logged rewards are mean token log-probs."""
    r_w, r_l = (b.chosen / b.len_w.clamp(min=1)).detach(), (b.rejected / b.len_l.clamp(min=1)).detach()
    return torch.zeros_like(b.chosen).detach(), sft_loss(b.chosen, b.len_w), r_w, r_l, torch.ones_like(b.chosen)


def _scpo(b: Batch, cfg: TrainingConfig) -> Terms:
    """ScPO: w(x) = A_w - A_l, the vote margin, since a self-consistency pair's advantages are vote shares."""
    margin = (b.adv_w - b.adv_l).clamp(min=0)
    losses, nll, r_w, r_l = scpo_loss(b.chosen, b.rejected, b.ref_w, b.ref_l, b.len_w, margin, cfg.beta, cfg.sft_weight)
    return losses, nll, r_w, r_l, margin


LOSSES: dict[str, Loss] = {
    "aco": Loss(_aco, needs_reference=True),  # the paper's Eq. 12
    "dpo": Loss(_dpo, needs_reference=True),  # Table 4 baselines from here to sft
    "ipo": Loss(_ipo, needs_reference=True),
    "simpo": Loss(_simpo, needs_reference=False),
    "ropo": Loss(_ropo, needs_reference=True),
    "sft": Loss(_sft, needs_reference=False),
    "scpo": Loss(_scpo, needs_reference=True),  # self-consistency pairs (genius.algorithm.self_consistency)
}
NEEDS_REFERENCE = {name for name, loss in LOSSES.items() if loss.needs_reference}


def pair_losses(
    cfg: TrainingConfig, chosen: Tensor, rejected: Tensor, lengths: Tensor, ref: Tensor | None, adv: Tensor
) -> tuple[Tensor, dict]:
    """Per-pair loss (B,) to minimise, and per-pair values to log, each (B,).

    chosen, rejected: summed policy log-probs (B,); lengths: (B, 2) response tokens of
    (chosen, rejected); ref: (B, 2) reference log-probs or None; adv: (B, 2) (A_w, A_l).
    `parts["sft_term"]` is the SFT term of the loss with its graph (the rest is the
    preference term), for measuring each term's gradient apart.
    """
    if cfg.loss not in LOSSES:
        raise ValueError(f"unknown loss {cfg.loss!r}; known: {', '.join(LOSSES)}")
    ref_w, ref_l = (ref[:, 0], ref[:, 1]) if ref is not None else (None, None)
    batch = Batch(chosen, rejected, lengths[:, 0], lengths[:, 1], ref_w, ref_l, adv[:, 0], adv[:, 1])
    preference, sft, r_w, r_l, w = LOSSES[cfg.loss].terms(batch, cfg)
    pull_preference, pull_sft = (_pull(term, chosen) for term in (preference, sft))
    return preference + sft, {
        "preference_loss": preference.detach(),
        "sft_loss": sft_loss(chosen, batch.len_w).detach(),
        "sft_term": sft,
        "reward_chosen": r_w,
        "reward_rejected": r_l,
        "w": w,
        "pull_preference": pull_preference,
        "pull_sft": pull_sft,
    }


def _pull(term: Tensor, chosen: Tensor) -> Tensor:
    """-d term / d chosen per pair (B,): a gradient through the loss's elementwise maths only, not the model."""
    if not (term.requires_grad and chosen.requires_grad):
        return torch.zeros_like(chosen).detach()
    (grad,) = torch.autograd.grad(term.sum(), chosen, retain_graph=True)
    return -grad.detach()


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
        parts["pull_preference"],
        parts["pull_sft"],
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
