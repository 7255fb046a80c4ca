"""Scale-out with real parts: the flow `genius` sampling in 4 shards on a local Ray cluster of
2 CPUs, a shard's process killed (SIGKILL) and retried alone, the Kubernetes job template
rendered and checked against Kubernetes' own schema without a cluster, and training under
`accelerate launch` with 2 processes on CPU (gloo).
"""

import asyncio
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from uuid import uuid4

import pytest
import yaml
from conftest import ROOT, copy_project, git_dvc_init, run, tiny_params

import tasks
from genius.config import ConfigError, TrainingConfig, load_params
from genius.training.launch import accelerate_command

pytestmark = pytest.mark.e2e  # a local Ray cluster, accelerate launch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
NUM_QUERIES, BATCH, SHARDS = 12, 1, 4  # 12 batches: shard s samples batches s, s+4, s+8


@pytest.fixture(scope="module")
def ray_flow(tmp_path_factory):
    """One round of the flow `genius`, its sampling in 4 shards on a local 2-CPU Ray cluster."""
    project = copy_project(tmp_path_factory.mktemp("ray-flow"))
    tiny_params(
        project / "params.yaml",
        [
            "tracking.wandb_mode=disabled",
            "rounds.num_rounds=1",
            f"queries.per_round={NUM_QUERIES}",
            f"sampling.batch_queries={BATCH}",
            "sampling.threads=1",
            "eval.diagnostics=false",
            "eval.limit=4",
            "orchestration.task_runner=ray",
            "orchestration.ray_num_cpus=2",
            f"orchestration.sampling_shards={SHARDS}",
            "orchestration.shard_cpus=0.5",  # all four at once on two CPUs
        ],
    )
    git_dvc_init(project, registry="round_list: {}\n")
    return project, run([sys.executable, "-m", "flows.genius"], project)


def round_copy(src: Path, dst: Path) -> Path:
    """Params, registry, model and round 1's queries of `src`: enough to sample round 1 again."""
    dst.mkdir(parents=True)
    for name in ("params.yaml", "rounds.yaml"):
        shutil.copy(src / name, dst / name)
    shutil.copytree(src / "runs" / "toy" / "model", dst / "runs" / "toy" / "model")
    (dst / "runs" / "r1").mkdir()
    shutil.copy(src / "runs" / "r1" / "queries.jsonl", dst / "runs" / "r1" / "queries.jsonl")
    return dst


@pytest.fixture(scope="module")
def one_process(ray_flow, tmp_path_factory) -> bytes:
    """Round 1 sampled by a single `genius sample` process: the same model and queries."""
    project, _ = ray_flow
    reference = round_copy(project, tmp_path_factory.mktemp("one-process") / "p")
    result = run([sys.executable, "-m", "genius", "sample", "--round", "1"], reference)
    assert result.returncode == 0, result.stderr[-3000:]
    return (reference / "runs" / "r1" / "samples.jsonl").read_bytes()


def test_flow_on_ray_samples_what_one_process_samples(ray_flow, one_process):
    project, result = ray_flow
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "Creating a local Ray instance" in out and "Using Ray cluster with 1 nodes" in out
    assert "Flow run 'sample r1 in 4 shards' - Finished in state Completed()" in out
    assert f"round 1: all {NUM_QUERIES} queries sampled already" in out  # the DVC stage only assembled
    stats = json.loads((project / "runs" / "r1" / "sampling.json").read_text())
    assert stats["queries"] == stats["queries_resumed"] == NUM_QUERIES and stats["processes"] == SHARDS

    samples = (project / "runs" / "r1" / "samples.jsonl").read_bytes()
    assert samples == one_process  # the same query ids, pairs and provenance, byte for byte
    records = [json.loads(line) for line in samples.splitlines()]
    queries = [json.loads(line)["id"] for line in (project / "runs" / "r1" / "queries.jsonl").read_text().splitlines()]
    assert [r["query_id"] for r in records] == queries and sum(len(r["pairs"]) for r in records) > 0
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project).stdout


def shard_process(cwd: Path, shard: str) -> int | None:
    """The pid of the `genius sample --shard <shard>` process running in `cwd`, if any."""
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            if b"--shard" in cmd and shard.encode() in cmd and Path(os.readlink(entry / "cwd")) == cwd:
                return int(entry.name)
        except (OSError, ValueError):
            continue
    return None


def kill_after_first_batch(samples: Path, cwd: Path, seen: dict) -> None:
    """Once shard 1's first batch (batch 1) lands: freeze its process, note the folder, SIGKILL it."""
    deadline = time.time() + 240
    while not (samples / "batch-00001.jsonl").exists():
        if time.time() > deadline:
            return
        time.sleep(0.002)
    pid = shard_process(cwd, f"1/{SHARDS}")
    if pid is None:
        return
    os.kill(pid, signal.SIGSTOP)
    seen["files"] = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in samples.glob("batch-*.jsonl")}
    os.kill(pid, signal.SIGKILL)
    seen["pid"] = pid


def test_killed_shard_is_retried_alone_and_resumes(ray_flow, one_process, tmp_path, monkeypatch, prefect_harness):
    from prefect import get_client

    from flows.scale_out import run_shards

    project, _ = ray_flow
    work = round_copy(project, tmp_path / "kill")
    samples = work / "runs" / "r1" / "samples"
    monkeypatch.chdir(work)
    monkeypatch.setattr(tasks, "sample_shard", tasks.sample_shard.with_options(retry_delay_seconds=0))
    seen: dict = {}
    killer = threading.Thread(target=kill_after_first_batch, args=(samples, work, seen))
    killer.start()
    results = run_shards(load_params("params.yaml").orchestration, 1)
    killer.join()

    async def run_counts():
        async with get_client() as client:
            return {t.name: t.run_count for t in await client.read_task_runs() if t.name.startswith("sample r1 shard")}

    counts = asyncio.run(run_counts())
    assert "pid" in seen, "shard 1 finished or never started before it could be killed"
    assert "batch-00009.jsonl" not in seen["files"], "the kill should land before shard 1's last batch"
    assert len(results) == SHARDS
    # Prefect retried the killed shard, and only it
    assert counts == {f"sample r1 shard {s}/{SHARDS}": 2 if s == 1 else 1 for s in range(SHARDS)}, counts
    # what had landed before the kill, other shards' batches and shard 1's first, is untouched
    for name, (mtime, blob) in seen["files"].items():
        assert (samples / name).stat().st_mtime_ns == mtime and (samples / name).read_bytes() == blob, name
    pids = {int(p.name[6:11]): json.loads(p.read_text())["pid"] for p in samples.glob("batch-*.cost.json")}
    assert sorted(pids) == list(range(NUM_QUERIES // BATCH))
    assert pids[1] == seen["pid"] and pids[5] == pids[9] != seen["pid"]  # the retry skipped batch 1
    assert all(len({pids[b] for b in range(s, len(pids), SHARDS)}) == 1 for s in (0, 2, 3))  # sampled once

    result = run([sys.executable, "-m", "genius", "sample", "--round", "1"], work)  # assembles
    assert result.returncode == 0 and f"all {NUM_QUERIES} queries sampled already" in result.stdout, result.stderr[-3000:]
    assert (work / "runs" / "r1" / "samples.jsonl").read_bytes() == one_process


def test_shards_split_the_batches_whatever_their_count():
    import argparse

    from genius.algorithm.sampling import cut_batches
    from genius.stages.cli import shard_arg
    from genius.stages.shards import shard_plan

    for num_queries, size in ((24, 2), (25, 4), (3, 64), (0, 8)):
        queries = list(range(num_queries))
        batches = cut_batches(queries, size)
        assert [len(b) for b in batches] == [size] * (num_queries // size) + ([num_queries % size] if num_queries % size else [])
        for count in range(1, 6):  # every batch in exactly one shard, whole
            plans = [shard_plan(queries, size, s, count) for s in range(count)]
            assert sorted(b for plan in plans for b in plan) == list(range(len(batches)))
            assert sorted(q for plan in plans for batch in plan.values() for q in batch) == queries
    assert list(shard_plan(list(range(24)), 2, 1, 4)) == [1, 5, 9]
    assert shard_plan(list(range(24)), 2, 1, 4)[5] == [10, 11]
    assert shard_arg("1/4") == (1, 4)
    for bad in ("4/4", "1", "-1/4", "a/b"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected I/S with 0 <= I < S"):
            shard_arg(bad)


def test_kubernetes_job_template_validates_without_a_cluster():
    """prefect.yaml as `prefect deploy` parses it; the GPU job as the Kubernetes worker renders
    it; the resulting Job against the Kubernetes 1.37 schema (kubernetes-validate, strict)."""
    import jsonschema
    import kubernetes_validate
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun
    from prefect.workers.process import ProcessWorker
    from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

    config = PrefectYamlModel.model_validate(yaml.safe_load((ROOT / "prefect.yaml").read_text()))
    deployments = {d.name: d for d in config.deployments}
    assert set(deployments) == {"iterate", "iterate-k8s"}
    rounds = load_params(ROOT / "params.yaml").rounds
    for d in deployments.values():  # the same deployment `make serve` serves
        assert d.entrypoint == "flows/genius.py:genius" and d.parameters == {"new_rounds": rounds.new_rounds}
        assert [(s.cron, s.timezone) for s in d.schedules] == [(rounds.cron, rounds.timezone)]
    process = ProcessWorker.get_default_base_job_template()["variables"]
    jsonschema.validate(deployments["iterate"].work_pool.job_variables, process)

    template = json.loads((ROOT / "configs" / "prefect" / "kubernetes-gpu.json").read_text())
    default = KubernetesWorker.get_default_base_job_template()
    assert set(template["job_configuration"]) == set(default["job_configuration"])  # what the worker reads
    variables = deployments["iterate-k8s"].work_pool.job_variables
    jsonschema.validate(variables, template["variables"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(variables | {"gpus": "eight"}, template["variables"])

    # What the worker does with a flow run, minus the API: a template needing a block or a
    # variable from the server would fail here, against a client of a closed port.
    offline = PrefectClient(api="http://127.0.0.1:9/api")
    job = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, variables, client=offline))
    job.prepare_for_flow_run(FlowRun(flow_id=uuid4(), name="nightly-round"))
    manifest = job.job_manifest
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == variables["image"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 8}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PREFECT_API_URL"].endswith(":4200/api") and env["HF_HUB_OFFLINE"] == "1"
    assert {v["name"] for v in pod["volumes"]} == {m["name"] for m in container["volumeMounts"]}

    # prefect-kubernetes 0.8 requires parallelism and completions inside the pod spec (its
    # _get_base_job_manifest), where Kubernetes has no such fields and drops them with a
    # warning; strict validation is of the Job without them.
    assert (pod.pop("parallelism"), pod.pop("completions")) == (1, 1)
    kubernetes_validate.validate(manifest, "1.37.0", strict=True)
    container["resource"] = container.pop("resources")  # a typo: the schema catches it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, "1.37.0", strict=True)


def test_accelerate_command_takes_the_world_size_from_params():
    two_nodes = TrainingConfig(
        launch="accelerate",
        accelerate_config="configs/accelerate/multinode.yaml",
        num_machines=2,
        num_processes=16,
        main_process_ip="10.1.2.3",
    )
    cmd = accelerate_command(two_nodes, "params.yaml", ["training.beta=0.3"], 3, machine_rank=1)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert " ".join(cmd[3:]) == (
        "--config_file configs/accelerate/multinode.yaml --num_machines 2 --num_processes 16 --machine_rank 1 "
        "--main_process_ip 10.1.2.3 --main_process_port 29500 "
        "-m genius --params params.yaml -S training.beta=0.3 train --round 3"
    )
    one_node = TrainingConfig(launch="accelerate", num_processes=8)
    assert " ".join(accelerate_command(one_node, "p.yaml", [], 1)[3:]) == (
        "--multi_gpu --num_machines 1 --num_processes 8 --machine_rank 0 --main_process_port 29500 "
        "-m genius --params p.yaml train --round 1"
    )
    with pytest.raises(ConfigError, match="--machine-rank 2: expected 0 <= rank < training.num_machines"):
        accelerate_command(two_nodes, "params.yaml", [], 1, machine_rank=2)


TWO_NODES = ["training.launch=accelerate", "training.num_machines=2"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["training.num_processes=2"], "training.num_processes/num_machines > 1 need training.launch: accelerate"),
        ([*TWO_NODES, "training.num_processes=3"], r"training.num_processes \(3\) must be a multiple of"),
        ([*TWO_NODES, "training.num_processes=2"], "training.main_process_ip: required"),
        (["orchestration.ray_address=ray://head:10001"], "orchestration.task_runner is local"),
        (["orchestration.shard_gpus=-1"], "orchestration.shard_gpus: must be >= 0"),
        (["orchestration.task_runner=dask"], "orchestration.task_runner: must be one of 'local', 'ray'"),
    ],
)
def test_bad_scale_out_params_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_params(ROOT / "params.yaml", overrides)


def test_two_processes_train_under_accelerate_launch_on_cpu(tmp_path):
    from train_helpers import synthetic_pairs, tiny_model
    from transformers import AutoModelForCausalLM

    from genius.stages.registry import RoundEntry, write_registry

    tiny_model(tmp_path / "model")
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "r1" / "pairs.jsonl").write_text("".join(json.dumps(p.to_json()) + "\n" for p in synthetic_pairs(32)))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"] |= {"path": "model", "device": "cpu"}
    params["training"] |= {"launch": "accelerate", "num_processes": 2, "batch_size": 8, "epochs": 1}
    params["tracking"]["wandb_mode"] = "disabled"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_registry(tmp_path / "rounds.yaml", {1: RoundEntry(1, "model")})

    result = run([sys.executable, "-m", "genius", "train", "--round", "1"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "launching 2 training process(es) on 1 machine(s)" in result.stdout
    metrics = json.loads((tmp_path / "runs" / "r1" / "train.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 4  # 32 pairs, global batch 8, 1 epoch
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "runs" / "r1" / "checkpoint")


def test_scaling_plan_counts_what_the_sampler_does(ray_flow, monkeypatch):
    """bench/scaling_plan.py's counts, by hand and against the toy round's provenance records."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import scaling_plan as plan
    paper = plan.Round(25_000, 2, 4, 4, step_tokens=64, rollout_tokens=384, prompt_tokens=96, pairs_per_query=4)
    # N at k = 1, M*N at k = 2..4: 4 + 3*8 = 28 candidates, each a step and a rollout: 28 * 448 tokens
    assert plan.candidates_per_query(paper) == 28 and plan.generated_per_query(paper) == 28 * 448
    # prefill: 1 beam x 96, then 2 beams x (96 + 64), (96 + 128), (96 + 192)
    assert plan.prefill_per_query(paper) == 96 + 2 * 160 + 2 * 224 + 2 * 288
    # 4 pairs of 2 sequences of 96 + (64k + 384), k = 1..4: the mean trajectory is 544 tokens
    assert plan.pair_tokens_per_query(paper) == 4 * 2 * (96 + 544)
    rows = plan.plan(paper, 8e9, 2_000, 1, 32, 8, "H100", 0.5, 1)
    assert rows["training FLOPs (6 x P x tokens)"] == 6 * 8e9 * 25_000 * 5_120
    assert rows["sampling GPU-hours"] == pytest.approx(25_000 * 28 * 448 / 2_000 / 3600)

    # the toy round of the Ray flow: M=2, N=4, K=3; a beam that ends early spawns no candidates
    project, _ = ray_flow
    toy = plan.Round(NUM_QUERIES, 2, 4, 3, 0, 0, 0, 3)
    records = [json.loads(line) for line in (project / "runs" / "r1" / "samples.jsonl").read_text().splitlines()]
    counts = [sum(len(t["candidates"]) for t in r["timestamps"]) for r in records]
    assert max(counts) == plan.candidates_per_query(toy) == 20 and all(c <= 20 for c in counts)
    assert all(len(r["pairs"]) <= 3 for r in records)
