"""ACO and the Table 4 baselines against values derived by hand.

Shared numbers: log pi(T_w) = -1.0, log pi(T_l) = -2.0, log pi_ref(T_w) = -1.5,
log pi_ref(T_l) = -1.0, beta = 0.1, |T_w| = 2 and |T_l| = 4 tokens, so
    Delta_w = 0.5, Delta_l = -1.0,  phi_w = 0.05,  phi_l = -0.1,  z = phi_w - phi_l = 0.15.
DPO:  -log sigmoid(0.05 - (-0.1)) = log(1 + exp(-0.15)).
"""

import math

import pytest
import torch

from genius.algorithm.losses import aco_loss, calibration_weight, dpo_loss, ipo_loss, ropo_loss, sft_loss, simpo_loss

POLICY_W, POLICY_L, REF_W, REF_L, BETA = -1.0, -2.0, -1.5, -1.0, 0.1
LEN_W, LEN_L = 2.0, 4.0


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def aco(adv_w, adv_l, alpha, clip="paper"):
    return aco_loss(t(POLICY_W), t(POLICY_L), t(REF_W), t(REF_L), t(adv_w), t(adv_l), BETA, alpha, clip)


def test_dpo_hand_value():
    losses, r_w, r_l = dpo_loss(t(POLICY_W), t(POLICY_L), t(REF_W), t(REF_L), BETA)
    assert losses.item() == pytest.approx(math.log1p(math.exp(-0.15)), abs=1e-12)
    assert r_w.item() == pytest.approx(0.05) and r_l.item() == pytest.approx(-0.1)


def test_aco_normal_region_is_dpo():
    # A_l = 0.1 <= A_w = 0.3: w = min(1, exp(0.2)) = 1, so the loss is DPO's log(1 + e^-0.15).
    losses, _, _, w = aco(0.3, 0.1, alpha=1.0)
    assert w.item() == 1.0
    assert losses.item() == pytest.approx(math.log1p(math.exp(-0.15)), abs=1e-12)


def test_aco_calibration_region_hand_value():
    # A_l - A_w = 0.5 > 0: w = exp(-0.5 / 1) = 0.6065...; z = 0.05 - w * (-0.1) = 0.05 + 0.1 w
    losses, _, _, w = aco(0.1, 0.6, alpha=1.0)
    expected_w = math.exp(-0.5)
    assert w.item() == pytest.approx(expected_w, abs=1e-12)
    assert losses.item() == pytest.approx(math.log1p(math.exp(-(0.05 + 0.1 * expected_w))), abs=1e-12)
    # the negative is punished less than under DPO: its reward is scaled down, the loss rises
    assert losses.item() > math.log1p(math.exp(-0.15))


def test_calibration_weight_regions():
    adv_w = t(0.5, 0.5, 0.5, 0.5)
    adv_l = t(-1.0, 0.5, 0.6, 2.5)  # normal, boundary, slightly and far in the calibration region
    w = calibration_weight(adv_w, adv_l, alpha=1.0)
    assert w[:2].tolist() == [1.0, 1.0]
    assert 0 < w[3] < w[2] < 1
    assert w[3].item() == pytest.approx(math.exp(-2.0))
    # a larger alpha relaxes less: w closer to 1 (paper Fig. 3)
    assert calibration_weight(adv_w, adv_l, alpha=4.0)[3] > w[3]


def test_scripts_clip_never_below_one():
    # the released scripts use max(1, .): w = 1 in the calibration region, > 1 in the normal one
    w = calibration_weight(t(0.5, 0.5), t(-1.0, 2.5), alpha=1.0, clip="scripts")
    assert w[0].item() == pytest.approx(math.exp(1.5)) and w[1].item() == 1.0


@pytest.mark.parametrize("alpha", [1e9, math.inf])
def test_alpha_to_infinity_equals_dpo_with_gradients(alpha):
    torch.manual_seed(0)
    pw, pl = (
        torch.randn(16, dtype=torch.float64, requires_grad=True),
        torch.randn(16, dtype=torch.float64, requires_grad=True),
    )
    rw, rl = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    aw, al = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64) + 1.0
    a_losses, *_ = aco_loss(pw, pl, rw, rl, aw, al, BETA, alpha)
    a_grads = torch.autograd.grad(a_losses.sum(), (pw, pl))
    d_losses, *_ = dpo_loss(pw, pl, rw, rl, BETA)
    d_grads = torch.autograd.grad(d_losses.sum(), (pw, pl))
    torch.testing.assert_close(a_losses, d_losses, atol=1e-8, rtol=0)
    for a, d in zip(a_grads, d_grads):
        torch.testing.assert_close(a, d, atol=1e-8, rtol=0)


def test_w_carries_no_gradient():
    adv_w = torch.tensor([0.0], requires_grad=True)
    adv_l = torch.tensor([1.0], requires_grad=True)
    losses, *_ = aco_loss(
        t(POLICY_W).float(), t(POLICY_L).float(), t(REF_W).float(), t(REF_L).float(), adv_w, adv_l, BETA, 1.0
    )
    assert not losses.requires_grad


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_ipo_hand_value_and_gradient():
    # h = Delta_w/|T_w| - Delta_l/|T_l| = 0.5/2 + 1.0/4 = 0.5; target 1/(2 beta) = 5; L = (0.5 - 5)^2
    pw, pl = t(POLICY_W).requires_grad_(), t(POLICY_L).requires_grad_()
    losses, r_w, r_l = ipo_loss(pw, pl, t(REF_W), t(REF_L), t(LEN_W), t(LEN_L), BETA)
    assert losses.item() == pytest.approx(20.25, abs=1e-12)
    assert r_w.item() == pytest.approx(0.05) and r_l.item() == pytest.approx(-0.1)
    # dL/dlog pi_w = 2 (h - 5) / |T_w| = -4.5;  dL/dlog pi_l = -2 (h - 5) / |T_l| = 2.25
    gw, gl = torch.autograd.grad(losses.sum(), (pw, pl))
    assert gw.item() == pytest.approx(-4.5) and gl.item() == pytest.approx(2.25)


def test_simpo_hand_value_is_reference_free_and_length_normalised():
    # r_w = 0.1 * -1/2 = -0.05, r_l = 0.1 * -2/4 = -0.05; L = -log sigmoid(0 - gamma) = log(1 + e^gamma)
    losses, r_w, r_l = simpo_loss(t(POLICY_W), t(POLICY_L), t(LEN_W), t(LEN_L), BETA, gamma=0.5)
    assert losses.item() == pytest.approx(math.log1p(math.exp(0.5)), abs=1e-12)
    assert r_w.item() == pytest.approx(-0.05) and r_l.item() == pytest.approx(-0.05)
    # a shorter negative with the same total log-prob is less likely per token: r_l = -0.1
    shorter, *_ = simpo_loss(t(POLICY_W), t(POLICY_L), t(LEN_W), t(2.0), BETA, gamma=0.5)
    assert shorter.item() == pytest.approx(math.log1p(math.exp(0.5 - 0.05)), abs=1e-12)


def test_ropo_hand_value_and_gradient_scale():
    # z = 0.15: L = gamma sigmoid(-z) - eta log sigmoid(z), gamma 0.2, eta 0.1 (the authors' scripts)
    pw = t(POLICY_W).requires_grad_()
    losses, r_w, r_l = ropo_loss(pw, t(POLICY_L), t(REF_W), t(REF_L), BETA, gamma=0.2, eta=0.1)
    s = sigmoid(0.15)
    assert losses.item() == pytest.approx(0.2 * (1 - s) - 0.1 * math.log(s), abs=1e-12)
    # dL/dz = -(1 - sigmoid(z)) (gamma sigmoid(z) + eta), and dz/dlog pi_w = beta
    (g,) = torch.autograd.grad(losses.sum(), pw)
    assert g.item() == pytest.approx(-BETA * (1 - s) * (0.2 * s + 0.1), abs=1e-12)


def test_ropo_gives_confidently_wrong_pairs_little_gradient():
    # z ~ -10 (the model strongly prefers T_l: likely a noisy pair): DPO pulls with
    # 1 - sigmoid(z) ~ 1, ROPO with ~eta = 0.1, and the sigmoid term alone with ~0.
    pw = t(-101.0).requires_grad_()  # Delta_w = -99.5, so z = 0.1 * (-99.5 - -1.0) = -9.85
    (g_ropo,) = torch.autograd.grad(ropo_loss(pw, t(POLICY_L), t(REF_W), t(REF_L), BETA, 0.2, 0.1)[0].sum(), pw)
    (g_dpo,) = torch.autograd.grad(dpo_loss(pw, t(POLICY_L), t(REF_W), t(REF_L), BETA)[0].sum(), pw)
    assert g_dpo.item() == pytest.approx(-BETA, rel=1e-3) and g_ropo.item() == pytest.approx(-BETA * 0.1, rel=1e-3)


def test_sft_is_mean_token_nll_of_the_positive():
    pw = t(POLICY_W, -6.0).requires_grad_()
    losses = sft_loss(pw, t(LEN_W, 3.0))
    assert losses.tolist() == pytest.approx([0.5, 2.0])
    (g,) = torch.autograd.grad(losses.sum(), pw)
    assert g.tolist() == pytest.approx([-0.5, -1 / 3])


def test_scpo_hand_value_and_gradient():
    # Votes 5 of 8 for y+ and 1 of 8 for y-: w = (5 - 1) / 8 = 0.5; alpha 1, |y+| = 2 tokens.
    # preference term: w log(1 + e^-0.15); NLL term: w alpha (-log pi_w / |y+|) = 0.5 * 1 * 0.5 = 0.25
    # dL/dlog pi_w = -w beta sigmoid(-z) - w alpha / |y+| = -0.05 sigmoid(-0.15) - 0.25
    from genius.algorithm.losses import scpo_loss

    pw = t(POLICY_W).requires_grad_()
    pref, nll, r_w, r_l = scpo_loss(pw, t(POLICY_L), t(REF_W), t(REF_L), t(LEN_W), t(0.5), BETA, alpha=1.0)
    assert pref.item() == pytest.approx(0.5 * math.log1p(math.exp(-0.15)), abs=1e-12)
    assert nll.item() == pytest.approx(0.25, abs=1e-12)
    assert r_w.item() == pytest.approx(0.05) and r_l.item() == pytest.approx(-0.1)
    (g,) = torch.autograd.grad((pref + nll).sum(), pw)
    assert g.item() == pytest.approx(-0.05 * sigmoid(-0.15) - 0.25, abs=1e-12)
    # a query that split its votes evenly teaches nothing; a unanimous-but-one one teaches most
    zero, zero_nll, *_ = scpo_loss(pw, t(POLICY_L), t(REF_W), t(REF_L), t(LEN_W), t(0.0), BETA, 1.0)
    assert zero.item() == 0 and zero_nll.item() == 0


def test_scpo_margin_one_is_dpo_plus_sft():
    from genius.algorithm.losses import scpo_loss

    pref, nll, *_ = scpo_loss(t(POLICY_W), t(POLICY_L), t(REF_W), t(REF_L), t(LEN_W), t(1.0), BETA, alpha=0.5)
    dpo, *_ = dpo_loss(t(POLICY_W), t(POLICY_L), t(REF_W), t(REF_L), BETA)
    assert pref.item() == pytest.approx(dpo.item()) and nll.item() == pytest.approx(0.5 * sft_loss(t(POLICY_W), t(LEN_W)).item())
