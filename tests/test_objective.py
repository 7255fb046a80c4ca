"""The loss table of genius.training.objective: every training.loss has a row, and each term's pull is the hand value.

Shared numbers (tests/test_losses.py): log pi(T_w) = -1, log pi(T_l) = -2, reference -1.5 and
-1, beta 0.1, |T_w| = 2, |T_l| = 4: z = phi_w - phi_l = 0.15.
"""

import math
import typing

import pytest
import torch

from genius.algorithm.losses import dpo_loss, scpo_loss, sft_loss
from genius.config import TrainingConfig
from genius.training.objective import LOSSES, NEEDS_REFERENCE, pair_losses


def batch(adv=(0.3, 0.1)):
    chosen = torch.tensor([-1.0], dtype=torch.float64, requires_grad=True)
    rejected = torch.tensor([-2.0], dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([[2.0, 4.0]], dtype=torch.float64)
    ref = torch.tensor([[-1.5, -1.0]], dtype=torch.float64)
    return chosen, rejected, lengths, ref, torch.tensor([adv], dtype=torch.float64)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_every_configurable_loss_has_a_row_and_reference_needs_are_declared():
    choices = typing.get_args(TrainingConfig.model_fields["loss"].annotation)
    assert set(choices) == set(LOSSES)
    assert NEEDS_REFERENCE == {"aco", "dpo", "ipo", "ropo", "scpo"}  # SimPO and SFT are reference-free


def test_dpo_row_is_dpo_plus_the_sft_term_and_its_pulls_are_the_hand_values():
    chosen, rejected, lengths, ref, adv = batch()
    cfg = TrainingConfig(loss="dpo", beta=0.1, sft_weight=0.5)
    total, parts = pair_losses(cfg, chosen, rejected, lengths, ref, adv)
    dpo, *_ = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], 0.1)
    assert total.item() == pytest.approx((dpo + 0.5 * sft_loss(chosen, lengths[:, 0])).item())
    assert parts["preference_loss"].item() == pytest.approx(math.log1p(math.exp(-0.15)))
    # -dL/dlog pi_w: beta sigmoid(-z) from the preference term, sft_weight / |T_w| from the SFT term
    assert parts["pull_preference"].item() == pytest.approx(0.1 * sigmoid(-0.15), abs=1e-12)
    assert parts["pull_sft"].item() == pytest.approx(0.5 / 2, abs=1e-12)
    assert parts["sft_term"].requires_grad  # kept with its graph, for the gradient split


def test_sft_row_has_no_preference_term():
    chosen, rejected, lengths, ref, adv = batch()
    total, parts = pair_losses(TrainingConfig(loss="sft", sft_weight=0.5), chosen, rejected, lengths, None, adv)
    assert total.item() == pytest.approx(0.5)  # -(-1) / 2: unweighted, whatever sft_weight says
    assert parts["preference_loss"].item() == 0 and parts["pull_preference"].item() == 0
    assert parts["pull_sft"].item() == pytest.approx(0.5)


def test_scpo_row_reads_the_vote_margin_from_the_advantages():
    # a self-consistency pair's advantages are vote shares: 4/8 and 1/8, so w = 0.375
    chosen, rejected, lengths, ref, adv = batch(adv=(0.5, 0.125))
    cfg = TrainingConfig(loss="scpo", beta=0.1, sft_weight=1.0)
    total, parts = pair_losses(cfg, chosen, rejected, lengths, ref, adv)
    pref, nll, *_ = scpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], lengths[:, 0], torch.tensor([0.375]), 0.1, 1.0)
    assert total.item() == pytest.approx((pref + nll).item()) and parts["w"].item() == pytest.approx(0.375)
    assert parts["pull_preference"].item() == pytest.approx(0.375 * 0.1 * sigmoid(-0.15))
    assert parts["pull_sft"].item() == pytest.approx(0.375 / 2)


def test_an_unknown_loss_is_named():
    chosen, rejected, lengths, ref, adv = batch()
    with pytest.raises(ValueError, match="unknown loss 'kto'"):
        pair_losses(TrainingConfig.model_construct(loss="kto"), chosen, rejected, lengths, ref, adv)
