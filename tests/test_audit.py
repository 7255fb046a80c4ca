"""The audit (genius.evaluation.audit, bench/audit.py) on a hand-made pairs file, tests/data/audit_pairs.jsonl.

Gold answers q1 = 7, q2 = 10, q3 = 2. The five pairs, (positive, negative) right?, k, beam, region:
    1. q1 k=1 same   (right, wrong)   A_l <= A_w
    2. q1 k=2 cross  (wrong, right)   A_l >  A_w
    3. q2 k=1 same   (right, right)   A_l <= A_w     ("A:010" reads as 10)
    4. q2 k=2 cross  (wrong, wrong)   A_l >  A_w     (the negative gives no answer)
    5. q3 k=2 same   (wrong, wrong)   A_l <= A_w
Overall: 1/5 each of right-wrong, wrong-right, both-right, 2/5 both-wrong; right way 1/2.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from genius.algorithm.records import PreferencePair
from genius.evaluation.audit import audit_pairs, term_summary
from genius.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "tests" / "data" / "audit_pairs.jsonl"
GOLD = {"q1": 7, "q2": "10", "q3": 2}


def pairs():
    return [PreferencePair.from_json(r) for r in read_jsonl(PAIRS)]


def test_overall_shares_and_right_way():
    overall = audit_pairs(pairs(), GOLD, "toy")["overall"]
    assert overall["pairs"] == 5
    assert (overall["right_wrong"], overall["wrong_right"], overall["both_right"], overall["both_wrong"]) == (0.2, 0.2, 0.2, 0.4)
    assert overall["right_way"] == 0.5 and overall["positive_right"] == 0.4 and overall["negative_right"] == 0.4


def test_by_timestamp_beam_and_calibration_region():
    audit = audit_pairs(pairs(), GOLD, "toy")
    k1, k2 = audit["by_timestamp"][1], audit["by_timestamp"][2]
    assert (k1["pairs"], k1["right_wrong"], k1["both_right"], k1["right_way"]) == (2, 0.5, 0.5, 1.0)
    assert k2["pairs"] == 3 and k2["wrong_right"] == pytest.approx(1 / 3) and k2["both_wrong"] == pytest.approx(2 / 3)
    assert k2["right_way"] == 0.0
    same, cross = audit["by_beam"]["same beam"], audit["by_beam"]["cross beam"]
    assert same["pairs"] == 3 and cross["pairs"] == 2 and cross["wrong_right"] == 0.5 and same["wrong_right"] == 0
    inside, outside = audit["by_calibration"]["A_l > A_w"], audit["by_calibration"]["A_l <= A_w"]
    # does A_l > A_w predict a better negative? here 1 of 2 negatives right inside, 1 of 3 outside
    assert inside["negative_right"] == 0.5 and outside["negative_right"] == pytest.approx(1 / 3)


def test_a_pair_without_an_answer_is_named():
    with pytest.raises(KeyError, match="'q3'"):
        audit_pairs(pairs(), {"q1": 7, "q2": 10}, "toy")


def test_term_summary_ratios():
    rows = [
        {"grad_norm_preference": 100.0, "grad_norm_sft": 1.0, "pull_preference": 2.5, "pull_sft": 0.05, "grad_norm": 100.5, "loss": 0.9},
        {"grad_norm_preference": 50.0, "grad_norm_sft": 2.0, "pull_preference": 1.5, "pull_sft": 0.05, "grad_norm": 51.0, "loss": 0.5},
    ]
    s = term_summary(rows)
    assert s["first"]["grad_ratio"] == 100.0 and s["first"]["pull_ratio"] == pytest.approx(50.0)
    assert s["last"]["grad_ratio"] == 25.0 and s["mean"]["grad_norm_preference"] == 75.0 and s["steps"] == 2
    assert term_summary([{"pull_preference": 0.0, "pull_sft": 0.5}])["first"]["grad_ratio"] is None  # not measured


def test_script_prints_the_tables(tmp_path):
    steps = tmp_path / "train_steps.jsonl"
    steps.write_text(json.dumps({"grad_norm_preference": 10.0, "grad_norm_sft": 0.5, "pull_preference": 2.5, "pull_sft": 0.04}) + "\n")
    out = subprocess.run(
        [sys.executable, "bench/audit.py", "--pairs", str(PAIRS), "--answers", "toy", "--steps", str(steps)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    assert "| all | 5 | 20.0 | 20.0 | 20.0 | 40.0 | 50.0 |" in out
    assert "| k=2 | 3 |" in out and "| A_l > A_w | 2 |" in out
    assert "| first | 10 | 0.5 | 20.0 | 2.5 | 0.04 | 62.5 |" in out
