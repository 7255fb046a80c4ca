"""The stage table: each stage declared once, and everything else derived from it (dvc.yaml, the
`genius` CLI, the Prefect tasks, a round's stages, a lineage's skip check)."""

import argparse
from dataclasses import replace

import pytest
import yaml
from conftest import ROOT

from genius import progress
from genius.config import load_params
from genius.layout import RoundPaths, round_fields
from genius.stages import table
from genius.stages.cli import parser
from genius.stages.pipeline import file_keys, render
from genius.stages.table import STAGES, Stage, resolve, round_stages


def test_every_stage_names_round_files_and_resolves():
    fields = set(round_fields())
    for stage in STAGES.values():
        assert set(stage.reads) | set(stage.writes) <= fields, stage.name
        assert not stage.stats or stage.stats[1] in stage.writes, stage.name  # its statistics are its own output
        assert callable(resolve(stage.function)) and (stage.main is None or callable(resolve(stage.main)))
    assert [s.name for s in round_stages(load_params(ROOT / "params.yaml"))] == ["ingest", "sample", "pairs", "train", "evaluate"]
    assert STAGES["sample"].id(3) == "sample@r3" and STAGES["evaluate_base"].id(0) == "evaluate_base"
    assert STAGES["train"].argv(2) == ["train", "--round", "2"] and STAGES["evaluate_base"].argv(0) == ["evaluate", "--round", "0"]


def test_a_stage_added_to_the_table_is_everywhere(monkeypatch, tmp_path):
    """Adding a stage is an entry in STAGES and a row of ROUNDS: dvc.yaml, the CLI and the round follow."""
    vote = Stage(
        "vote", "genius.stages.rounds:run_pairs", task="majority-vote", help="majority-agreeing samples as SFT targets",
        reads=("samples",), writes=("pair_stats",), params=("sampling",), code=("genius/algorithm",),
    )
    monkeypatch.setitem(STAGES, "vote", vote)
    monkeypatch.setitem(table.ROUNDS, "genius", replace(table.ROUNDS["genius"], stages=("ingest", "sample", "vote", "train", "evaluate")))
    params = load_params(ROOT / "params.yaml")
    stages = yaml.safe_load(render(params, file_keys(ROOT / "params.yaml")))["stages"]
    assert "pairs" not in stages and stages["vote"]["do"]["cmd"] == "genius vote --round ${item.round}"
    # its own reads and code, then what every stage depends on (table.SHARED_CODE: the environment, issue 21)
    assert stages["vote"]["do"]["deps"] == ["runs/${key}/samples.jsonl", "genius/algorithm", "requirements/lock.txt", "genius/numerics.py"]
    assert stages["vote"]["do"]["outs"] == ["runs/${key}/pairs.json"] and "sampling.tau" in stages["vote"]["do"]["params"]
    args = parser().parse_args(["vote", "--round", "2"])
    assert args.command == "vote" and args.round == 2
    monkeypatch.chdir(tmp_path)
    params = params.model_copy(update={"rounds": params.rounds.model_copy(update={"runs_dir": str(tmp_path)})})
    assert not vote.done(params, 2)
    RoundPaths.of(tmp_path, 2).dir.mkdir()
    RoundPaths.of(tmp_path, 2).pair_stats.write_text("{}")
    assert vote.done(params, 2)  # its last output exists: a lineage outside DVC skips it


def test_progress_lines_read_back():
    assert progress.parse(progress.line(12, 64, "queries")) == (12, 64, "queries")
    assert progress.parse("sampled 12/64 queries, 30 pairs") is None and progress.parse("progress: 1/x steps") is None
    said: list[str] = []
    bar = progress.Progress(said.append, 3, "steps", every=3600)
    for done in (0, 1, 2, 3):
        bar(done)
    assert said == ["progress: 0/3 steps", "progress: 3/3 steps"]  # the first, then none until the end


def test_stage_options_come_from_the_table():
    args = parser().parse_args(["sample", "--round", "1", "--shard", "1/4"])
    assert args.shard == (1, 4)
    with pytest.raises(SystemExit):
        parser().parse_args(["ingest", "--round", "0"])  # only evaluate has a round 0 (the base's stage)
    assert parser().parse_args(["evaluate", "--round", "0"]).round == 0
    assert isinstance(parser(), argparse.ArgumentParser)


# ---------------------------------------------------------------------------- methods: a row of ROUNDS each


def test_every_method_has_a_row_that_resolves():
    """Every `method.name` has a row: its sampler and builder import, its losses exist (an online method:
    its reward), its keys, code and the files its stages read are real."""
    from typing import get_args

    from genius.algorithm.rewards import REWARDS
    from genius.config import MethodConfig
    from genius.layout import round_fields
    from genius.training.objective import LOSSES

    assert set(table.ROUNDS) == set(get_args(MethodConfig.model_fields["name"].annotation))
    params = load_params(ROOT / "params.yaml")
    for name, row in table.ROUNDS.items():
        if row.reward is None:  # offline: sample, pairs, then a loss on the pairs
            assert callable(resolve(row.sampler)) and callable(resolve(row.build)), name
            assert row.losses and set(row.losses) <= set(LOSSES), name
        else:  # online: no sample or pairs stage; its train stage samples
            assert row.reward in REWARDS and (row.sampler, row.build, row.losses) == (None, None, ()), name
            assert row.stages == ("ingest", "train", "evaluate") and row.reads == {"train": ("queries",)}, name
        assert set(row.stages) <= set(STAGES) and set(row.params) | set(row.code) | set(row.reads) <= set(row.stages), name
        assert all(set(files) <= set(round_fields()) for files in row.reads.values()), name
        for key in (k for keys in row.params.values() for k in keys):
            section, leaf = key.split(".")
            assert hasattr(getattr(params, section), leaf), (name, key)
        assert all((ROOT / path).exists() for paths in row.code.values() for path in paths), name
        assert all(k.startswith("method.") for k in row.params.get("sample", ())), name  # the sampler's manifest keys
    assert [n for n, row in table.ROUNDS.items() if row.labels] == ["oracle_pairs", "rft"]
    assert {n: row.reward for n, row in table.ROUNDS.items() if row.reward} == {
        "ttrl": "majority_vote", "intuitor": "self_certainty", "rent": "neg_entropy"
    }


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method.name=lmsi"], "training.loss: aco cannot train what method.name lmsi writes: set training.loss: sft"),
        (["training.loss=scpo"], "training.loss: scpo cannot train what method.name genius writes: set training.loss: aco (or one of dpo,"),
        (["method.name=rft", "training.loss=sft", "method.answers_path=null"], "method.answers_path: null, but method.name rft is a positive control that USES LABELS"),
    ],
)
def test_a_method_refuses_a_loss_it_cannot_train_and_a_control_without_labels(overrides, message):
    params = load_params(ROOT / "params.yaml", overrides)
    with pytest.raises(table.ConfigError, match=message.replace("(", r"\(")) as e:
        table.check_method(params)
    assert "\n" not in str(e.value)
    table.check_method(load_params(ROOT / "params.yaml", ["method.name=self_consistency", "training.loss=scpo"]))


def test_a_methods_keys_and_code_reach_dvc_yaml():
    """The sample stage of a response method lists the sampler's keys; the pairs stage its module, and a
    control's labels file; Genius's stages do not list keys they do not read."""
    present = file_keys(ROOT / "params.yaml")
    stages = lambda *o: yaml.safe_load(render(load_params(ROOT / "params.yaml", list(o)), present))["stages"]  # noqa: E731
    genius = stages()
    assert not any(k.startswith("method.") for k in genius["sample"]["do"]["params"])
    assert "method.name" in genius["pairs"]["do"]["params"] and "genius/algorithm/pairs.py" in genius["pairs"]["do"]["deps"]
    lmsi = stages("method.name=lmsi", "training.loss=sft")
    assert {"method.samples", "method.temperature", "method.max_new_tokens"} <= set(lmsi["sample"]["do"]["params"])
    assert {"method.answer", "method.min_vote_share"} <= set(lmsi["pairs"]["do"]["params"])
    assert "genius/algorithm/lmsi.py" in lmsi["pairs"]["do"]["deps"] and "method.judgements" not in lmsi["pairs"]["do"]["params"]
    assert "method.answers_path" in stages("method.name=oracle_pairs")["pairs"]["do"]["params"]


@pytest.mark.parametrize("name", ["ttrl", "intuitor", "rent"])
def test_an_online_round_is_ingest_train_evaluate_in_dvc_yaml(name, tmp_path):
    """GRPO's train stage reads the round's queries (no samples.jsonl, no pairs.jsonl), lists the grpo keys the
    params file writes and the labels it measures with; evaluate expects no pairs.json or sampling.json."""
    present = file_keys(ROOT / "params.yaml")
    params = load_params(ROOT / "params.yaml", [f"method.name={name}"])
    stages = yaml.safe_load(render(params, present))["stages"]
    assert [s for s in stages if s not in ("toy", "evaluate_base")] == ["ingest", "train", "evaluate"]
    train, evaluate = stages["train"]["do"], stages["evaluate"]["do"]
    assert train["deps"][:2] == ["${item.policy}", "runs/${key}/queries.jsonl"] and "runs/toy/answers.jsonl" in train["deps"]
    assert "genius/algorithm/rewards.py" in train["deps"] and not any("pairs" in d for d in train["deps"])
    assert {"method.name", "method.answer", "grpo.learning_rate", "grpo.num_generations"} <= set(train["params"])
    assert train["outs"] == ["runs/${key}/checkpoint", "runs/${key}/train_steps.jsonl", "runs/${key}/train.json"]
    assert [d for d in evaluate["deps"] if d.startswith("runs/${key}")] == [
        "runs/${key}/checkpoint", "runs/${key}/ingest_report.json", "runs/${key}/train.json"
    ]
    # a params file without the grpo section: no grpo key is listed (DVC refuses a key the file lacks)
    bare = tmp_path / "params.yaml"
    bare.write_text(yaml.safe_dump({k: v for k, v in yaml.safe_load((ROOT / "params.yaml").read_text()).items() if k != "grpo"}))
    stages = yaml.safe_load(render(load_params(bare, [f"method.name={name}"]), file_keys(bare)))["stages"]
    assert not any(k.startswith("grpo.") for k in stages["train"]["do"]["params"])
    assert [s.name for s in round_stages(params)] == ["ingest", "train", "evaluate"]
    assert table.upstream(params, "checkpoint") == [STAGES["ingest"], STAGES["train"]]


def test_an_online_method_without_trl_is_refused_in_one_line(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else find_spec(name, *a))
    with pytest.raises(table.ConfigError, match=r"^method.name: rent trains online with TRL's GRPOTrainer, which is not installed"):
        table.check_method(load_params(ROOT / "params.yaml", ["method.name=rent"]))
    table.check_method(load_params(ROOT / "params.yaml"))  # Genius needs no TRL
