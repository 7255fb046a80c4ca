"""Preference pairs: pulled out of the sampling provenance, with the statistics worth a look.

The quintuples (x, T_w, A_w, T_l, A_l) are built during sampling, one per timestamp
(ALGORITHM.md section 1.5-6); this module writes them as the round's training set and
says what kind of pairs they are. In particular, only pairs whose responses come from
different beams can land in ACO's calibration region (A_l > A_w): the share of such pairs
tells how often ACO can differ from DPO at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np


def read_jsonl(path: str | Path) -> Iterator[dict]:
    with open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows atomically (temp file, then rename); returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def pair_stats(pairs: list[dict], num_queries: int) -> dict:
    """Counts and shapes of a round's pairs; the advantage gap is A_l - A_w."""
    gaps = np.array([p["adv_rejected"] - p["adv_chosen"] for p in pairs])
    margins = np.array([p["score_chosen"] - p["score_rejected"] for p in pairs])
    return {
        "pairs": len(pairs),
        "queries": num_queries,
        "pairs_per_query": len(pairs) / max(num_queries, 1),
        "same_beam_fraction": float(np.mean([p["same_beam"] for p in pairs])) if pairs else 0.0,
        "calibration_region_fraction": float(np.mean(gaps > 0)) if pairs else 0.0,
        "mean_advantage_gap": float(gaps.mean()) if pairs else 0.0,
        "mean_score_margin": float(margins.mean()) if pairs else 0.0,
        "chosen_complete_fraction": float(np.mean([p["chosen_complete"] for p in pairs])) if pairs else 0.0,
    }


def extract_pairs(samples_path: str | Path, pairs_path: str | Path) -> dict:
    """samples.jsonl (one provenance record per query) -> pairs.jsonl; returns pair_stats."""
    records = list(read_jsonl(samples_path))
    pairs = [p for r in records for p in r["pairs"]]
    write_jsonl(pairs_path, pairs)
    return pair_stats(pairs, len(records))
