"""n whole responses per query: the sample every label-free baseline chooses from.

Self-consistency (ScPO), LMSI, self-certainty, self-rewarding and the RFT control all start
the same way: n independent responses per query, each sampled to its end at one temperature
(no steps, no rollouts: that is what sets them apart from foresight sampling). The
`sample_responses` draws them through the engine interface (genius.engines.base), one engine
call per batch of queries, each batch seeded by its first query's id exactly as foresight
sampling seeds its batches (genius.algorithm.sampling), so a batch's responses do not depend
on which batches ran before it. `batch_sampler` hands it to the round's shard store
(`method.samples`, `method.temperature`, `method.max_new_tokens`). Each batch comes with its cost, keyed as the sampler's batch
costs are (engine calls, generated and prefilled tokens, queries, seconds, parameters), so
genius.stages.shards.sampling_cost totals either kind.

`whole_response_pair` is the one way these methods write a pair: two responses of one query
as the `PreferencePair` of timestamp 1, both extending the empty prefix. That prefix's value
Q_0 is 0, so a response's advantage is its score, A = f - Q_0 = f: the vote share, the
self-certainty or the judge's score, whichever the method ranks by.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterator, Sequence

import torch

from genius.algorithm.records import PreferencePair, Response, ResponseGroup
from genius.algorithm.sampling import _seed, prompt_ids
from genius.data.queries import Query
from genius.engines.base import Completion, Engine


def sample_responses(
    engine: Engine,
    tokenizer,
    batches: list[list[Query]],
    n: int,
    temperature: float,
    max_new_tokens: int,
    seed: int,
) -> Iterator[tuple[list[ResponseGroup], dict]]:
    """Per batch of queries (genius.data.queries.cut_batches): its groups of n responses, and its cost."""
    for batch in batches:
        before, start = dataclasses.replace(engine.cost), time.perf_counter()
        torch.manual_seed(_seed(seed, batch[0].id))  # the engine's draws, as foresight sampling seeds a batch
        prompts = [prompt_ids(tokenizer, q.text) for q in batch]
        out = engine.generate(prompts, n=n, temperature=temperature, max_new_tokens=max_new_tokens, stop=None)
        groups = [ResponseGroup(q.id, q.text, tuple(_response(c, tokenizer) for c in cs)) for q, cs in zip(batch, out)]
        cost = {k: v - getattr(before, k) for k, v in dataclasses.asdict(engine.cost).items()}
        cost |= {"queries": len(batch), "seconds": time.perf_counter() - start, "parameters": engine.num_parameters}
        yield groups, cost


def batch_sampler(params, log=None):
    """The response methods' sampler for the shard store (genius.stages.shards.Sampler): `method.samples`
    responses per query at `method.temperature`, seeded per batch by `sampling.seed`."""
    m = params.method

    def sample(engine: Engine, tokenizer, batches: list[list[Query]]) -> Iterator[list[ResponseGroup]]:
        for groups, _ in sample_responses(engine, tokenizer, batches, m.samples, m.temperature, m.max_new_tokens, params.sampling.seed):
            yield groups

    return sample


def _response(c: Completion, tokenizer) -> Response:
    mean = sum(c.logprobs) / len(c.logprobs) if c.logprobs else 0.0
    text = tokenizer.decode(c.token_ids, skip_special_tokens=True)
    return Response(text, tuple(c.token_ids), c.finish_reason == "eos", mean)


def whole_response_pair(group: ResponseGroup, chosen: int, rejected: int, scores: Sequence[float]) -> PreferencePair:
    """Responses `chosen` and `rejected` of the group as a pair; `scores[i]` is response i's score f = A."""
    w, l = group.responses[chosen], group.responses[rejected]
    return PreferencePair(
        query_id=group.query_id,
        query=group.query,
        timestamp=1,
        chosen=w.text,
        rejected=l.text,
        chosen_complete=w.complete,
        rejected_complete=l.complete,
        score_chosen=float(scores[chosen]),
        score_rejected=float(scores[rejected]),
        adv_chosen=float(scores[chosen]),
        adv_rejected=float(scores[rejected]),
        same_beam=True,
    )


def extremes(scores: Sequence[float | None]) -> tuple[int, int] | None:
    """(index of the highest score, index of the lowest), the first of equals; None scores are skipped.

    None when fewer than two responses are scored or the highest equals the lowest: a tie
    prefers nothing (Self-Rewarding drops such pairs, and so does every method here).
    """
    scored = [i for i, s in enumerate(scores) if s is not None]
    if len(scored) < 2:
        return None
    best = max(scored, key=lambda i: scores[i])  # max and min return the first of equals
    worst = min(scored, key=lambda i: scores[i])
    return None if scores[best] == scores[worst] else (best, worst)
