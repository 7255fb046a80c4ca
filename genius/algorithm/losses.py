"""Preference losses as pure tensor functions: ACO (paper Eq. 11-12), the baselines of the
paper's Table 4 (DPO, IPO, SimPO, ROPO, SFT on the positives), and ScPO's vote-weighted loss.

Every argument is a 1-D tensor of shape (B,) holding, per pair, a sequence log-prob summed
over the response tokens (`*_logps`), a response length in tokens (`*_lengths`, float) or an
advantage from foresight sampling (`adv_*`). Each loss returns per-pair losses, shape (B,),
so callers choose the reduction, and the implicit rewards it optimises (detached, for
logging). Notation: Delta = log pi_theta - log pi_ref, phi = beta * Delta, z = phi_w - phi_l.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def calibration_weight(adv_chosen: Tensor, adv_rejected: Tensor, alpha: float, clip: str = "paper") -> Tensor:
    """w = min(1, exp(-(A_l - A_w) / alpha)), Eq. 11; carries no gradient.

    `clip="scripts"` reproduces the released code's max(1, .), under which w never drops
    below 1 and grows in the normal region (docs/ALGORITHM.md section 4). alpha = inf gives w = 1.
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


def ipo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """L_IPO = (h - 1/(2 beta))^2 with h = Delta_w/|T_w| - Delta_l/|T_l| (Azar et al., 2024, Eq. 17).

    beta plays IPO's tau. The log-ratios are averaged per token, as TRL does after confirming
    it with the IPO authors: on summed log-probs the square grows with response length.
    Returns (losses, chosen_rewards, rejected_rewards) with rewards beta * Delta, shape (B,).
    """
    delta_w = policy_chosen_logps - ref_chosen_logps
    delta_l = policy_rejected_logps - ref_rejected_logps
    h = delta_w / chosen_lengths.clamp(min=1) - delta_l / rejected_lengths.clamp(min=1)
    return (h - 1 / (2 * beta)) ** 2, beta * delta_w.detach(), beta * delta_l.detach()


def simpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float,
    gamma: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """L_SimPO = -log sigmoid(r_w - r_l - gamma), r = beta * log pi_theta / |T| (Meng et al., 2024).

    Reference-free: the reward is the length-normalised log-prob of the policy itself and
    gamma is the target margin. Returns (losses, r_w, r_l), shape (B,).
    """
    r_w = beta * policy_chosen_logps / chosen_lengths.clamp(min=1)
    r_l = beta * policy_rejected_logps / rejected_lengths.clamp(min=1)
    return -F.logsigmoid(r_w - r_l - gamma), r_w.detach(), r_l.detach()


def ropo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
    gamma: float,
    eta: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """L_ROPO = gamma * sigmoid(-z) - eta * log sigmoid(z) (Liang et al., 2024; paper appendix A).

    The bounded sigmoid term gives little gradient to pairs the model strongly disagrees
    with (z << 0, likely mislabelled): -dL/dz = (gamma * sigmoid(z) + eta) * (1 - sigmoid(z)),
    which tends to eta, not 1 as DPO's does. The Genius paper prints the first term with a
    leading minus and the scale as (gamma - eta * sigmoid(z))(1 - sigmoid(z)); its released
    scripts (gamma 0.2, eta 0.1) implement the form here, which is the one that prefers T_w.
    Returns (losses, chosen_rewards, rejected_rewards), shape (B,).
    """
    phi_w = beta * (policy_chosen_logps - ref_chosen_logps)
    phi_l = beta * (policy_rejected_logps - ref_rejected_logps)
    z = phi_w - phi_l
    return gamma * torch.sigmoid(-z) - eta * F.logsigmoid(z), phi_w.detach(), phi_l.detach()


def scpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor,
    vote_margin: Tensor,
    beta: float,
    alpha: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """L_ScPO = -w(x) log sigmoid(phi_w - phi_l) - w(x) alpha log pi_theta(y+|x) / |y+|, w(x) = (V(y+) - V(y-)) / k.

    Prasad et al. (arXiv 2411.04109), their weighted loss: DPO plus a length-normalised NLL
    term on the chosen response (alpha: `training.sft_weight`, as IRPO adds it), both scaled
    by the vote margin w(x) of the query's k samples
    (genius.algorithm.self_consistency), which carries no gradient. So -dL/dphi_w =
    w sigmoid(-z): a query that voted 7 to 1 pulls 6x harder than one that voted 2 to 1.
    Returns (preference terms, NLL terms, chosen_rewards, rejected_rewards), each (B,): the
    loss is their sum, kept apart so the two terms can be measured apart.
    """
    w = vote_margin.detach()
    phi_w = beta * (policy_chosen_logps - ref_chosen_logps)
    phi_l = beta * (policy_rejected_logps - ref_rejected_logps)
    preference = -w * F.logsigmoid(phi_w - phi_l)
    nll = w * alpha * sft_loss(policy_chosen_logps, chosen_lengths)
    return preference, nll, phi_w.detach(), phi_l.detach()


def sft_loss(policy_chosen_logps: Tensor, chosen_lengths: Tensor) -> Tensor:
    """Mean token negative log-likelihood of each positive, -log pi_theta(T_w|x) / |T_w|, shape (B,).

    The paper's "SFT" baseline on the positives, and the optional SFT term added to any loss.
    """
    return -policy_chosen_logps / chosen_lengths.clamp(min=1)
