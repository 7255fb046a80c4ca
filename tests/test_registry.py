"""The round registry and the promotion gate, on fixed numbers."""

import pytest

from genius.stages.registry import RoundEntry, decide_promotion, latest_promoted, read_registry, write_registry


def test_round_trip_and_validation(tmp_path):
    path = tmp_path / "rounds.yaml"
    entries = {1: RoundEntry(1, "runs/toy/model", True, "ok"), 2: RoundEntry(2, "runs/r1/checkpoint")}
    write_registry(path, entries)
    assert read_registry(path) == entries
    assert path.read_text().startswith("# The round registry")
    write_registry(path, {})
    assert read_registry(path) == {}
    path.write_text("round_list:\n  r1: {round: 1, policy: a}\n  r3: {round: 3, policy: b}\n")
    with pytest.raises(ValueError, match="without gaps"):
        read_registry(path)
    path.write_text("round_list:\n  r1: {round: 2, policy: a}\n")
    with pytest.raises(ValueError, match="round_list.r1: the key must be r2"):
        read_registry(path)


def test_latest_promoted_skips_rejected_rounds():
    entries = {1: RoundEntry(1, "base", True), 2: RoundEntry(2, "r1", False), 3: RoundEntry(3, "r1", None)}
    assert latest_promoted(entries, before=3) == 1  # round 2 regressed: round 3 starts from round 1
    assert latest_promoted(entries, before=4) == 1
    assert latest_promoted(entries, before=1) is None  # round 1 starts from the base
    assert latest_promoted({1: RoundEntry(1, "base", False)}, before=2) is None


def test_decide_promotion_tolerance():
    # 0.45 -> 0.445 is a 0.5-point loss, inside a 1-point tolerance; 0.43 is 2 points, outside
    assert decide_promotion(0.445, 0.45, 0.01, "t")[0] is True
    promoted, reason = decide_promotion(0.43, 0.45, 0.01, "t")
    assert promoted is False and "fell to 43.0% from 45.0%" in reason
    assert decide_promotion(0.5, 0.45, 0.0, "t")[0] is True

