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
        ({"genius": {}, "lmsi": {"samples_from": "genius", "set": {"method.name": "lmsi", "training.loss": "sft"}}}, {},
         "arms.lmsi.samples_from: genius samples otherwise"),
        ({"sc": {"set": {"method.name": "self_consistency", "training.loss": "scpo"}},
          "lmsi": {"samples_from": "sc", "rounds": 2, "set": {"method.name": "lmsi", "training.loss": "sft"}}}, {},
         "arms.lmsi.samples_from: must name another arm that samples for itself, for a 1-round arm"),
        ({"genius": {"set": {"method.name": "lmsi"}}}, {}, "arms.genius (or common): training.loss: aco cannot train"),
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


def test_results_table_is_laid_out_like_table_1(tmp_path):
    """One row per method and round: whether it uses labels (a control, marked), accuracy and change vs
    base per protocol, its data's tokens and minutes; the goal names the label-free arms that meet it."""
    arms = {"genius": {"label": "Genius"}, "lmsi": {"label": "LMSI", "set": {"method.name": "lmsi", "training.loss": "sft"}},
            "rft": {"label": "RFT", "set": {"method.name": "rft", "training.loss": "sft", "method.answers_path": "a.jsonl"}}}  # fmt: skip
    plan = rep.load_plan(plan_file(tmp_path, arms, seeds=[0, 1]))
    cost = {"data_tokens": 1000, "data_seconds": 60.0, "train_seconds": 60.0}
    acc = {"base": (0.40, 0.20), "genius": (0.41, 0.21), "lmsi": (0.41, 0.25), "rft": (0.45, 0.30)}
    rows = [{"seed": s, "arm": a, "round": int(a != "base"), "g": g + s / 100, "t": t + s / 100 + (a == "lmsi") * s / 100,
             "cost": cost if a != "base" else {}} for s in (0, 1) for a, (g, t) in acc.items()]  # fmt: skip
    tasks = {"g": "greedy", "t": "T=1.0"}
    labels = rep.uses_labels(plan)
    assert labels == {"genius": False, "lmsi": False, "rft": True}
    text = rep.table(rep.summarise(rows, list(tasks)), plan, tasks, labels, rep.costs(rows))
    lines = text.splitlines()
    assert lines[0] == "| method | labels? | round | seeds | greedy | greedy vs base | T=1.0 | T=1.0 vs base | data tokens | minutes |"
    assert lines[2] == "| base model | – | – | 2 | 40.5 ± 0.5 | – | 20.5 ± 0.5 | – | – | – |"
    assert lines[4] == "| LMSI | no | 1 | 2 | 41.5 ± 0.5 | +1.0 ± 0.0 | 26.0 ± 1.0 | +5.5 ± 0.5 | 1,000 | 2.0 |"
    assert lines[5].startswith("| RFT | **yes** (control) | 1 | 2 |")
    goal = rep.verdict(rows, plan, tasks, labels)[-1]  # RFT's +10 is a control's: not a label-free arm
    assert goal.startswith("- T=1.0: label-free arms that beat the base by >= +3 and > 2 SE with greedy not down: LMSI round 1 (+5.5 ± 0.5")
    assert "RFT" not in goal and "Genius round 1 minus it: -4.5 ± 0.5" in goal


def test_results_block_keeps_the_hand_written_text(tmp_path):
    plan = rep.load_plan(plan_file(tmp_path, {"genius": {}}, results=str(tmp_path / "RESULTS.md")))
    (tmp_path / "RESULTS.md").write_text(f"# Results\n\nwhat we tried\n\n{rep.BEGIN}\nstale block\n{rep.END}\n\nmore notes\n")
    rep.write_results(plan, 60, "make replicate")
    text = (tmp_path / "RESULTS.md").read_text()
    assert "what we tried" in text and "more notes" in text and "stale block" not in text and "`make replicate`" in text
    (tmp_path / "RESULTS.md").write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        rep.write_results(plan, 60, "make replicate")


@pytest.mark.e2e
def test_replicate_flow_end_to_end(tmp_path):
    """The CI journey of the methods: a tiny plan through the real flow, one round of each method the toy
    can run (self_rewarding cannot read a rubric: test_methods.py drives its wiring with a scripted judge),
    one seed. The toy, base, Genius, DPO on its pairs, ScPO, LMSI, self-certainty and RFT on ScPO's
    responses, the oracle on Genius's candidates, scored by lm-eval; the results block lists each, the
    controls marked; a rerun skips every stage."""
    common = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in TINY)}
    toy = tmp_path / "out" / "toy"
    common |= {
        "toy.out_dir": str(toy),
        "model.path": str(toy / "model"),
        "queries.paths": [str(toy / "queries.jsonl")],
        "eval.test_path": str(toy / "test.jsonl"),
        "eval.include_path": str(ROOT / "eval"),
        "eval.diagnostics": False,
        "queries.per_round": 4,
        "toy.num_test": 8,
        "method.samples": 2,
        "method.max_new_tokens": 48,
        "method.answers_path": str(toy / "answers.jsonl"),
    }
    method = lambda name, loss, **arm: {"label": name, "set": {"method.name": name, "training.loss": loss}, **arm}  # noqa: E731
    arms = {
        "genius": {"label": "Genius", "rounds": 1},
        "dpo": {"label": "DPO", "pairs_from": "genius", "set": {"training.loss": "dpo"}},
        "self_consistency": method("self_consistency", "scpo"),
        "lmsi": method("lmsi", "sft", samples_from="self_consistency"),
        "self_certainty": method("self_certainty", "dpo", samples_from="self_consistency"),
        "oracle_pairs": method("oracle_pairs", "aco", samples_from="genius"),
        "rft": method("rft", "sft", samples_from="self_consistency"),
    }
    plan = plan_file(tmp_path, arms, seeds=[0], common=common, workers=2, results=str(tmp_path / "RESULTS.md"))
    first = run([sys.executable, "-m", "flows.replicate", "--plan", str(plan)], tmp_path, timeout=1500)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    text = (tmp_path / "RESULTS.md").read_text()
    for row in ("| base model | – | – | 1 |", "| Genius | no | 1 | 1 |", "| DPO | no | 1 | 1 |", "| self_consistency | no | 1 | 1 |",
                "| lmsi | no | 1 | 1 |", "| self_certainty | no | 1 | 1 |", "| oracle_pairs | **yes** (control) | 1 | 1 |",
                "| rft | **yes** (control) | 1 | 1 |"):  # fmt: skip
        assert row in text, text
    assert (tmp_path / "results.png").stat().st_size > 0
    seed = tmp_path / "out" / "seed0"
    assert (seed / "dpo" / "r1" / "pairs.jsonl").read_bytes() == (seed / "genius" / "r1" / "pairs.jsonl").read_bytes()
    for arm, source in (("lmsi", "self_consistency"), ("rft", "self_consistency"), ("oracle_pairs", "genius")):
        assert (seed / arm / "r1" / "samples.jsonl").read_bytes() == (seed / source / "r1" / "samples.jsonl").read_bytes()
    for arm in ("lmsi", "self_certainty", "oracle_pairs", "rft"):
        metrics = yaml.safe_load((seed / arm / "r1" / "metrics.json").read_text())
        assert metrics["method"] == {"name": arm, "uses_labels": arm in ("oracle_pairs", "rft")}
        assert metrics["pairs"]["method"] == arm and metrics["cost"]["data_tokens"] > 0
    assert "rft (control: USES LABELS)" in (seed / "rft" / "report.md").read_text()
    stamp = (seed / "dpo" / "r1" / "metrics.json").stat().st_mtime
    again = run([sys.executable, "-m", "flows.replicate", "--plan", str(plan)], tmp_path, timeout=300)
    ran = re.findall(r"seed\d/\w+ \w+(?: r\d)?: running", again.stdout + again.stderr)  # run_stage's log line
    assert again.returncode == 0 and not ran, (ran, again.stdout[-2000:])
    assert (seed / "dpo" / "r1" / "metrics.json").stat().st_mtime == stamp
