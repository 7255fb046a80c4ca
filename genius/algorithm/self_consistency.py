"""Self-consistency preference pairs: ScPO (Prasad et al., ICML 2025, arXiv 2411.04109).

ScPO samples k responses per unlabelled query, reads each one's final answer and counts
votes: V(y) is the number of the k responses whose answer is y's. The chosen response y+
gives the most-voted answer, the rejected y- the least-voted one, and the pair is trained
with a DPO loss plus an NLL term on y+, both weighted by the vote margin

    w(x) = (V(y+) - V(y-)) / k,

so a query the model answers consistently counts more than one it splits on
(genius.algorithm.losses.scpo_loss; `training.loss: scpo`). The paper also keeps only
queries whose top answer has a large enough vote share, V(y+)/k >= tau: `min_vote_share`.

Here, on top of the paper: a response whose answer cannot be read does not vote and is
never chosen nor rejected; a query whose top answer is tied with another has no majority
and gives no pair (masking such groups helped small models, arXiv 2511.04902), nor does one
whose responses all agree (no least-voted answer). Among the responses that give an
answer, the first sampled is taken: responses are independent draws, so it is a uniform one.
The pair's scores and advantages are the vote shares V(y)/k (genius.algorithm.responses),
so w(x) = A_w - A_l is what training reads. `build` is the method's row of the stage table:
a round's response groups -> its pairs (`method.min_vote_share`, null: the paper's 0.5).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from genius.algorithm.pairs import pair_stats
from genius.algorithm.records import PreferencePair, ResponseGroup
from genius.algorithm.responses import whole_response_pair

MIN_VOTE_SHARE = 0.5  # tau, ScPO's filter on the top answer's share


def votes(answers: Sequence[str | None]) -> Counter:
    """Answer -> how many responses give it, in order of first appearance; unreadable answers (None) do not vote."""
    return Counter(a for a in answers if a is not None)


def majority(answers: Sequence[str | None]) -> tuple[str, int] | None:
    """(the most-voted answer, its votes); None when nothing was read or the top is tied."""
    ranked = votes(answers).most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0]


def scpo_pair(
    group: ResponseGroup, answers: Sequence[str | None], min_vote_share: float = MIN_VOTE_SHARE
) -> PreferencePair | None:
    """The query's ScPO pair (most-voted answer vs least-voted), or None; `answers[i]` is response i's.

    With k responses and V votes per answer, the pair's scores are V(y+)/k and V(y-)/k.
    Ties for the least-voted answer go to the one seen last (Counter ranks equal counts by
    first appearance).
    """
    k = len(group.responses)
    top = majority(answers)
    if top is None or top[1] / k < min_vote_share:
        return None
    counts = votes(answers)
    least, least_votes = counts.most_common()[-1]
    if least == top[0]:  # every readable response agrees: nothing to reject
        return None
    chosen, rejected = answers.index(top[0]), answers.index(least)
    shares = [0.0] * k
    shares[chosen], shares[rejected] = top[1] / k, least_votes / k
    return whole_response_pair(group, chosen, rejected, shares)


def build(groups: list[ResponseGroup], params, tools) -> tuple[list[PreferencePair], dict]:
    """The round's ScPO pairs: each group's answers read by `tools.read` (`method.answer`)."""
    share = MIN_VOTE_SHARE if params.method.min_vote_share is None else params.method.min_vote_share
    answers = [[tools.read(r.text) for r in g.responses] for g in groups]
    pairs = [p for g, a in zip(groups, answers) if (p := scpo_pair(g, a, share)) is not None]
    read = [a for row in answers for a in row]
    return pairs, pair_stats(pairs, len(groups)) | {
        "min_vote_share": share,
        "answered_fraction": sum(a is not None for a in read) / max(len(read), 1),  # responses whose answer was read
    }
