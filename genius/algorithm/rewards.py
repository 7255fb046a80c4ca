"""Label-free rewards for online RL (GRPO): pure functions of answers and of logits.

- `majority_vote`: TTRL (arXiv 2504.16084). A group of G responses to one query votes with
  its final answers; a response earns 1 when its answer is the group's majority answer.
- `self_certainty`: INTUITOR (arXiv 2505.19590). The mean over response tokens of
  KL(uniform || p), how far each next-token distribution is from knowing nothing.
- `neg_entropy`: RENT / entropy minimisation (arXiv 2505.22660, 2505.15134). Minus the mean
  token entropy of the response.
- `majority_correct`: measurement only, never a reward: how often the majority is right,
  where the task has labels.

How a final answer is read out of a response is the task's business (the toy's `A:`,
reasoning-gym's extraction, a regex), so the vote takes that reader as an argument.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

Extract = Callable[[str], "str | None"]  # response -> its final answer, None when it gives none
REWARDS = ("majority_vote", "self_certainty", "neg_entropy")  # TTRL's, INTUITOR's, RENT's


@dataclass(frozen=True)
class Vote:
    rewards: list[float]  # (G,) 1.0 for a response whose answer is the majority's, else 0.0
    majority: str | None  # the majority answer; None when no response gives an answer
    agreement: float  # share of the G responses that give the majority answer (TTRL's "majority ratio")
    answers: list[str | None]  # each response's extracted answer


def majority_vote(responses: Sequence[str], extract: Extract) -> Vote:
    """TTRL's reward for one group of responses to the same query.

    Rules, stated because the papers leave them to the code:
    - A response without an answer (`extract` gives None) does not vote and earns 0.
    - The majority is the most frequent answer among those given. A tie goes to the answer
      that appears first in the group (`Counter.most_common`, as TTRL's own code breaks it):
      deterministic, and since the group's order is the sampler's, unbiased between the tied.
    - No answer at all: no majority, every reward 0, agreement 0 (a group with no signal;
      GRPO's group-normalised advantage is then 0 for all of it).
    - `agreement` divides by G, no-answer responses included (TTRL's majority_ratio).

    Example: answers [5, 7, 5, None] -> majority "5", rewards [1, 0, 1, 0], agreement 0.5.
    """
    answers = [extract(r) for r in responses]
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return Vote([0.0] * len(answers), None, 0.0, answers)
    majority, count = votes.most_common(1)[0]
    rewards = [1.0 if a == majority else 0.0 for a in answers]
    return Vote(rewards, majority, count / len(answers), answers)


def majority_correct(
    majority: str | None, gold: str | None, same: Callable[[str, str], bool] | None = None
) -> float | None:
    """Measurement only: 1.0 when the group's majority answer is right, 0.0 when wrong; None without a label.

    No majority (no response answered) counts as wrong. `same` compares answers (default: equal strings).
    """
    if gold is None:
        return None
    if majority is None:
        return 0.0
    return 1.0 if (same(majority, gold) if same else majority == gold) else 0.0


def group_votes(responses: Sequence[str], group_size: int, extract: Extract) -> list[Vote]:
    """`majority_vote` over consecutive groups: responses (B*G,) as GRPO samples them, query-major."""
    if len(responses) % group_size:
        raise ValueError(f"{len(responses)} responses do not split into groups of {group_size}")
    return [majority_vote(responses[i : i + group_size], extract) for i in range(0, len(responses), group_size)]


def self_certainty(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """INTUITOR's self-certainty of each response: mean over its tokens of KL(U || p).

    logits (B, T, V): the policy's next-token logits at the response's positions; mask (B, T):
    1 on response tokens. Returns (B,); a row with no token gets 0.

    Derivation. With U uniform over the V tokens and p = softmax(z),
        KL(U || p) = sum_j (1/V) log((1/V) / p_j) = -log V - (1/V) sum_j log p_j,
    and log p_j = z_j - logsumexp(z), so (1/V) sum_j log p_j = mean_j(z) - logsumexp(z):
        KL(U || p) = logsumexp(z) - mean_j(z) - log V.
    It is 0 for a uniform p (z constant: logsumexp = z + log V) and grows without bound as p
    concentrates; no (B, T, V) log-softmax is materialised. Hand checks in tests/test_rewards.py.
    """
    logits = logits.float()  # bf16 logsumexp loses the digits that separate responses
    per_token = torch.logsumexp(logits, -1) - logits.mean(-1) - math.log(logits.shape[-1])
    return _masked_mean(per_token, mask)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each next-token distribution, (B, T, V) -> (B, T), in nats.

    H(p) = -sum_j p_j log p_j = logsumexp(z) - sum_j p_j z_j   (log p_j = z_j - logsumexp(z)).
    """
    logits = logits.float()
    return torch.logsumexp(logits, -1) - (torch.softmax(logits, -1) * logits).sum(-1)


def neg_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RENT's reward: minus the mean token entropy over the response, (B, T, V), (B, T) -> (B,)."""
    return -_masked_mean(token_entropy(logits), mask)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)
