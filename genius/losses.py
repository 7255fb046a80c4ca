"""Preference losses as pure tensor functions: ACO (paper Eq. 11-12) and DPO.

Every argument is a 1-D tensor of shape (B,) holding, per pair, a sequence log-prob summed
over the response tokens (`*_logps`) or an advantage from foresight sampling (`adv_*`).
Each loss returns per-pair losses, shape (B,), so callers choose the reduction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def calibration_weight(adv_chosen: Tensor, adv_rejected: Tensor, alpha: float, clip: str = "paper") -> Tensor:
    """w = min(1, exp(-(A_l - A_w) / alpha)), Eq. 11; carries no gradient.

    `clip="scripts"` reproduces the released code's max(1, .), under which w never drops
    below 1 and grows in the normal region (ALGORITHM.md section 4). alpha = inf gives w = 1.
    """
    gap = (adv_rejected - adv_chosen).detach()
    if math.isinf(alpha):
        return torch.ones_like(gap)
    w = torch.exp(-gap / alpha)
    if clip == "paper":
        return w.clamp(max=1.0)
    if clip == "scripts":
        return w.clamp(min=1.0)
    raise ValueError(f"calibration clip must be 'paper' or 'scripts', got {clip!r}")


def aco_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    adv_chosen: Tensor,
    adv_rejected: Tensor,
    beta: float,
    alpha: float,
    clip: str = "paper",
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """L_ACO = -log sigmoid(phi_w - w * phi_l), Eq. 12.

    phi = beta * (log pi_theta - log pi_ref) is the implicit reward of each response.
    Returns (losses, chosen_rewards, rejected_rewards, w), each of shape (B,); the rewards
    are detached, for logging.
    """
    phi_w = beta * (policy_chosen_logps - ref_chosen_logps)
    phi_l = beta * (policy_rejected_logps - ref_rejected_logps)
    w = calibration_weight(adv_chosen, adv_rejected, alpha, clip)
    losses = -F.logsigmoid(phi_w - w * phi_l)
    return losses, phi_w.detach(), phi_l.detach(), w


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """L_DPO = -log sigmoid(phi_w - phi_l) (Rafailov et al., 2023; sigmoid variant).

    Returns (losses, chosen_rewards, rejected_rewards), each of shape (B,).
    """
    phi_w = beta * (policy_chosen_logps - ref_chosen_logps)
    phi_l = beta * (policy_rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(phi_w - phi_l), phi_w.detach(), phi_l.detach()
