"""Inverse-CDF sampling (genius.engines.base.inverse_cdf_sample), which vLLM's CPU sampler uses
here for seeded requests and the transformers engine for every sampled token: hand-derived
draws and the distribution."""

import torch

from genius.engines.base import inverse_cdf_sample


def uniform(seed: int) -> float:
    return torch.rand((), dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).item()


def test_a_seeded_row_takes_the_first_token_whose_cumulative_probability_passes_its_uniform():
    # cumulative 0.25, 0.25, 1.0: u < 0.25 takes token 0, else token 2; token 1 (p = 0) never
    probs = torch.tensor([[0.25, 0.0, 0.75]])
    seeds = range(40)
    expected = [0 if uniform(s) < 0.25 else 2 for s in seeds]
    drawn = [inverse_cdf_sample(probs, {0: torch.Generator().manual_seed(s)}).item() for s in seeds]
    assert drawn == expected and set(expected) == {0, 2}


def test_a_row_depends_on_its_own_generator_not_on_the_rows_beside_it():
    probs = torch.softmax(torch.randn(5, 50, generator=torch.Generator().manual_seed(0)), -1)
    alone = inverse_cdf_sample(probs[3:4], {0: torch.Generator().manual_seed(11)})
    batched = inverse_cdf_sample(probs, {i: torch.Generator().manual_seed(11 if i == 3 else i) for i in range(5)})
    assert batched[3] == alone[0]


def test_rows_scale_free_and_the_generators_advance_one_draw_a_step():
    # an unnormalised row (u times the row's total) draws as its normalised self
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert [inverse_cdf_sample(probs, {0: a}).item() for _ in range(20)] == [inverse_cdf_sample(probs * 7, {0: b}).item() for _ in range(20)]
    g, h = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    inverse_cdf_sample(probs, {0: g})
    torch.rand((), dtype=torch.float64, generator=h)
    assert torch.equal(g.get_state(), h.get_state())


def test_draws_follow_the_distribution():
    p = torch.tensor([0.1, 0.0, 0.2, 0.7])
    rows = 40_000
    torch.manual_seed(0)
    tokens = inverse_cdf_sample(p.expand(rows, 4).contiguous(), {})  # rows without a generator: torch's global one
    freq = torch.bincount(tokens, minlength=4).double() / rows
    sigma = (p * (1 - p) / rows).sqrt().double()
    assert freq[1] == 0
    assert ((freq - p.double()).abs() <= 5 * sigma + 1e-12).all(), freq
