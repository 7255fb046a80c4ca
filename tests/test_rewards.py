"""The label-free rewards of genius.algorithm.rewards against hand-derived values."""

import math

import pytest
import torch

from genius.algorithm.rewards import (
    group_votes,
    majority_correct,
    majority_vote,
    neg_entropy,
    self_certainty,
    token_entropy,
)
from genius.toy.task import extract_answer


def toy(response: str) -> str | None:
    answer = extract_answer(response)
    return None if answer is None else str(answer)


def test_majority_vote_rewards_the_majority_and_reports_its_share():
    # answers 5, 7, 5, none: majority 5 (2 votes of 4 responses)
    vote = majority_vote(["1+4=5\nA:5", "A:7", "A:5", "1+4="], toy)
    assert vote.answers == ["5", "7", "5", None]
    assert vote.majority == "5"
    assert vote.rewards == [1.0, 0.0, 1.0, 0.0]
    assert vote.agreement == 0.5  # 2 / 4: the response without an answer counts in the denominator


def test_a_tie_goes_to_the_answer_seen_first():
    assert majority_vote(["A:7", "A:5", "A:5", "A:7"], toy).majority == "7"
    assert majority_vote(["A:5", "A:7", "A:7", "A:5"], toy).majority == "5"
    vote = majority_vote(["A:5", "A:7", "A:7", "A:5"], toy)
    assert vote.rewards == [1.0, 0.0, 0.0, 1.0] and vote.agreement == 0.5


def test_no_answer_votes_and_a_group_without_answers_has_no_majority():
    # one answer among three silent responses: it is the majority, with agreement 1/4
    vote = majority_vote(["x", "A:3", "y", "z"], toy)
    assert vote.majority == "3" and vote.rewards == [0.0, 1.0, 0.0, 0.0] and vote.agreement == 0.25
    empty = majority_vote(["x", "y"], toy)
    assert empty.majority is None and empty.rewards == [0.0, 0.0] and empty.agreement == 0.0


def test_unanimous_group():
    vote = majority_vote(["A:9"] * 3, toy)
    assert vote.rewards == [1.0, 1.0, 1.0] and vote.agreement == 1.0


def test_group_votes_cut_query_major_groups():
    votes = group_votes(["A:1", "A:1", "A:2", "A:3", "A:3", "A:4"], 3, toy)
    assert [v.majority for v in votes] == ["1", "3"]
    with pytest.raises(ValueError, match="groups of 4"):
        group_votes(["A:1"] * 6, 4, toy)


def test_majority_correct_is_a_measurement_with_no_label_no_value():
    assert majority_correct("5", "5") == 1.0
    assert majority_correct("5", "6") == 0.0
    assert majority_correct(None, "6") == 0.0  # no majority: wrong
    assert majority_correct("5", None) is None  # no label: nothing measured
    assert majority_correct("5.0", "5", same=lambda a, b: float(a) == float(b)) == 1.0


def test_self_certainty_is_zero_for_a_uniform_distribution():
    logits = torch.full((1, 3, 7), 2.5)  # constant logits: p uniform over V = 7
    assert self_certainty(logits, torch.ones(1, 3)).item() == pytest.approx(0.0, abs=1e-6)


def test_self_certainty_by_hand():
    # V = 2, logits (0, log 3): p = (1/4, 3/4).
    # KL(U || p) = 1/2 log((1/2)/(1/4)) + 1/2 log((1/2)/(3/4)) = 1/2 log 2 + 1/2 log(2/3) = 1/2 log(4/3)
    one = 0.5 * math.log(4 / 3)
    # V = 2, logits (0, 0): uniform, KL 0. Response of two tokens: mean (one + 0) / 2.
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, 0.0], [5.0, -5.0]]])
    mask = torch.tensor([[1, 1, 0]])  # the third position is padding: ignored
    assert self_certainty(logits, mask).item() == pytest.approx(one / 2, rel=1e-6)


def test_self_certainty_grows_as_p_concentrates_and_ignores_a_logit_shift():
    mask = torch.ones(1, 1)
    flat, sharp = torch.tensor([[[1.0, 0.0, 0.0]]]), torch.tensor([[[9.0, 0.0, 0.0]]])
    assert self_certainty(sharp, mask) > self_certainty(flat, mask) > 0
    # a one-hot limit: p -> (1, 0, 0) gives KL(U || p) -> infinity; a shift of every logit changes nothing
    assert self_certainty(sharp + 100.0, mask).item() == pytest.approx(self_certainty(sharp, mask).item(), rel=1e-5)


def test_self_certainty_matches_the_definition_on_random_logits():
    torch.manual_seed(0)
    logits, mask = torch.randn(3, 5, 11), torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    p = torch.softmax(logits, -1)
    kl = (1 / 11 * torch.log((1 / 11) / p)).sum(-1)  # KL(U || p) written out
    expected = (kl * mask).sum(-1) / mask.sum(-1)
    assert torch.allclose(self_certainty(logits, mask), expected, atol=1e-5)


def test_entropy_by_hand():
    # p = (1/4, 3/4): H = -(1/4 log 1/4 + 3/4 log 3/4) = log 4 - 3/4 log 3
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, 0.0]]])
    h = math.log(4) - 0.75 * math.log(3)
    assert token_entropy(logits)[0].tolist() == pytest.approx([h, math.log(2)], rel=1e-6)
    assert neg_entropy(logits, torch.tensor([[1, 1]])).item() == pytest.approx(-(h + math.log(2)) / 2, rel=1e-6)


def test_an_empty_response_scores_zero_not_nan():
    logits = torch.randn(1, 2, 4)
    assert self_certainty(logits, torch.zeros(1, 2)).item() == 0.0
    assert neg_entropy(logits, torch.zeros(1, 2)).item() == 0.0
