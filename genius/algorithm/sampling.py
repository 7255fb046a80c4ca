"""Stepwise foresight re-sampling over batches of queries (docs/ALGORITHM.md section 1).

All queries of a batch advance together, timestamp by timestamp, with one engine call per
timestamp: it samples N candidate steps for every live beam of every query and rolls each
out to the end of the response (no rollouts with the `step` score: no look-ahead). The
decisions in between (scores, F_k, exploration, exploitation, advantages) are the pure
functions of `genius.algorithm.foresight`; `selection: greedy` swaps the draws for top-M and
best-vs-worst (the paper's "w/o sampling" ablation).

Each query yields one provenance record (`genius.algorithm.records.SampleRecord`): every timestamp's
beams, candidates, scores, probabilities and selections, its preference pairs
(x, T_w, A_w, T_l, A_l), and the final response.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from genius.algorithm.foresight import (
    advantage,
    exploit,
    exploit_greedy,
    explore,
    explore_greedy,
    first_unique,
    foresight_distribution,
    foresight_score,
)
from genius.algorithm.records import PreferencePair, SampleRecord
from genius.config import SamplingConfig
from genius.data.queries import Query, cut_batches
from genius.engines.base import Completion, Continuation, Engine


@dataclass
class Beam:
    token_ids: list[int]  # the response prefix a_<k
    logprobs: list[float]  # its per-token log-probs
    value: float  # Q_{k-1}: the foresight score of the candidate that created it; 0 when empty
    finished: bool = False  # its last step ended the response


@dataclass
class Candidate:
    beam: int  # index of the beam it extends
    step: Completion  # a_k
    rollout: Completion | None = None  # a'_>k; None when the step ended the response
    score: float = 0.0  # f

    @property
    def finished(self) -> bool:
        return self.step.finish_reason == "eos" or (self.rollout is not None and self.rollout.finish_reason == "eos")


@dataclass
class QueryState:
    query: Query
    prompt_ids: list[int]
    rng: np.random.Generator
    beams: list[Beam] = field(default_factory=lambda: [Beam([], [], 0.0)])
    timestamps: list[dict] = field(default_factory=list)
    pairs: list[PreferencePair] = field(default_factory=list)
    final: dict | None = None

    @property
    def live_beams(self) -> list[int]:
        return [i for i, b in enumerate(self.beams) if not b.finished]


def query_rng(seed: int, query_id: str) -> np.random.Generator:
    """A generator per query, so a query's draws do not depend on what it was batched with."""
    return np.random.default_rng(_seed(seed, query_id))


def _seed(seed: int, key: str) -> int:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def prompt_ids(tokenizer, text: str) -> list[int]:
    """The query as the chat model sees it: its chat template with the generation prompt."""
    return list(tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)["input_ids"])


def foresight_sample(
    engine: Engine,
    tokenizer,
    queries: Iterable[Query],
    cfg: SamplingConfig,
    progress: Callable[[str], None] | None = None,
) -> Iterator[SampleRecord]:
    """Yield one provenance record per query, in input order, batch by batch."""
    for batch in foresight_sample_batches(engine, tokenizer, cut_batches(list(queries), cfg.batch_queries), cfg, progress):
        yield from batch


def batch_sampler(params, log: Callable[[str], None] | None = None):
    """Genius's sampler for the shard store (genius.stages.shards.Sampler): foresight re-sampling
    with the `sampling` section, batch by batch."""
    return lambda engine, tokenizer, batches: foresight_sample_batches(engine, tokenizer, batches, params.sampling, log)


def foresight_sample_batches(
    engine: Engine,
    tokenizer,
    batches: list[list[Query]],
    cfg: SamplingConfig,
    progress: Callable[[str], None] | None = None,
) -> Iterator[list[SampleRecord]]:
    """Yield the records of each batch, in order; all queries of a batch advance together.

    A batch is the unit of resumable sampling (`genius.stages.shards`): its engine draws are
    seeded by its first query's id, not its position, so a resumed run that skips finished
    batches samples the remaining ones exactly as an uninterrupted run would.
    """
    start, done, pairs, total = time.time(), 0, 0, sum(map(len, batches))
    for batch in batches:
        torch.manual_seed(_seed(cfg.seed, batch[0].id))  # the engine's draws (transformers backend)
        states = [QueryState(q, prompt_ids(tokenizer, q.text), query_rng(cfg.seed, q.id)) for q in batch]
        for k in range(1, cfg.num_foresight_steps + 1):
            live = [s for s in states if s.live_beams]
            if not live:
                break
            candidates = _expand(engine, live, cfg)
            for s, cands in zip(live, candidates):
                _advance(s, k, cands, cfg, tokenizer)
        records = [_record(s) for s in states]
        done += len(records)
        pairs += sum(len(r.pairs) for r in records)
        yield records
        if progress:
            rate = done / (time.time() - start)
            progress(f"sampled {done}/{total} queries, {pairs} pairs, {rate:.2g} queries/s")


def _expand(engine: Engine, live: list[QueryState], cfg: SamplingConfig) -> list[list[Candidate]]:
    """Steps 1-2 in one engine call: N candidate steps per live beam, each rolled out.

    The rollout continues the step in the engine (`then`), on the step's KV cache: the
    prompt + beam prefix is encoded once per beam, not once per candidate and again per
    rollout. Under the `step` score (no foresight) nothing is rolled out at all.
    """
    beam_refs = [(s, i) for s in live for i in s.live_beams]
    lookahead = cfg.foresight_score != "step"
    steps = engine.generate(
        [s.prompt_ids + s.beams[i].token_ids for s, i in beam_refs],
        n=cfg.num_rollouts,
        temperature=cfg.temperature,
        max_new_tokens=cfg.max_step_tokens,
        stop=cfg.step_delimiter,
        then=Continuation(cfg.rollout_temperature, cfg.max_rollout_tokens) if lookahead else None,
    )
    per_state: dict[int, list[Candidate]] = {id(s): [] for s in live}
    for (s, i), completions in zip(beam_refs, steps):
        per_state[id(s)].extend(Candidate(i, c, c.continuation) for c in completions)
    for s in live:
        for c in per_state[id(s)]:
            prefix = s.beams[c.beam].logprobs
            rollout = c.rollout.logprobs if c.rollout else []
            c.score = foresight_score(prefix, c.step.logprobs, rollout, cfg.foresight_score)
    return [per_state[id(s)] for s in live]


def _advance(s: QueryState, k: int, cands: list[Candidate], cfg: SamplingConfig, tokenizer) -> None:
    """Steps 3-6 for one query: F_k, the next beams, this timestamp's pair and advantages."""
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    if cfg.dedup_steps:  # a repeated step (same prefix, same text but whitespace) enters F_k once
        keys = ["".join(decode(s.beams[c.beam].token_ids + c.step.token_ids).split()) for c in cands]
        cands = [cands[i] for i in first_unique(keys)]
    scores = [c.score for c in cands]
    probs = foresight_distribution(scores, cfg.tau)
    if cfg.selection == "greedy":  # the "w/o sampling" ablation: no draws at all
        selected, chosen_rejected = explore_greedy(scores, cfg.step_beam_size), exploit_greedy(scores)
    else:
        selected = explore(scores, cfg.tau, cfg.step_beam_size, s.rng)
        chosen_rejected = exploit(scores, cfg.tau, s.rng, cfg.negative_selection)

    def trajectory(c: Candidate) -> list[int]:
        return s.beams[c.beam].token_ids + c.step.token_ids + (c.rollout.token_ids if c.rollout else [])

    record = {
        "k": k,
        "beams": [{"prefix": decode(b.token_ids), "value": b.value, "finished": b.finished} for b in s.beams],
        "candidates": [
            {
                "beam": c.beam,
                "step": decode(c.step.token_ids),
                "rollout": decode(c.rollout.token_ids) if c.rollout else "",
                "score": c.score,
                "prob": float(p),
            }
            for c, p in zip(cands, probs)
        ],
        "selected": selected,
        "chosen": None,
        "rejected": None,
    }
    if chosen_rejected is not None:
        w, l = chosen_rejected
        cw, cl = cands[w], cands[l]
        record["chosen"], record["rejected"] = w, l
        # identical responses teach nothing; min_score_gap (0 by default) drops near-ties too
        if trajectory(cw) != trajectory(cl) and cw.score - cl.score >= cfg.min_score_gap:
            s.pairs.append(
                PreferencePair(
                    query_id=s.query.id,
                    query=s.query.text,
                    timestamp=k,
                    chosen=decode(trajectory(cw)),
                    rejected=decode(trajectory(cl)),
                    chosen_complete=cw.finished,
                    rejected_complete=cl.finished,
                    score_chosen=cw.score,
                    score_rejected=cl.score,
                    adv_chosen=advantage(cw.score, s.beams[cw.beam].value),
                    adv_rejected=advantage(cl.score, s.beams[cl.beam].value),
                    same_beam=cw.beam == cl.beam,
                )
            )
    best = cands[int(np.argmax(scores))]
    s.final = {"response": decode(trajectory(best)), "score": best.score, "complete": best.finished}
    s.timestamps.append(record)
    s.beams = [
        Beam(
            s.beams[cands[i].beam].token_ids + cands[i].step.token_ids,
            s.beams[cands[i].beam].logprobs + cands[i].step.logprobs,
            value=cands[i].score,
            finished=cands[i].step.finish_reason == "eos",
        )
        for i in selected
    ]


def _record(s: QueryState) -> SampleRecord:
    return SampleRecord(s.query.id, s.query.text, tuple(s.timestamps), tuple(s.pairs), s.final)
