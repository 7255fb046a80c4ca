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



def test_a_round_held_by_one_stage_is_refused_to_another_naming_it(project, capsys):
    """Two stages of one round at once (`genius sample --round 1` twice, by hand): the second stops at
    once with one line naming the first, before it touches anything."""
    import subprocess
    import sys

    from conftest import ROOT

    from genius.stages.cli import main

    lock = project / "runs" / "r1" / ".stage.lock"
    code = f"from genius.io import hold\nwith hold({str(lock)!r}, 'genius sample --round 1'):\n    print('held', flush=True)\n    input()"
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["sample", "--round", "1"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"runs/r1 is held by pid {holder.pid} (genius sample --round 1) since " in err, err
        assert not (project / "runs" / "r1" / "samples").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(["pairs", "--round", "1"]) == 2  # free again: now it runs, and stops at its missing input
    assert "runs/r1/samples.jsonl does not exist" in capsys.readouterr().err
