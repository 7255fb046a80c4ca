"""`rounds.keep` and `genius gc`: which rounds stay, and what removing the rest does to the
workspace, DVC's cache, a DVC remote and `dvc status`.

The plan is a pure function, tested on hand-made registries. The removal runs in a real git +
DVC project (the project's .dvc/config: outputs linked from the cache) whose stages write a
checkpoint, samples and a metrics file per round with a few lines of Python: every DVC
behaviour gc relies on is real, and no model is trained. The same on the toy's real stages:
tests/test_pipeline.py; on SmolLM2's LoRA rounds through the flow: tests/test_own_model_e2e.py.
"""

import fcntl
import hashlib
import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, git_dvc_init, run

from genius.config import load_params, write_overrides
from genius.config.sections import KeepConfig
from genius.stages.registry import Lineage, RoundEntry, read_registry, write_registry
from genius.stages.retention import LOCK, GcError, collect, plan_retention

ckpt = lambda r: f"runs/r{r}/checkpoint"  # noqa: E731
DONE = set(range(1, 100))  # rounds with results


def full_ft(policy: str) -> list[str]:
    """What a full fine-tuned policy is read from: its own folder."""
    return [policy]


def lora(policy: str) -> list[str]:
    """A LoRA chain on base `m`: the base and every adapter up to the policy."""
    if policy == "m":
        return ["m"]
    k = int(policy.split("/")[1][1:])
    return ["m", *(ckpt(i) for i in range(1, k + 1))]


def lineage(n: int, promoted=lambda r: True) -> dict[int, RoundEntry]:
    """Rounds 1..n, each starting from the latest promoted round before it (as the flow registers them)."""
    entries, current = {}, "m"
    for r in range(1, n + 1):
        entries[r] = RoundEntry(r, current, promoted(r), "")
        if promoted(r):
            current = ckpt(r)
    return entries


def test_full_fine_tuning_keeps_the_last_rounds_and_the_checkpoint_they_started_from():
    plan = plan_retention(lineage(5), KeepConfig(last=2), full_ft, ckpt, DONE)
    assert (plan.kept, plan.retire, plan.anchors) == ((4, 5), (1, 2, 3), (3,))


def test_a_lora_chain_keeps_every_adapter_it_is_made_of():
    plan = plan_retention(lineage(5), KeepConfig(last=1), lora, ckpt, DONE)
    assert (plan.kept, plan.retire, plan.anchors) == ((5,), (1, 2, 3, 4), (1, 2, 3, 4))


def test_the_latest_promoted_and_pinned_rounds_stay():
    """Round 4 fell (not promoted): round 5 started from round 3. With round 5 promoted it is the
    latest; while round 5 is not judged (a crashed run, the DVC-only path), 3 is and stays."""
    entries = lineage(5, promoted=lambda r: r != 4)
    assert entries[5].policy == ckpt(3)
    plan = plan_retention(entries, KeepConfig(last=1, pinned=[1]), full_ft, ckpt, DONE)
    assert (plan.kept, plan.retire, plan.anchors) == ((1, 5), (2, 3, 4), (3,))
    entries[5].promoted = None
    plan = plan_retention(entries, KeepConfig(last=1), full_ft, ckpt, DONE)
    assert (plan.kept, plan.anchors) == ((3, 5), (2,))  # 2: what 3 started from
    # a round retired before is never planned again; its checkpoint stays only while needed
    for r in (1, 2):
        entries[r].retired = True
    plan = plan_retention(entries, KeepConfig(last=1), full_ft, ckpt, DONE)
    assert (plan.retire, plan.anchors) == ((4,), (2,))
    entries[3].promoted = False  # now nothing is promoted: the base is current, the last round stays
    plan = plan_retention(entries, KeepConfig(last=1), full_ft, ckpt, DONE)
    assert (plan.kept, plan.retire, plan.anchors) == ((5,), (3, 4), (3,))


def test_rounds_without_results_stay_with_the_round_they_start_from():
    """`genius pipeline` registers rounds 1..3 ahead; only round 1 ran. Round 2 is work to do, and
    starts from round 1's checkpoint: gc retires round 1 and keeps that checkpoint."""
    plan = plan_retention(lineage(3), KeepConfig(last=1), full_ft, ckpt, finished={1})
    assert (plan.kept, plan.retire, plan.anchors) == ((2, 3), (1,), (1,))


def test_keep_is_a_params_section():
    params = load_params(ROOT / "params.yaml", ["rounds.keep.last=2", "rounds.keep.pinned=[3]", "rounds.gc=false"])
    assert params.rounds.keep == KeepConfig(last=2, pinned=[3]) and params.rounds.gc is False


# ---------------------------------------------------------------------------- a real DVC project

MAKE = """\
import json, os, sys
r, policy = sys.argv[1], sys.argv[2]
os.makedirs(f"runs/r{r}/checkpoint", exist_ok=True)
open(f"runs/r{r}/checkpoint/model.safetensors", "wb").write(os.urandom(200_000))
open(f"runs/r{r}/checkpoint/config.json", "w").write('{"same": "in every round"}')
open(f"runs/r{r}/samples.jsonl", "w").write(json.dumps({"round": r, "policy": policy}) + "\\n")
json.dump({"round": int(r), "accuracy": {"t": 0.5}}, open(f"runs/r{r}/metrics.json", "w"))
"""
DVC_YAML = """\
vars: [rounds.yaml]
stages:
  train:
    foreach: ${round_list}
    do:
      cmd: python make.py ${item.round} ${item.policy}
      deps: [make.py, "${item.policy}"]
      params: [training.learning_rate]
      outs: ["runs/${key}/checkpoint", "runs/${key}/samples.jsonl"]
      metrics: ["runs/${key}/metrics.json"]
"""


def cache_objects(project: Path) -> set[str]:
    return {f"{p.parent.name}{p.name}" for p in (project / ".dvc" / "cache" / "files" / "md5").glob("*/*")}


def lock_md5(project: Path, stage: str, path: str) -> str:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"][stage]["outs"] if o["path"] == path)


@pytest.fixture
def rounds_project(tmp_path, monkeypatch):
    """A git + DVC project of 4 full fine-tuned rounds (each started from the last), reproduced."""
    project = tmp_path / "p"
    project.mkdir()
    (project / "make.py").write_text(MAKE)
    (project / "dvc.yaml").write_text(DVC_YAML)
    (project / "m").mkdir()
    (project / "m" / "config.json").write_text("{}")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["rounds"] |= {"keep": {"last": 2}}
    params["model"]["path"] = "m"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    # as the flow's -S writes it: "1e-3", a string to PyYAML's YAML 1.1, a float to DVC's YAML 1.2
    write_overrides(project / "params.yaml", ["training.learning_rate=1e-3"])
    write_registry(project / "rounds.yaml", lineage(4), Lineage("m", "runs"))
    git_dvc_init(project, registry=None)
    repro = run(["dvc", "repro"], project)
    assert repro.returncode == 0, repro.stderr
    monkeypatch.chdir(project)
    return project


@pytest.mark.e2e
def test_gc_retires_rounds_frees_workspace_and_cache_and_leaves_dvc_clean(rounds_project):
    project = rounds_project
    checkpoint = project / "runs" / "r3" / "checkpoint" / "model.safetensors"
    assert checkpoint.stat().st_nlink == 2 and not checkpoint.stat().st_mode & 0o222  # one copy, linked read-only
    doomed = {lock_md5(project, f"train@r{r}", f"runs/r{r}/samples.jsonl") for r in (1, 2)}
    kept = {lock_md5(project, f"train@r{r}", f"runs/r{r}/samples.jsonl") for r in (3, 4)}
    shared = lock_md5(project, "train@r4", "runs/r4/checkpoint")

    logs = []
    plan = collect(load_params("params.yaml"), logs.append)
    assert (plan.kept, plan.retire, plan.anchors) == ((3, 4), (1, 2), (2,)), logs
    # round 1: its record only; round 2: its record and the checkpoint round 3 started from
    assert [p.name for p in (project / "runs" / "r1").iterdir()] == ["metrics.json"]
    assert sorted(p.name for p in (project / "runs" / "r2").iterdir()) == ["checkpoint", "metrics.json"]
    assert (project / "runs" / "r2" / "checkpoint" / "model.safetensors").stat().st_nlink == 1  # left the cache
    entries = read_registry("rounds.yaml")
    assert [r for r, e in entries.items() if e.retired] == [1, 2] and entries[2].promoted
    assert set(yaml.safe_load((project / "dvc.lock").read_text())["stages"]) == {"train@r3", "train@r4"}
    objects = cache_objects(project)
    assert not doomed & objects and kept <= objects and shared in objects
    assert hashlib.md5(b'{"same": "in every round"}').hexdigest() in objects  # one object for every round: 3 and 4 use it
    status = run(["dvc", "status"], project)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout

    # a rerun removes nothing; a new round moves the window, and round 2's checkpoint goes
    assert collect(load_params("params.yaml"), logs.append).retire == () and "nothing to remove" in logs[-1]
    entries[5] = RoundEntry(5, ckpt(4), True, "")
    write_registry("rounds.yaml", entries)
    assert run(["dvc", "repro"], project).returncode == 0
    gc = run([sys.executable, "-m", "genius", "gc"], project)
    assert gc.returncode == 0 and "retires 3" in gc.stdout, gc.stdout + gc.stderr
    assert not (project / "runs" / "r2" / "checkpoint").exists() and (project / "runs" / "r3" / "checkpoint").is_dir()
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project).stdout


@pytest.mark.e2e
def test_with_a_remote_nothing_leaves_the_cache_unpushed(rounds_project, tmp_path):
    project = rounds_project
    (tmp_path / "not-a-folder").write_text("a remote that cannot take a push")
    assert run(["dvc", "remote", "add", "-d", "store", str(tmp_path / "not-a-folder")], project).returncode == 0
    before = cache_objects(project)
    with pytest.raises(GcError, match="dvc push failed, so nothing was removed"):
        collect(load_params("params.yaml"), lambda _: None)
    assert cache_objects(project) == before and (project / "runs" / "r1" / "samples.jsonl").exists()
    assert not any(e.retired for e in read_registry("rounds.yaml").values())

    assert run(["dvc", "remote", "modify", "store", "url", str(tmp_path / "remote")], project).returncode == 0
    collect(load_params("params.yaml"), lambda _: None)
    removed = before - cache_objects(project)
    remote = {f"{p.parent.name}{p.name}" for p in (tmp_path / "remote" / "files" / "md5").glob("*/*")}
    assert removed and removed <= remote  # each object gc removed is on the remote
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project).stdout


@pytest.mark.e2e
def test_gc_never_runs_beside_a_flow_and_dry_run_removes_nothing(rounds_project):
    project = rounds_project
    before = cache_objects(project)
    with open(LOCK, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(GcError, match="a genius flow is running in this project"):
            collect(load_params("params.yaml"), lambda _: None)
        refused = run([sys.executable, "-m", "genius", "gc"], project)  # the CLI says so in its one-line form
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stderr.startswith("genius gc: error: a genius flow is running in this project"), refused.stderr
    dry = run([sys.executable, "-m", "genius", "gc", "--dry-run"], project)
    assert dry.returncode == 0 and "would remove runs/r1/samples.jsonl" in dry.stdout, dry.stdout + dry.stderr
    assert cache_objects(project) == before and not any(e.retired for e in read_registry("rounds.yaml").values())
    assert json.loads((project / "runs" / "r1" / "metrics.json").read_text())["round"] == 1
