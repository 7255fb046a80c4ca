"""Preference pairs: pulled out of the sampling provenance, with the statistics worth a look.

The quintuples (x, T_w, A_w, T_l, A_l) are built during sampling, one per timestamp
(docs/ALGORITHM.md section 1, steps 5-6); this module writes them as the round's training set and
says what kind of pairs they are. In particular, only pairs whose responses come from
different beams can land in ACO's calibration region (A_l > A_w): the share of such pairs
tells how often ACO can differ from DPO at all.

`build` is Genius's row of the stage table's ROUNDS: what the round's pairs stage calls. Every
method has one, `build(samples, params, tools) -> (training records, statistics)`; `tools`
(genius.stages.tools) lends the answer reader, the gold answers of a control and the round's
policy, each made on first use. `target_stats` describes the SFT targets of LMSI and RFT.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genius.algorithm.records import PreferencePair, SampleRecord, SftTarget
from genius.io import read_jsonl, write_jsonl


def pair_stats(pairs: list[PreferencePair], num_queries: int) -> dict:
    """Counts and shapes of a round's pairs; the advantage gap is A_l - A_w."""
    gaps = np.array([p.adv_rejected - p.adv_chosen for p in pairs])
    margins = np.array([p.score_chosen - p.score_rejected for p in pairs])
    return {
        "pairs": len(pairs),
        "queries": num_queries,
        "pairs_per_query": len(pairs) / max(num_queries, 1),
        "same_beam_fraction": float(np.mean([p.same_beam for p in pairs])) if pairs else 0.0,
        "calibration_region_fraction": float(np.mean(gaps > 0)) if pairs else 0.0,
        "mean_advantage_gap": float(gaps.mean()) if pairs else 0.0,
        "mean_score_margin": float(margins.mean()) if pairs else 0.0,
        "chosen_complete_fraction": float(np.mean([p.chosen_complete for p in pairs])) if pairs else 0.0,
    }


def extract_pairs(samples_path: str | Path, pairs_path: str | Path) -> dict:
    """samples.jsonl (one provenance record per query) -> pairs.jsonl; returns pair_stats."""
    records = [SampleRecord.from_json(row) for row in read_jsonl(samples_path)]
    pairs = [p for r in records for p in r.pairs]
    write_jsonl(pairs_path, (p.to_json() for p in pairs))
    return pair_stats(pairs, len(records))


def build(records: list[SampleRecord], params, tools) -> tuple[list[PreferencePair], dict]:
    """Genius: the pairs the foresight search chose, one per timestamp (docs/ALGORITHM.md section 1)."""
    pairs = [p for r in records for p in r.pairs]
    return pairs, pair_stats(pairs, len(records))


def target_stats(targets: list[SftTarget], num_queries: int) -> dict:
    """Counts of a round's SFT targets: how many, from how many of its queries."""
    kept = len({t.query_id for t in targets})
    return {
        "targets": len(targets),
        "queries": num_queries,
        "queries_kept": kept,
        "targets_per_query": len(targets) / max(num_queries, 1),
        "complete_fraction": float(np.mean([t.complete for t in targets])) if targets else 0.0,
    }
