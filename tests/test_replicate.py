"""`make replicate`: the statistics by hand, the plan's errors, and the flow end to end on a tiny plan."""

import json
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


@pytest.mark.parametrize("arm, first_undone", [("dpo", "train"), ("oracle", "pairs")])
def test_a_borrowing_arm_copies_the_source_round_up_to_its_file(tmp_path, arm, first_undone):
    """pairs_from copies what ingest, sample and pairs wrote, so the arm only trains; samples_from copies what
    ingest and sample wrote, so the arm builds its own data. Nothing else is copied."""
    from genius.config import load_params
    from genius.layout import RoundPaths
    from genius.stages.table import round_stages

    arms = {"genius": {}, "dpo": {"pairs_from": "genius", "set": {"training.loss": "dpo"}},
            "oracle": {"samples_from": "genius", "set": {"method.name": "oracle_pairs", "method.answers_path": "a.jsonl"}}}  # fmt: skip
    plan = rep.load_plan(plan_file(tmp_path, arms))
    src = RoundPaths.of(rep.arm_dir(plan, 0, "genius"), 1)
    src.dir.mkdir(parents=True)
    written = ("ingest_report", "queries", "samples", "sampling", "pairs", "pair_stats")
    for name in written:
        getattr(src, name).write_text(f"{name} of genius\n")
    flow.borrow(plan, 0, plan.arm(arm))
    dst = RoundPaths.of(rep.arm_dir(plan, 0, arm), 1)
    copied = written if arm == "dpo" else written[:4]
    assert sorted(p.name for p in dst.dir.iterdir()) == sorted(getattr(dst, name).name for name in copied)
    assert all(getattr(dst, name).read_text() == f"{name} of genius\n" for name in copied)
    params = load_params(plan.params, rep.overrides(plan, 0, plan.arm(arm)))
    assert next(s.name for s in round_stages(params) if not s.done(params, 1)) == first_undone
    assert not flow.reads(params, plan.arm(arm).source[1]).done(params, 1)  # run_lineage borrows until this stage ran


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
    """A tiny plan through the real flow (Prefect tasks, the `genius` CLI's processes, lm-eval), one seed: the
    toy, base, a Genius round, DPO on its pairs (pairs_from) and the oracle control on its candidates
    (samples_from); the results block lists each, the control marked; a rerun skips every stage.
    Every method's round: test_methods.py's journey."""
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
        "method.answers_path": str(toy / "answers.jsonl"),
        "sampling.threads": 1,  # as configs/replicate.yaml: two lineages at once, and a tiny model waits on its second thread
        "eval.threads": 1,
    }
    arms = {
        "genius": {"label": "Genius", "rounds": 1},
        "dpo": {"label": "DPO", "pairs_from": "genius", "set": {"training.loss": "dpo"}},
        "oracle": {"label": "oracle pairs", "samples_from": "genius", "set": {"method.name": "oracle_pairs"}},
    }
    plan = plan_file(tmp_path, arms, seeds=[0], common=common, workers=2, results=str(tmp_path / "RESULTS.md"))
    first = run([sys.executable, "-m", "flows.replicate", "--plan", str(plan)], tmp_path, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    text = (tmp_path / "RESULTS.md").read_text()
    for row in ("| base model | – | – | 1 |", "| Genius | no | 1 | 1 |", "| DPO | no | 1 | 1 |", "| oracle pairs | **yes** (control) | 1 | 1 |"):
        assert row in text, text
    assert (tmp_path / "results.png").stat().st_size > 0
    seed = tmp_path / "out" / "seed0"
    assert (seed / "dpo" / "r1" / "pairs.jsonl").read_bytes() == (seed / "genius" / "r1" / "pairs.jsonl").read_bytes()
    assert (seed / "oracle" / "r1" / "samples.jsonl").read_bytes() == (seed / "genius" / "r1" / "samples.jsonl").read_bytes()
    assert json.loads((seed / "oracle" / "r1" / "metrics.json").read_text())["method"] == {"name": "oracle_pairs", "uses_labels": True}
    stamp = (seed / "dpo" / "r1" / "metrics.json").stat().st_mtime
    again = run([sys.executable, "-m", "flows.replicate", "--plan", str(plan)], tmp_path, timeout=300)
    ran = re.findall(r"seed\d/\w+ \w+(?: r\d)?: running", again.stdout + again.stderr)  # run_stage's log line
    assert again.returncode == 0 and not ran, (ran, again.stdout[-2000:])
    assert (seed / "dpo" / "r1" / "metrics.json").stat().st_mtime == stamp
