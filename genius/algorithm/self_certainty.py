"""Self-certainty pairs: INTUITOR's signal (Zhao et al., arXiv 2505.19590), offline variant.

INTUITOR rewards a response o to a query q by its self-certainty, the mean over its tokens
of the KL divergence from the uniform distribution U over the vocabulary (V tokens) to the
policy's next-token distribution p = pi(. | q, o_<i):

    SC(o | q) = (1/|o|) sum_i KL(U || p_i),
    KL(U || p) = sum_j (1/V) log((1/V) / p_j) = -log V - (1/V) sum_j log p_j.

It is 0 when p is uniform and grows as p concentrates: a confident model scores high.
INTUITOR uses it online, as GRPO's reward; this is the **offline variant**: score each of a
query's n sampled responses once, and pair the highest against the lowest (DPO, like
Self-Rewarding's best vs worst). Used so, it has been reported to be reward-hacked toward
repetitive text (docs PEERS.md): watch the samples.

It needs the whole next-token distribution at every response token, which no engine returns
(the engine interface gives the sampled token's log-prob only; vLLM gives top-k at most). So
`response_self_certainty` runs a teacher-forced forward pass of the policy (transformers)
over prompt + response, after sampling, and reduces the logits at once. V is the model's
output size, logits.shape[-1], padded embedding rows included, as INTUITOR's code takes it.
`build`, the method's row of the stage table, runs that pass with the round's policy
(`tools.model()`) and reports the tokens it scored as the pairs stage's cost.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from genius.algorithm.pairs import pair_stats
from genius.algorithm.records import PreferencePair, ResponseGroup
from genius.algorithm.responses import extremes, whole_response_pair
from genius.algorithm.sampling import prompt_ids


def self_certainty(logits: Tensor, mask: Tensor) -> Tensor:
    """Mean over masked positions of KL(U || softmax(logits)): (B, L, V), (B, L) -> (B,).

    A row that masks every position scores 0.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    kl = -math.log(logits.shape[-1]) - logp.mean(-1)  # (B, L)
    mask = mask.to(kl.dtype)
    return (kl * mask).sum(-1) / mask.sum(-1).clamp(min=1)


@torch.inference_mode()
def response_self_certainty(
    model, tokenizer, groups: Sequence[ResponseGroup], max_batch_tokens: int = 8192
) -> list[list[float]]:
    """SC of every response of every group, by teacher forcing: [group][response].

    Rows (prompt + response token ids, right-padded) are cut into batches of at most
    `max_batch_tokens` padded positions: the logits of a batch are (rows, width, V) floats.
    """
    rows = []  # (group, response, prompt ids, response ids)
    for g, group in enumerate(groups):
        prompt = prompt_ids(tokenizer, group.query)
        rows += [(g, i, prompt, list(r.token_ids)) for i, r in enumerate(group.responses)]
    rows.sort(key=lambda r: len(r[2]) + len(r[3]))  # similar lengths together: less padding
    out = [[0.0] * len(group.responses) for group in groups]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    start = 0
    while start < len(rows):
        end = start + 1
        while end < len(rows) and (end + 1 - start) * (len(rows[end][2]) + len(rows[end][3])) <= max_batch_tokens:
            end += 1
        chunk = rows[start:end]
        width = max(len(p) + len(r) for _, _, p, r in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention, response = torch.zeros_like(ids), torch.zeros_like(ids)
        for row, (_, _, p, r) in enumerate(chunk):
            ids[row, : len(p) + len(r)] = torch.tensor(p + r)
            attention[row, : len(p) + len(r)] = 1
            response[row, len(p) : len(p) + len(r)] = 1
        device = model.device
        logits = model(input_ids=ids.to(device), attention_mask=attention.to(device), use_cache=False).logits
        # logits at position t predict token t + 1: the response's tokens are predicted from t = len(p) - 1 on
        scores = self_certainty(logits[:, :-1], response[:, 1:].to(device)).tolist()
        for (g, i, _, _), s in zip(chunk, scores):
            out[g][i] = s
        start = end
    return out


def certainty_pair(group: ResponseGroup, scores: Sequence[float]) -> PreferencePair | None:
    """The most self-certain response against the least, or None when they tie (or fewer than two)."""
    found = extremes(scores)
    return None if found is None else whole_response_pair(group, *found, scores)


def build(groups: list[ResponseGroup], params, tools) -> tuple[list[PreferencePair], dict]:
    """The round's pairs by self-certainty, scored by the round's policy; `tokens`: the response tokens scored."""
    model, tokenizer = tools.model()
    scores = response_self_certainty(model, tokenizer, groups)
    pairs = [p for g, s in zip(groups, scores) if (p := certainty_pair(g, s)) is not None]
    return pairs, pair_stats(pairs, len(groups)) | {"tokens": sum(len(r.token_ids) for g in groups for r in g.responses)}
