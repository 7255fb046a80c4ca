"""Data hook for the genius_toy tasks: the labelled test set from a path given at run time.

lm-eval calls `load(**metadata, **dataset_kwargs)`; `genius.evaluation.tasks` passes
`metadata={"test_path": ...}` through its TaskManager, so the YAMLs hold no path.
"""

import json
from pathlib import Path

import datasets


def load(test_path: str | None = None, **_) -> datasets.DatasetDict:
    """A DatasetDict whose "test" split holds the JSONL rows {"id", "query", "answer"}."""
    if not test_path:
        raise ValueError('genius_toy: no test set given; pass TaskManager(metadata={"test_path": ...})')
    path = Path(test_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"genius_toy: test set {path.resolve()} does not exist")
    with path.open() as f:
        rows = [json.loads(line) for line in f if line.strip()]
    # str() so that a JSONL with integer answers compares like one with string answers
    rows = [{"id": str(r["id"]), "query": str(r["query"]), "answer": str(r["answer"])} for r in rows]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
