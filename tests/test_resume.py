"""Resumable sampling: `genius sample` killed part-way (SIGKILL, a real kill) and run again.

The resumed run must skip the batches that landed before the kill, end with every query id
exactly once in query order, and (batches being seeded by their first query's id) write
exactly what an uninterrupted run writes. Resuming with another sampler config is refused.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import ROOT

from genius.algorithm.records import SampleRecord
from genius.config import SamplingConfig, ToyConfig
from genius.stages.registry import RoundEntry, write_registry
from genius.stages.shards import ResumeError, ShardStore, config_diff, sampler_config

NUM_QUERIES, BATCH = 40, 4  # ten batches


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from genius.toy.build import build_toy

    out = tmp_path_factory.mktemp("resume") / "toy"
    cfg = ToyConfig(pretrain_steps=20, hidden_size=32, num_queries=NUM_QUERIES, num_test=8, out_dir=str(out))
    return build_toy(cfg, out, log=lambda _: None)


def make_project(path, toy):
    """params.yaml (tiny sampling), the round registry, and round 1's queries in shuffled order."""
    path.mkdir()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["path"] = str(toy / "model")
    params["sampling"] |= {"num_foresight_steps": 3, "max_rollout_tokens": 48, "batch_queries": BATCH, "threads": 1}
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    write_registry(path / "rounds.yaml", {1: RoundEntry(1, str(toy / "model"))})
    lines = (toy / "queries.jsonl").read_text().splitlines(keepends=True)
    order = lines[1::2] + lines[::2]  # not sorted by id: the output must follow this order
    (path / "runs" / "r1").mkdir(parents=True)
    (path / "runs" / "r1" / "queries.jsonl").write_text("".join(order))
    return [json.loads(line)["id"] for line in order]


def genius(project, *args, **kw):
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "genius", *args], cwd=project, env=env, text=True, **kw)


def run(project, *args):
    proc = genius(project, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


@pytest.mark.e2e
def test_killed_sampling_resumes_without_redoing_finished_batches(tmp_path, toy):
    project = tmp_path / "killed"
    ids = make_project(project, toy)
    shards = project / "runs" / "r1" / "samples"

    proc = genius(project, "sample", "--round", "1", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (shards / "batch-00000.jsonl").exists():
        assert proc.poll() is None and time.time() < deadline, "sampling ended before its first batch landed"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGSTOP)  # freeze it at once, look, then kill it for real
    finished = {p.name: p.read_bytes() for p in shards.glob("batch-*.jsonl")}
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert 1 <= len(finished) < NUM_QUERIES // BATCH, "the kill should land part-way"
    assert not (project / "runs" / "r1" / "samples.jsonl").exists()
    done = [json.loads(line)["query_id"] for blob in finished.values() for line in blob.decode().splitlines()]

    # another sampler config may not finish this round's batches: refused, naming the key
    code, _, err = run(project, "-S", "sampling.tau=0.5", "sample", "--round", "1")
    assert code == 2 and "sampling.tau: 0.02 -> 0.5" in err and "Traceback" not in err, err
    assert {p.name for p in shards.glob("batch-*.jsonl")} == set(finished)

    code, out, err = run(project, "sample", "--round", "1")
    assert code == 0, err[-3000:]
    assert f"resuming: {len(done)} queries already sampled in {len(finished)} batch(es)" in out
    samples = (project / "runs" / "r1" / "samples.jsonl").read_text().splitlines(keepends=True)
    assert [json.loads(line)["query_id"] for line in samples] == ids  # every id once, in query order
    for blob in finished.values():  # the batches from before the kill are in it unchanged
        assert set(blob.decode().splitlines(keepends=True)) <= set(samples)
    stats = json.loads((project / "runs" / "r1" / "sampling.json").read_text())
    assert stats["queries"] == NUM_QUERIES and stats["queries_resumed"] == len(done)
    tokens = stats["generated_tokens"] + stats["prefill_tokens"]
    assert stats["flops_estimate"] == 6 * stats["parameters"] * tokens > 0
    assert not shards.exists()  # samples.jsonl is whole: the batches are gone

    # an uninterrupted run writes the same file: batches are seeded by their first query's id
    reference = tmp_path / "reference"
    make_project(reference, toy)
    code, _, err = run(reference, "sample", "--round", "1")
    assert code == 0, err[-3000:]
    assert (reference / "runs" / "r1" / "samples.jsonl").read_text() == "".join(samples)


def test_shard_store_refuses_another_config_and_allows_throughput_changes(tmp_path):
    cfg = SamplingConfig()
    store = ShardStore(tmp_path / "samples")
    ids = ["q1", "q2", "q9"]
    store.open(sampler_config(cfg, "model-a"), ids)
    q1, q2 = (SampleRecord(q, f"query {q}", (), (), None) for q in ("q1", "q2"))
    store.write(0, [q1, q2], {"calls": 1})
    # more threads, GPUs or memory: the same sampler
    store.open(sampler_config(cfg.model_copy(update={"threads": 8, "max_batch_sequences": 64, "tensor_parallel_size": 4}), "model-a"), ids)
    assert store.done() == {0}
    with pytest.raises(ResumeError, match=r"policy: 'model-a' -> 'model-b', sampling.temperature: 0.6 -> 1.0"):
        store.open(sampler_config(cfg.model_copy(update={"temperature": 1.0}), "model-b"), ids)
    with pytest.raises(ResumeError, match=r"dtype: 'float32' -> 'bfloat16'"):  # one round, one precision
        store.open(sampler_config(cfg, "model-a", "bfloat16"), ids)
    with pytest.raises(ResumeError, match="another query list"):  # batch 0 would mean other queries
        store.open(sampler_config(cfg, "model-a"), ["q2", "q1", "q9"])
    with pytest.raises(RuntimeError, match="1 queries not sampled"):
        store.assemble(["q2", "q1", "q9"], tmp_path / "samples.jsonl")
    assert store.assemble(["q2", "q1"], tmp_path / "samples.jsonl") == 2
    assert (tmp_path / "samples.jsonl").read_text() == "".join(json.dumps(r.to_json()) + "\n" for r in (q2, q1))
    shutil.rmtree(store.dir)


def test_config_diff_names_dotted_keys():
    old = {"policy": "a", "sampling": {"tau": 0.02, "selection": "sample"}}
    new = {"policy": "a", "sampling": {"tau": 0.5, "selection": "greedy", "extra": 1}}
    assert config_diff(old, new) == ["sampling.extra", "sampling.selection", "sampling.tau"]
    assert config_diff(old, old) == []


def test_the_shard_store_samples_with_the_sampler_it_is_handed(tmp_path):
    """The method's sampler is handed in (shards.py imports none): its records land batch by batch with
    their cost, and a method's own sampler keys are part of what resuming checks."""
    import ast

    from genius.algorithm.records import Response, ResponseGroup
    from genius.data.queries import Query
    from genius.engines.base import EngineCost
    from genius.stages.shards import sample_in_shards, sampling_cost

    tree = ast.parse((ROOT / "genius" / "stages" / "shards.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m.startswith("genius.algorithm") for m in imported if m)

    class Engine:
        cost, num_parameters = EngineCost(), 10

    def sampler(engine, tokenizer, batches):
        for batch in batches:
            engine.cost.generated_tokens += 2 * len(batch)
            yield [ResponseGroup(q.id, q.text, (Response("A:1", (1,), True, -1.0),)) for q in batch]

    queries = [Query(f"q{i}", f"{i}+1") for i in range(5)]
    store = ShardStore(tmp_path / "samples")
    store.open(sampler_config(SamplingConfig(), "m", method={"samples": 8}), [q.id for q in queries])
    assert sample_in_shards(Engine(), None, queries, 2, sampler, store, lambda _: None) == 0
    assert store.done() == {0, 1, 2} and sampling_cost(store.costs())["generated_tokens"] == 10
    assert store.assemble([q.id for q in queries], tmp_path / "samples.jsonl") == 5
    with pytest.raises(ResumeError, match=r"method.samples: 8 -> 4"):
        store.open(sampler_config(SamplingConfig(), "m", method={"samples": 4}), [q.id for q in queries])
