"""`make replicate`: the statistics by hand, the plan's errors, and the flow end to end on a tiny plan."""

import math
import re
import sys

import pytest
import yaml
from conftest import ROOT, TINY, run

from flows import replicate as flow
from genius.config import ConfigError
from genius.stages import replicate as rep


def test_mean_se_by_hand():
    mean, se = rep.mean_se([0.1, 0.2, 0.3])  # sd = 0.1, se = 0.1 / sqrt(3)
    assert mean == pytest.approx(0.2) and se == pytest.approx(0.1 / math.sqrt(3))
    mean, se = rep.mean_se([0.5])
    assert mean == 0.5 and math.isnan(se)


def rows():
    # base 40/30, arm 45/30 and 44/31 on two seeds: greedy deltas +5, +4 -> 4.5 +- 0.5
    return [
        {"seed": 0, "arm": "base", "round": 0, "g": 0.40},
        {"seed": 1, "arm": "base", "round": 0, "g": 0.30},
        {"seed": 0, "arm": "genius", "round": 1, "g": 0.45},
        {"seed": 1, "arm": "genius", "round": 1, "g": 0.34},
        {"seed": 0, "arm": "dpo", "round": 1, "g": 0.41},
        {"seed": 1, "arm": "dpo", "round": 1, "g": 0.33},
    ]


def test_summarise_pairs_changes_by_seed():
    by = {(e["arm"], e["round"]): e for e in rep.summarise(rows(), ["g"])}
    mean, se = by[("genius", 1)]["g"]
    assert mean == pytest.approx(0.395) and se == pytest.approx(0.055)  # unpaired: the seeds' spread
    mean, se = by[("genius", 1)]["g/delta"]
    assert mean == pytest.approx(0.045) and se == pytest.approx(0.005)  # paired: +5 and +4
    assert by[("base", 0)]["g/delta"] is None
    assert rep.paired(rows(), ("genius", 1), ("dpo", 1), "g") == pytest.approx((0.025, 0.015))  # +4, +1


def plan_file(tmp_path, arms, **top):
    data = {"seeds": [0], "out_dir": str(tmp_path / "out"), "params": str(ROOT / "params.yaml"), "arms": arms, **top}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "arms, top, message",
    [
        ({"genius": {"sets": {}}}, {}, "arms.genius: unknown keys ['sets']"),
        ({"genius": {}, "dpo": {"pairs_from": "gen"}}, {}, "arms.dpo.pairs_from"),
        ({"genius": {"set": {"training.betta": 1}}}, {}, "arms.genius"),
        ({"genius": {}}, {"seed": [0]}, "unknown keys ['seed']"),
        ({"base": {}}, {}, "`base` is reserved"),
    ],
)
def test_bad_plans_name_the_key(tmp_path, arms, top, message):
    with pytest.raises(ConfigError, match="plan.yaml") as e:
        rep.load_plan(plan_file(tmp_path, arms, **top))
    assert message in str(e.value)


def test_an_arm_is_params_overrides_per_seed(tmp_path):
    plan = rep.load_plan(plan_file(tmp_path, {"genius": {"rounds": 2}, "dpo": {"pairs_from": "genius", "set": {"training.loss": "dpo"}}}, seeds=[3]))
    cmd = flow.command(plan, 3, plan.arm("dpo"), "train", 1)
    assert cmd[-3:] == ["train", "--round", "1"]
    sets = dict(cmd[i + 1].split("=", 1) for i, c in enumerate(cmd) if c == "-S")
    assert sets["training.loss"] == "dpo" and sets["sampling.seed"] == "3" and sets["training.seed"] == "3"
    assert sets["rounds.runs_dir"] == str(tmp_path / "out" / "seed3" / "dpo")
    flow.prepare(plan, 3, plan.arm("genius"), "base-model")
    registry = yaml.safe_load((tmp_path / "out" / "seed3" / "genius" / "rounds.yaml").read_text())["round_list"]
    assert registry["r1"]["policy"] == "base-model"
    assert registry["r2"]["policy"] == str(tmp_path / "out" / "seed3" / "genius" / "r1" / "checkpoint")


def test_results_block_keeps_the_hand_written_text(tmp_path):
    plan = rep.load_plan(plan_file(tmp_path, {"genius": {}}, results=str(tmp_path / "RESULTS.md")))
    (tmp_path / "RESULTS.md").write_text(f"# Results\n\nwhat we tried\n\n{rep.BEGIN}\nold\n{rep.END}\n\nmore notes\n")
    rep.write_results(plan, 60, "make replicate")
    text = (tmp_path / "RESULTS.md").read_text()
    assert "what we tried" in text and "more notes" in text and "\nold\n" not in text and "`make replicate`" in text
    (tmp_path / "RESULTS.md").write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        rep.write_results(plan, 60, "make replicate")


@pytest.mark.e2e
def test_replicate_flow_end_to_end(tmp_path):
    """A tiny plan through the real flow: the toy, base, a Genius round and a DPO arm on its
    pairs, scored by lm-eval; the results block lists each; a rerun skips every stage."""
    common = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in TINY)}
    common |= {
        "toy.out_dir": str(tmp_path / "out" / "toy"),
        "model.path": str(tmp_path / "out" / "toy" / "model"),
        "queries.paths": [str(tmp_path / "out" / "toy" / "queries.jsonl")],
        "eval.test_path": str(tmp_path / "out" / "toy" / "test.jsonl"),
        "eval.include_path": str(ROOT / "eval"),
        "eval.diagnostics": False,
        "queries.per_round": 4,
        "toy.num_test": 8,
    }
    arms = {"genius": {"label": "Genius", "rounds": 1}, "dpo": {"label": "DPO", "pairs_from": "genius", "set": {"training.loss": "dpo"}}}
    plan = plan_file(tmp_path, arms, seeds=[0, 1], common=common, workers=2, results=str(tmp_path / "RESULTS.md"))
    first = run([sys.executable, "-m", "flows.replicate", "--plan", str(plan)], tmp_path, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    text = (tmp_path / "RESULTS.md").read_text()
    for row in ("| base model | – | 2 |", "| Genius | 1 | 2 |", "| DPO | 1 | 2 |"):
        assert row in text, text
    assert (tmp_path / "results.png").stat().st_size > 0
    dpo = tmp_path / "out" / "seed1" / "dpo" / "r1"
    assert (dpo / "pairs.jsonl").read_bytes() == (tmp_path / "out" / "seed1" / "genius" / "r1" / "pairs.jsonl").read_bytes()
    stamp = (dpo / "metrics.json").stat().st_mtime
    again = run([sys.executable, "-m", "flows.replicate", "--plan", str(plan)], tmp_path, timeout=300)
    ran = re.findall(r"seed\d/\w+ \w+(?: r\d)?: running", again.stdout + again.stderr)  # run_stage's log line
    assert again.returncode == 0 and not ran, (ran, again.stdout[-2000:])
    assert (dpo / "metrics.json").stat().st_mtime == stamp
