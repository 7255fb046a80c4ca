"""The pure decisions of foresight re-sampling, on fixed numbers."""

import math

import numpy as np
import pytest

from genius.algorithm.foresight import (
    advantage,
    exploit,
    exploit_greedy,
    explore,
    explore_greedy,
    foresight_distribution,
    foresight_score,
)


def test_foresight_score_modes():
    prefix, step, rollout = [-1.0, -1.0], [-0.5], [-0.1, -0.3]
    assert foresight_score(prefix, step, rollout, "rollout") == pytest.approx(-0.2)  # (-0.1 - 0.3) / 2
    assert foresight_score(prefix, step, rollout, "step_rollout") == pytest.approx(-0.3)  # -0.9 / 3
    assert foresight_score(prefix, step, rollout, "full") == pytest.approx(-0.58)  # -2.9 / 5
    # a step that ends the response has no rollout: `rollout` scores the step itself
    assert foresight_score(prefix, step, [], "rollout") == pytest.approx(-0.5)
    # no foresight (paper Table 3): the step's own mean log-prob, the rollout ignored
    assert foresight_score(prefix, [-0.5, -0.1], rollout, "step") == pytest.approx(-0.3)  # -0.6 / 2
    with pytest.raises(ValueError):
        foresight_score(prefix, step, rollout, "bogus")


def test_distribution_hand_values():
    # f = [-0.1, -0.2], tau = 0.1: logits [-1, -2], F = [1, e^-1] / (1 + e^-1)
    p = foresight_distribution([-0.1, -0.2], 0.1)
    assert p[0] == pytest.approx(1 / (1 + math.exp(-1)))
    assert p[1] == pytest.approx(math.exp(-1) / (1 + math.exp(-1)))
    # tiny tau and large scores must not overflow
    assert foresight_distribution([-500.0, -400.0], 1e-3).tolist() == [0.0, 1.0]


def test_explore_frequencies_match_F():
    scores, tau = [-0.1, -0.2, -0.4], 0.1
    p = foresight_distribution(scores, tau)
    rng = np.random.default_rng(0)
    counts = np.bincount([explore(scores, tau, 1, rng)[0] for _ in range(20000)], minlength=3) / 20000
    np.testing.assert_allclose(counts, p, atol=0.015)


def test_explore_draws_distinct_and_near_greedy_at_small_tau():
    rng = np.random.default_rng(0)
    picks = explore([-0.3, -0.1, -0.2, -0.9], 1e-6, 2, rng)
    assert picks == [1, 2]
    assert len(explore([-0.3, -0.1], 1.0, 5, rng)) == 2  # never more than there are candidates


def test_exploit_positive_is_argmax_negative_resampled_without_it():
    scores, tau = [-0.3, -0.1, -0.2, -0.5], 0.1
    rng = np.random.default_rng(1)
    draws = [exploit(scores, tau, rng) for _ in range(20000)]
    assert {w for w, _ in draws} == {1}
    counts = np.bincount([l for _, l in draws], minlength=4) / len(draws)
    p = foresight_distribution(scores, tau)
    p[1] = 0
    np.testing.assert_allclose(counts, p / p.sum(), atol=0.015)


def test_exploit_uniform_negative():
    rng = np.random.default_rng(2)
    negatives = [exploit([-0.3, -0.1, -0.2, -5.0], 0.01, rng, "uniform")[1] for _ in range(9000)]
    counts = np.bincount(negatives, minlength=4) / len(negatives)
    np.testing.assert_allclose(counts, [1 / 3, 0, 1 / 3, 1 / 3], atol=0.02)
    assert exploit([-0.3], 0.1, rng) is None


def test_greedy_selection_is_top_m_and_best_vs_worst():
    # the "w/o sampling" ablation (paper Table 3): no draws at all
    scores = [-0.3, -0.1, -0.2, -0.9, -0.1]
    assert explore_greedy(scores, 2) == [1, 4]  # the two -0.1s, earlier first
    assert explore_greedy(scores, 3) == [1, 4, 2]
    assert explore_greedy([-0.3], 2) == [0]  # never more than there are candidates
    assert exploit_greedy(scores) == (1, 3)  # best -0.1, worst -0.9
    assert exploit_greedy([-0.5, -0.5, -0.5]) == (0, 1)  # ties: still two different candidates
    assert exploit_greedy([-0.5]) is None


def test_advantage():
    assert advantage(-0.01, -0.1) == pytest.approx(0.09)
