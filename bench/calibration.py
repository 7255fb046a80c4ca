"""H1 and H2 of docs/RESULTS.md on one round's pairs, pure computation (no model).

    python -m bench.calibration runs/science/sweep/seed0/genius/r1

H1: ACO's calibration weight w = min(1, exp(-(A_l - A_w)/alpha)) for each alpha: its mean and
the share of pairs with w < 1 and w < 0.5, plus the spread of the advantage gaps (what an alpha
set from the round's own advantages would be). H2: how often the negative's step is the
positive's step again (equal, or equal but for whitespace), from samples.jsonl's timestamps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from genius.algorithm.records import PreferencePair, SampleRecord
from genius.io import read_jsonl
from genius.layout import RoundPaths

ALPHAS = [1.0, 0.1, 0.03, 0.01, 0.003]


def w_table(pairs: list[PreferencePair], alphas=ALPHAS) -> list[dict]:
    gap = np.array([p.adv_rejected - p.adv_chosen for p in pairs])
    rows = []
    for a in alphas:
        w = np.minimum(1.0, np.exp(-gap / a))
        rows.append(
            {
                "alpha": a,
                "w_mean": float(w.mean()),
                "w_below_1": float((w < 1).mean()),
                "w_below_0.5": float((w < 0.5).mean()),
            }
        )
    return rows


def near_copies(records: list[SampleRecord]) -> dict:
    """Shares of the written pairs whose negative step equals the positive step (the responses
    then differ in their rollouts only when the prefix is the same too)."""
    n = same = same_ws = same_beam_same = dropped = 0
    for rec in records:
        for t in rec.timestamps:
            if t["chosen"] is None:
                continue
            cw, cl = t["candidates"][t["chosen"]], t["candidates"][t["rejected"]]
            prefix_w = t["beams"][cw["beam"]]["prefix"]
            prefix_l = t["beams"][cl["beam"]]["prefix"]
            if prefix_w + cw["step"] + cw["rollout"] == prefix_l + cl["step"] + cl["rollout"]:
                dropped += 1  # the same response twice: no pair was written
                continue
            n += 1
            eq = cw["step"] == cl["step"]
            ws = "".join(cw["step"].split()) == "".join(cl["step"].split())
            same += eq
            same_ws += ws and not eq
            same_beam_same += ws and prefix_w == prefix_l
    return {
        "timestamps_identical_dropped": dropped,
        "pairs": n,
        "step_equal": same / max(n, 1),
        "step_equal_but_whitespace": same_ws / max(n, 1),
        "prefix_and_step_equal_up_to_ws": same_beam_same / max(n, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("round_dir", nargs="+", help="folders holding pairs.jsonl (and samples.jsonl)")
    args = parser.parse_args()
    for d in map(Path, args.round_dir):
        pairs = [PreferencePair.from_json(row) for row in read_jsonl(RoundPaths(d).pairs)]
        gap = np.array([p.adv_rejected - p.adv_chosen for p in pairs])
        adv = np.array([x for p in pairs for x in (p.adv_chosen, p.adv_rejected)])
        margin = np.array([p.score_chosen - p.score_rejected for p in pairs])
        print(f"== {d}: {len(pairs)} pairs")
        print(
            f"gap A_l-A_w: mean {gap.mean():.4f} sd {gap.std():.4f} |gap| median {np.median(abs(gap)):.4f}; "
            f"share gap>0 {np.mean(gap > 0):.3f}; std of advantages {adv.std():.4f}; "
            f"score margin median {np.median(margin):.4f}, share < 0.01 {np.mean(margin < 0.01):.3f}"
        )
        for row in w_table(pairs, ALPHAS + [float(adv.std())]):
            print(
                f"alpha {row['alpha']:<8.4g} mean w {row['w_mean']:.3f}  w<1 {row['w_below_1']:.3f}  w<0.5 {row['w_below_0.5']:.3f}"
            )
        samples = RoundPaths(d).samples
        if samples.exists():
            print(json.dumps(near_copies([SampleRecord.from_json(row) for row in read_jsonl(samples)])))


if __name__ == "__main__":
    main()
