"""Hooks for the genius_rg tasks: a reasoning-gym test set, disjoint from the query pool, scored by reasoning-gym.

lm-eval calls `load(**metadata)`. `genius.evaluation.tasks` passes `test_path`, a
`reasoning_gym:<dataset>?size=N&seed=S&...` spec, and `pool`, the `reasoning_gym:` entries
of `queries.paths`: the test set is the spec's problems minus every question the pool also
generates (genius.data.reasoning_gym.held_out), so no test problem was ever a training query.
The answer is read by `extract` (genius.data.reasoning_gym.extract_answer: the text after the
last `Answer:`, else the last number) and scored by the dataset's own `score_answer`.
"""

import functools

import datasets

from genius.data import reasoning_gym


def load(test_path: str | None = None, pool: list[str] | tuple = (), **_) -> datasets.DatasetDict:
    """A DatasetDict whose "test" split holds {id, query, answer, spec, index}; spec and index regenerate the item."""
    if not test_path or not reasoning_gym.is_spec(test_path):
        raise ValueError(
            f"genius_rg: eval.test_path must be a reasoning_gym:<dataset>?size=N&seed=S spec, got {test_path!r}"
        )
    spec, problems, _ = reasoning_gym.held_out_from(test_path, pool)
    rows = [{"id": p.id, "query": p.query, "answer": p.answer, "spec": str(spec), "index": p.index} for p in problems]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def extract(resps, docs):
    """Custom filter: each response -> its answer string ("" when it gives none, which scores 0)."""
    return [[reasoning_gym.extract_answer(r) or "" for r in rs] for rs in resps]


_spec = functools.lru_cache(maxsize=8)(reasoning_gym.parse_spec)


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """correct: reasoning-gym scores the answer 1 (the headline); score: its raw score, partial credit included."""
    score = reasoning_gym.score(_spec(doc["spec"]), doc["index"], results[0] or None)
    return {"correct": float(score >= 1.0), "score": score}
