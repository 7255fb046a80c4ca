"""LMSI: fine-tune on the responses that agree with the majority (Huang et al., "Large Language
Models Can Self-Improve", arXiv 2210.11610).

For each unlabelled query, sample many chain-of-thought responses (the paper: 32 at
temperature 0.7), take the most common final answer as the pseudo-label, and keep every
response that reaches it; fine-tune on those (`training.loss: sft`, `SftTarget.as_pair`).
It is STaR's rationale filtering with the majority in place of the gold answer, and the
simplest label-free baseline: no reward model, no pairs, no reference.

As in genius.algorithm.self_consistency, unreadable answers do not vote and a query whose
top answer is tied gives nothing. `min_vote_share` drops queries whose majority is weak (the
paper keeps all: 0); every agreeing response is kept, duplicates included, as the paper does.
`build` is the method's row of the stage table: a round's response groups -> its targets.
"""

from __future__ import annotations

from typing import Sequence

from genius.algorithm.pairs import target_stats
from genius.algorithm.records import ResponseGroup, SftTarget
from genius.algorithm.self_consistency import majority


def lmsi_targets(group: ResponseGroup, answers: Sequence[str | None], min_vote_share: float = 0.0) -> list[SftTarget]:
    """The group's responses whose answer is the majority's, each scored by the majority's vote share."""
    top = majority(answers)
    if top is None or top[1] / len(group.responses) < min_vote_share:
        return []
    share = top[1] / len(group.responses)
    return [
        SftTarget(group.query_id, group.query, r.text, r.complete, share)
        for r, a in zip(group.responses, answers)
        if a == top[0]
    ]


def build(groups: list[ResponseGroup], params, tools) -> tuple[list[SftTarget], dict]:
    """The round's LMSI targets: each group's answers read by `tools.read` (`method.answer`)."""
    share = params.method.min_vote_share or 0.0
    targets = [t for g in groups for t in lmsi_targets(g, [tools.read(r.text) for r in g.responses], share)]
    return targets, target_stats(targets, len(groups)) | {"min_vote_share": share}
