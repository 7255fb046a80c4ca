"""The decisions of stepwise foresight re-sampling, as pure functions of numbers.

docs/ALGORITHM.md section 1, steps 2-6: score a candidate step by the rollout that follows it,
turn the scores into the re-sampling distribution F_k, explore (draw the next beams from
F_k), exploit (pick the positive and negative of this timestamp's pair) and compute
advantages. The paper's two sampling ablations (Table 3) are here too: no foresight
(`step` score) and no sampling (`explore_greedy`, `exploit_greedy`). No model here:
`genius.algorithm.sampling` feeds these functions the engine's log-probs.
"""

from __future__ import annotations

import numpy as np


def foresight_score(prefix_logprobs, step_logprobs, rollout_logprobs, mode: str) -> float:
    """Mean token log-prob (length-normalised, Eq. 1) over the part of the trajectory `mode` names.

    rollout:      the rollout a'_>k only (paper Eq. 1, the authors' scripts)
    step_rollout: the candidate step a_k and its rollout
    full:         the whole response, prefix a_<k + step + rollout
    step:         the step a_k alone, no look-ahead (the paper's "w/o foresight" ablation,
                  Table 3: "samples from the distribution formed by step uncertainty")

    A step that ends the response has an empty rollout; `rollout` then scores the step
    itself, the only continuation there is.
    """
    if mode == "step":
        tokens = list(step_logprobs)
    elif mode == "rollout":
        tokens = list(rollout_logprobs) or list(step_logprobs)
    elif mode == "step_rollout":
        tokens = [*step_logprobs, *rollout_logprobs]
    elif mode == "full":
        tokens = [*prefix_logprobs, *step_logprobs, *rollout_logprobs]
    else:
        raise ValueError(f"foresight_score must be rollout, step_rollout, full or step, got {mode!r}")
    if not tokens:
        raise ValueError("cannot score an empty trajectory")
    return float(np.mean(tokens))


def foresight_distribution(scores, tau: float) -> np.ndarray:
    """F_k(i) = exp(f_i / tau) / sum_j exp(f_j / tau), over all M*N candidates (Eq. 2)."""
    logits = np.asarray(scores, dtype=np.float64) / tau
    logits -= logits.max()  # exp of large f/tau overflows; the softmax is shift-invariant
    p = np.exp(logits)
    return p / p.sum()


def explore(scores, tau: float, m: int, rng: np.random.Generator) -> list[int]:
    """Draw min(m, len(scores)) distinct candidates from Categorical(F_k) (Eq. 3): the next beams.

    Sampling without replacement is done with the Gumbel-top-k trick on f/tau, which
    equals sequential draws from the renormalised F_k and, unlike probabilities, does not
    underflow to zero at small tau.
    """
    logits = np.asarray(scores, dtype=np.float64) / tau
    keys = logits + rng.gumbel(size=len(logits))
    return [int(i) for i in np.argsort(-keys, kind="stable")[: min(m, len(logits))]]


def exploit(scores, tau: float, rng: np.random.Generator, negative: str = "resample") -> tuple[int, int] | None:
    """(positive, negative) indices for this timestamp's preference pair, or None.

    The positive T_w is the candidate with the highest foresight score. The negative T_l is
    drawn from F_k with the positive removed and the rest renormalised (`resample`, the
    paper's Eq. 5), uniformly among the non-best (`uniform`, the authors' scripts), or is the
    lowest-scored candidate (`lowest`, docs/RESULTS.md H2; ties go to the earlier candidate).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 2:
        return None
    best = int(np.argmax(scores))
    rest = np.array([i for i in range(len(scores)) if i != best])
    if negative == "resample":
        keys = scores[rest] / tau + rng.gumbel(size=len(rest))
        return best, int(rest[np.argmax(keys)])
    if negative == "uniform":
        return best, int(rng.choice(rest))
    if negative == "lowest":
        return best, int(rest[np.argmin(scores[rest])])
    raise ValueError(f"negative_selection must be resample, uniform or lowest, got {negative!r}")


def first_unique(keys) -> list[int]:
    """Indices of the first occurrence of each key, in order: the candidates kept when
    duplicate steps are dropped before F_k is formed (`sampling.dedup_steps`, docs/RESULTS.md H2)."""
    seen: set = set()
    keep = []
    for i, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


def explore_greedy(scores, m: int) -> list[int]:
    """The min(m, len(scores)) highest-scored candidates, best first: the "w/o sampling"
    ablation's beams (paper Table 3: "selecting the two steps with the highest foresight
    score for exploration"). Ties go to the earlier candidate.
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [int(i) for i in order[: min(m, len(order))]]


def exploit_greedy(scores) -> tuple[int, int] | None:
    """(highest, lowest) scored candidates, or None with fewer than two: the "w/o sampling"
    ablation's pair ("the step with the lowest foresight score serves as the negative").
    The negative is taken among the others, so all-equal scores still give two candidates.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 2:
        return None
    best = int(np.argmax(scores))
    rest = np.array([i for i in range(len(scores)) if i != best])
    return best, int(rest[np.argmin(scores[rest])])


def advantage(score: float, beam_value: float) -> float:
    """A = f - Q_{k-1}: what the step added over the value of the beam it extends (Eq. 6)."""
    return score - beam_value
