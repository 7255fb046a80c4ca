"""Own model, own queries: dvc.yaml follows params.yaml, and a lineage never switches models.

The journey README's "Point it at your own model and queries" describes, on the seconds-scale
toy standing in for the user's model: real git + DVC, the `genius` CLI, no project file
edited by hand.
"""

import json
import shutil
import sys

import pytest
import yaml
from conftest import ROOT, git_dvc_init, run, tiny_params

from genius.config import ConfigError, load_params, write_overrides
from genius.stages.pipeline import PipelineError, file_keys, is_library_source, render, stages, sync
from genius.stages.registry import Lineage, RoundEntry, read_lineage, read_registry, write_registry


def test_shipped_dvc_yaml_is_rendered_from_shipped_params():
    params = load_params(ROOT / "params.yaml")
    assert (ROOT / "dvc.yaml").read_text() == render(params, file_keys(ROOT / "params.yaml")), "run `genius pipeline` and commit dvc.yaml"
    assert read_lineage(ROOT / "rounds.yaml") == Lineage(params.model.path, params.rounds.runs_dir)


def test_stages_follow_params(project):
    (project / "data").mkdir()
    (project / "data" / "q.jsonl").write_text('{"prompt": "2+2?"}\n')
    (project / "data" / "test.jsonl").write_text('{"id": 1, "query": "2+2?", "answer": "4"}\n')
    params = load_params(
        "params.yaml",
        [
            "toy.enabled=false",
            "model.path=org/hub-model",  # not on disk: a hub name, a param only
            "queries.paths=[data/q.jsonl, 'reasoning_gym:basic_arithmetic?size=10&seed=1', 'hf:gsm8k:train']",
            "eval.test_path=data/test.jsonl",
            "rounds.runs_dir=out",
            "rounds.registry=lineage.yaml",
        ],
    )
    table = stages(params, file_keys(ROOT / "params.yaml"))
    assert "toy" not in table
    assert table["ingest"]["do"]["deps"] == ["data/q.jsonl", "genius/data", "requirements/lock.txt", "genius/numerics.py"]
    assert table["evaluate_base"]["deps"][:2] == ["data/test.jsonl", "eval"]
    assert table["sample"]["do"]["outs"] == ["out/${key}/samples.jsonl", "out/${key}/sampling.json"]
    # exactly the keys that decide a stage's outputs, and only those the params file writes out
    sample = table["sample"]["do"]["params"]
    assert "sampling.tau" in sample and "model.dtype" in sample and "rounds.runs_dir" in sample
    assert "sampling.threads" not in sample and not any(k.startswith(("training.", "eval.", "tracking.")) for k in sample)
    assert "tracking.wandb_mode" not in table["train"]["do"]["params"]
    assert "sampling.tau" not in stages(params, file_keys(ROOT / "params.yaml") - {"sampling.tau"})["sample"]["do"]["params"]
    doc = yaml.safe_load(render(params))
    assert doc["vars"] == ["lineage.yaml"] and "out/accuracy.png" in doc["plots"]
    # the embedded default: the toy stage builds what the others read
    default = load_params("params.yaml")
    assert stages(default, file_keys(ROOT / "params.yaml"))["toy"]["outs"] == ["runs/toy"]
    assert stages(default, file_keys(ROOT / "params.yaml"))["ingest"]["do"]["deps"][0] == "runs/toy/queries.jsonl"


def test_library_sources_are_not_files():
    assert is_library_source("hf:gsm8k:train") and is_library_source("reasoning_gym:chain_sum?size=5")
    assert not is_library_source("data/q.jsonl") and not is_library_source("s3://bucket/q.jsonl")


def test_missing_inputs_are_refused_before_anything_is_written(project):
    before = (project / "dvc.yaml").read_text()
    for override, key in [
        ("queries.paths=[nowhere.jsonl]", "queries.paths[0]: nowhere.jsonl does not exist"),
        ("eval.test_path=nowhere.jsonl", "eval.test_path: nowhere.jsonl does not exist"),
    ]:
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            sync(load_params("params.yaml", [override]))
    assert (project / "dvc.yaml").read_text() == before


def test_new_model_under_done_rounds_is_refused(project):
    params = load_params("params.yaml")
    sync(params)
    assert sync(params) == []  # idempotent
    (project / "runs" / "r1").mkdir(parents=True)
    (project / "runs" / "r1" / "metrics.json").write_text("{}")  # round 1 has results
    (project / "other").mkdir()
    other = params.model_copy(update={"model": params.model.model_copy(update={"path": "other"})})
    with pytest.raises(PipelineError, match=r"rounds.yaml: its lineage self-trains runs/toy/model .* model.path is other"):
        sync(other)
    assert read_registry("rounds.yaml")[1].policy == "runs/toy/model"  # nothing lost
    # a new lineage beside the old one is what the message offers
    beside = other.model_copy(update={"rounds": other.rounds.model_copy(update={"registry": "rounds-other.yaml", "runs_dir": "runs-other"})})
    sync(beside)
    assert read_registry("rounds-other.yaml")[1] == RoundEntry(1, "other")
    assert read_registry("rounds-other.yaml")[2].policy == "runs-other/r1/checkpoint"
    # with nothing done, the lineage simply follows the params
    (project / "runs" / "r1" / "metrics.json").unlink()
    sync(other)
    assert read_lineage("rounds.yaml") == Lineage("other", "runs")
    assert read_registry("rounds.yaml")[1].policy == "other"


def test_registry_without_lineage_is_adopted(project):
    write_registry("rounds.yaml", {1: RoundEntry(1, "runs/toy/model")})
    (project / "rounds.yaml").write_text((project / "rounds.yaml").read_text().replace("lineage:", "# lineage:"))
    assert read_lineage("rounds.yaml") is None
    assert "rounds.yaml: lineage recorded" in sync(load_params("params.yaml"))
    assert read_lineage("rounds.yaml") == Lineage("runs/toy/model", "runs")


@pytest.mark.e2e
def test_stage_refuses_a_model_path_the_lineage_does_not_hold(project):
    result = run([sys.executable, "-m", "genius", "-S", "model.path=/does/not/exist", "sample", "--round", "1"], project)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "rounds.yaml records the lineage runs/toy/model" in result.stderr and "genius pipeline" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run([sys.executable, "-m", "genius", "-S", "model.path=/does/not/exist", "pipeline"], project)
    assert missing.returncode == 2 and "model.path: /does/not/exist is not a folder here" in missing.stderr
    no_queries = run([sys.executable, "-m", "genius", "pairs", "--round", "1"], project)
    assert no_queries.returncode == 2 and "runs/r1/samples.jsonl does not exist: run `genius sample --round 1` first" in no_queries.stderr


@pytest.mark.e2e
def test_own_model_and_queries_through_dvc(project):
    """README's own-model journey, by DVC alone: params + `genius pipeline` + `dvc repro`."""
    tiny_params(project / "params.yaml", ["tracking.wandb_mode=disabled", "eval.diagnostics=false"])
    assert run([sys.executable, "-m", "genius", "toy"], project).returncode == 0
    # "the user's" model, queries under another field, and a labelled test set: nothing under runs/
    shutil.copytree(project / "runs" / "toy" / "model", project / "models" / "mine")
    (project / "data").mkdir()
    rows = [json.loads(line) for line in (project / "runs" / "toy" / "queries.jsonl").read_text().splitlines()]
    (project / "data" / "q.jsonl").write_text("".join(json.dumps({"prompt": r["query"]}) + "\n" for r in rows[:12]))
    shutil.copy(project / "runs" / "toy" / "test.jsonl", project / "data" / "test.jsonl")
    shutil.rmtree(project / "runs")
    git_dvc_init(project)
    sets = [
        "toy.enabled=false",
        "model.path=models/mine",
        "queries.paths=[data/q.jsonl]",
        "queries.text_field=prompt",
        "queries.id_field=null",
        "eval.test_path=data/test.jsonl",
        "rounds.runs_dir=mine",
        "rounds.num_rounds=1",
    ]
    sync_run = run([sys.executable, "-m", "genius", *[x for s in sets for x in ("-S", s)], "pipeline"], project)
    assert sync_run.returncode == 0, sync_run.stderr
    repro = run(["dvc", "repro"], project)
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    assert "'toy'" not in repro.stdout and "Running stage 'train@r1'" in repro.stdout
    assert (project / "mine" / "r1" / "checkpoint" / "config.json").exists()
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project).stdout
    # a key that only changes speed reruns nothing; one that changes the samples reruns sampling on
    params = (project / "params.yaml").read_text()
    write_overrides(project / "params.yaml", ["sampling.threads=2", "training.save_every=5"])
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project).stdout
    write_overrides(project / "params.yaml", ["sampling.tau=0.5"])
    status = run(["dvc", "status"], project).stdout
    assert "sample@r1" in status and "ingest@r1" not in status and "train@r1" not in status, status
    (project / "params.yaml").write_text(params)
    # editing the user's query file reruns ingest, and only what follows it
    with open(project / "data" / "q.jsonl", "a") as f:
        f.write(json.dumps({"prompt": "1+2+3"}) + "\n")
    status = run(["dvc", "status"], project).stdout
    assert "ingest@r1" in status and "evaluate_base" not in status, status
    # a bare `dvc repro` after a params edit: the stage says to run `genius pipeline`
    (project / "data" / "more.jsonl").write_text(json.dumps({"prompt": "4+5"}) + "\n")
    params = (project / "params.yaml").read_text()
    write_overrides(project / "params.yaml", ["queries.paths=[data/q.jsonl, data/more.jsonl]"])
    stale = run(["dvc", "repro"], project)
    assert stale.returncode != 0 and "dvc.yaml does not match params.yaml any more: run `genius pipeline`" in stale.stderr, stale.stderr
    (project / "params.yaml").write_text(params)
    write_overrides(project / "params.yaml", ["rounds.runs_dir=elsewhere"])
    # and `genius pipeline` refuses to move a lineage with a round done
    moved = run([sys.executable, "-m", "genius", "pipeline"], project)
    assert moved.returncode == 2 and "rounds.yaml: its lineage self-trains models/mine in mine/" in moved.stderr
