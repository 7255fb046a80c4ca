"""The stages as functions of (params, round): what `genius <stage>` runs, by hand, under DVC, or for a flow.

The stage table (genius/stages/table.py) declares each one: the files of its round it reads
and writes (genius.layout.RoundPaths), its params and its code. Every stage reads the files
the previous one wrote and writes its own, so DVC can track each: ingest -> sample -> pairs ->
train -> evaluate. Round r starts from the policy the registry gives it (round 1: `model.path`).
What sample and pairs do is the method's (`method.name`, its row of the table's ROUNDS): the
sampler handed to the shard store, the `build` that makes the training records. An online
method's round is ingest -> train -> evaluate: its train stage samples and updates (GRPO).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from genius.algorithm.records import sample_record, training_pair
from genius.config import Params
from genius.data.queries import ingest, read_queries
from genius.engines import build_engine
from genius.engines.loading import check_model
from genius.environment import environment
from genius.io import read_jsonl, write_json, write_jsonl
from genius.layout import RoundPaths, round_name
from genius.progress import Progress
from genius.stages.pipeline import is_library_source
from genius.stages.registry import read_registry
from genius.stages.shards import ShardStore, config_hash, sample_in_shards, sampler_config, sampling_cost, shard_plan
from genius.stages.table import check_method, method, resolve, round_stages
from genius.threads import torch_threads

Log = Callable[[str], None]


def round_paths(params: Params, r: int) -> RoundPaths:
    return RoundPaths.of(params.rounds.runs_dir, r)


def policy_path(params: Params, r: int) -> str:
    """The model round r starts from, as the round registry (rounds.yaml) records it."""
    entries = read_registry(params.rounds.registry)
    if r not in entries:
        raise FileNotFoundError(
            f"round {r} is not in {params.rounds.registry}: the flow registers rounds before running them "
            f"(or add `{round_name(r)}: {{round: {r}, policy: <model path>}}` by hand)"
        )
    return entries[r].policy


def require(path: Path, stage: str, r: int) -> Path:
    """The input `path` of round r, or a one-line FileNotFoundError naming the stage that writes it."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `genius {stage} --round {r}` first")
    return path


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def run_ingest(params: Params, r: int, log: Log = print) -> dict:
    start = time.time()
    paths = round_paths(params, r)
    for i, source in enumerate(params.queries.paths):
        if not is_library_source(source) and not Path(source).exists():
            raise FileNotFoundError(f"queries.paths[{i}]: {source} does not exist")
    paths.dir.mkdir(parents=True, exist_ok=True)
    report = ingest(params.queries, r, paths.dir)
    summary = report.summary() | {"seconds": time.time() - start}
    log(f"round {r}: {report.round_size} queries ({report.kept} valid in the pool, {len(report.dropped)} dropped)")
    return summary


def run_sample(params: Params, r: int, log: Log = print) -> dict:
    """Sample round r's batches not finished yet (by this run or by shards), then join them into samples.jsonl."""
    start = time.time()
    paths, policy = round_paths(params, r), policy_path(params, r)
    check_model(policy)
    queries = read_queries(require(paths.queries, "ingest", r))
    store = _open_store(params, r, policy, queries)
    resumed = _sample(params, r, policy, queries, store, log)
    n = store.assemble([q.id for q in queries], paths.samples)
    stats = {
        "method": params.method.name,
        "queries": n,
        "queries_resumed": resumed,  # sampled before this run: by shards, or by an interrupted run
        **sampling_cost(store.costs()),
        "seconds": time.time() - start,  # this run's wall time
        "config_hash": params.hash("sampling"),
        "sampler_hash": config_hash(samples_config(params, policy)),  # what resuming checks
        "environment": environment(params.sampling.threads, params.model.dtype, params.model.device),
    }
    store.remove()  # samples.jsonl is whole: the next run of this round starts afresh
    write_json(paths.sampling, stats)
    return stats


def run_sample_shard(params: Params, r: int, shard: int, num_shards: int, log: Log = print) -> dict:
    """Sample shard `shard` of `num_shards` of round r's batches into runs/r<k>/samples/; no assembly.

    Any number of these may run at once, on any machines sharing runs/; `run_sample` then
    finds every batch done and only assembles. A rerun skips the shard's finished batches.
    """
    policy = policy_path(params, r)
    check_model(policy)
    queries = read_queries(require(round_paths(params, r).queries, "ingest", r))
    store = _open_store(params, r, policy, queries)
    resumed = _sample(params, r, policy, queries, store, log, shard, num_shards)
    batches = len(shard_plan(queries, params.sampling.batch_queries, shard, num_shards))
    log(f"round {r}: shard {shard}/{num_shards} done: {batches} batch(es), {resumed} queries sampled before this run")
    return {"shard": shard, "num_shards": num_shards, "batches": batches, "queries_resumed": resumed}


def samples_config(params: Params, policy: str) -> dict:
    """What decides the round's samples: the sampling section, the method's own keys its sampler reads, the policy."""
    keys = [k.removeprefix("method.") for k in method(params).params.get("sample", ())]  # a row names `method.*` keys
    return sampler_config(params.sampling, policy, params.model.dtype, {k: getattr(params.method, k) for k in keys})


def _open_store(params: Params, r: int, policy: str, queries: list) -> ShardStore:
    store = ShardStore(round_paths(params, r).shards)
    store.open(samples_config(params, policy), [q.id for q in queries])  # refuses another config's batches before the model loads
    return store


def _sample(
    params: Params, r: int, policy: str, queries: list, store: ShardStore, log: Log, shard: int = 0, num_shards: int = 1
) -> int:
    """Sample the shard's unfinished batches with the method's sampler; the model loads only if there are some.
    Returns the queries resumed."""
    cfg = params.sampling
    mine = shard_plan(queries, cfg.batch_queries, shard, num_shards)
    count = sum(map(len, mine.values()))
    which = f"round {r}" + (f", shard {shard}/{num_shards}" if num_shards > 1 else "")
    if set(mine) <= store.done():
        log(f"{which}: all {count} queries sampled already")
        return count
    sampler = resolve(method(params).sampler)(params, log)
    with torch_threads(cfg.threads):
        engine, tokenizer = build_engine(policy, cfg, params.model)
        log(f"{which}: {params.method.name} sampling {count} of {len(queries)} queries with {policy} ({cfg.engine})")
        return sample_in_shards(engine, tokenizer, queries, cfg.batch_queries, sampler, store, log, shard, num_shards)


def run_pairs(params: Params, r: int, log: Log = print) -> dict:
    """Round r's training records by its method's `build` (Genius: the pairs its search chose), and their statistics.

    `seconds` and, where the method runs the policy again (self-certainty, self-rewarding),
    `tokens` are this stage's cost.
    """
    from genius.stages.tools import Tools

    start = time.time()
    paths = round_paths(params, r)
    samples = [sample_record(row) for row in read_jsonl(require(paths.samples, "sample", r))]
    with torch_threads(params.sampling.threads):
        records, stats = resolve(method(params).build)(samples, params, Tools(params, policy_path(params, r)))
    write_jsonl(paths.pairs, (x.to_json() for x in records))
    stats = {"method": params.method.name, **stats, "seconds": time.time() - start}
    write_json(paths.pair_stats, stats)
    what = f"{stats['pairs']} pairs" if "pairs" in stats else f"{stats['targets']} SFT targets"
    extra = f"; {stats['calibration_region_fraction']:.0%} in ACO's calibration region" if "calibration_region_fraction" in stats else ""
    log(f"round {r}: {params.method.name}: {what} from {stats['queries']} queries{extra}")
    return stats


def run_train(params: Params, r: int, log: Log = print, track=None) -> dict:
    """Train round r's policy: on the round's pairs, or online on its queries (a method with a reward)."""
    check_method(params)  # a loss that cannot train the method's records: refused before the model loads
    if method(params).reward:
        return run_train_online(params, r, log, track)
    from genius.training.recipe import train_round  # keeps `genius ingest` and friends light

    paths = round_paths(params, r)
    pairs = [training_pair(row) for row in read_jsonl(require(paths.pairs, "pairs", r))]  # pairs, or SFT targets
    check_model(policy_path(params, r))
    if not pairs:
        log(f"round {r}: no training records; the checkpoint is the unchanged policy")
    reference = None if params.training.reference == "previous" else params.model.path
    metrics = train_round(pairs, policy_path(params, r), paths.checkpoint, params.training, params.model, reference, log, track)
    metrics["environment"] = environment(params.training.threads, params.model.dtype, params.model.device)
    if os.environ.get("RANK", "0") == "0":  # under `accelerate launch` every GPU runs this; one writes
        write_json(paths.training, metrics)
    return metrics


def run_train_online(params: Params, r: int, log: Log = print, track=None) -> dict:
    """GRPO on the method's reward over round r's queries (genius/training/grpo.py): rollouts and updates.

    Labels, when `method.answers_path` names them, only measure how often the group's majority
    is right (`majority_correct` per step); no reward reads them.
    """
    from genius.data.answers import gold_answer
    from genius.stages.tools import Tools
    from genius.training.grpo import train_grpo_round

    paths, policy = round_paths(params, r), policy_path(params, r)
    queries = read_queries(require(paths.queries, "ingest", r))
    check_model(policy)
    tools = Tools(params, policy)
    labels = None
    if params.method.answers_path is not None:
        labels = {i: gold_answer(a, params.method.answer) for i, a in tools.answers().items()}
    reference = None if params.training.reference == "previous" else params.model.path
    metrics = train_grpo_round(
        queries, policy, paths.checkpoint, method(params).reward, params.grpo, params.training, params.model, tools.read,
        labels, reference, log, track, work_dir=paths.dir,
    )  # fmt: skip
    if os.environ.get("RANK", "0") == "0":
        write_json(paths.training, metrics)
    return metrics


def run_evaluate(params: Params, r: int, log: Log = print) -> dict:
    """Score round r's checkpoint (r = 0: the base model) and write the round's metrics.json."""
    from genius.evaluation.harness import evaluate  # lm-eval costs seconds to import
    from genius.stages.report import write_report, write_summary

    paths = round_paths(params, r)
    model = params.model.path if r == 0 else str(require(paths.checkpoint, "train", r))
    check_model(model)
    log(f"round {r}: evaluating {model} on {', '.join(params.eval.tasks)}")
    progress = Progress(log, len(params.eval.tasks) + params.eval.diagnostics, "tasks", every=0)  # the probe: one more
    progress(0)
    result = evaluate(model, params.eval, params.model, pool=params.queries.paths, done=progress)  # a generated test set leaves the pool out
    write_jsonl(paths.eval_samples, ({"task": t, **s} for t, rows in result.pop("samples").items() for s in rows))
    metrics = {"round": r, "model": model, **result}
    metrics["environment"] = environment(params.eval.threads, params.model.dtype, params.model.device)
    if params.eval.diagnostics:  # does the self-reward still track correctness? (genius.evaluation.diagnostics)
        from genius.evaluation.diagnostics import diagnose_checkpoint

        diagnostics = diagnose_checkpoint(model, params.eval, params.model, params.sampling, pool=params.queries.paths, log=log)
        progress(progress.total)
    else:
        diagnostics = {"summary": None, "problems": []}
    write_json(paths.diagnostics, diagnostics)  # always written: a DVC output
    metrics["seconds_total"] = result["seconds"] + (diagnostics["summary"] or {}).get("seconds", 0.0)
    if diagnostics["summary"]:
        metrics["diagnostics"] = d = diagnostics["summary"]
        auc = "n/a" if d["response_auroc"] is None else f"{d['response_auroc']:.2f}"  # n/a: all right or all wrong
        log(f"round {r}: self-reward AUROC {auc}; best of {d['samples_per_problem']} {d['best_of_n']:.1%} vs greedy {d['greedy']:.1%}")
    if r > 0:  # the round's summary, in one file for the report and the flow: each stage's statistics
        stages = round_statistics(params, paths)
        metrics |= stages
        metrics["seconds_total"] += sum(s.get("seconds", 0.0) for s in stages.values())  # the round's stages, this one included
        row = method(params)
        metrics["method"] = {"name": params.method.name, "uses_labels": row.labels} | ({"reward": row.reward} if row.reward else {})
        metrics["cost"] = round_cost(stages)
    write_json(paths.metrics, metrics)
    log(f"round {r}: " + ", ".join(f"{t} {a:.1%}" for t, a in result["accuracy"].items()))
    write_report(params.rounds.runs_dir, len(read_registry(params.rounds.registry)))
    write_summary(params.rounds.runs_dir, params.rounds.registry)
    return metrics


def round_statistics(params: Params, paths: RoundPaths) -> dict[str, dict]:
    """What each stage of the round reported (the stage table's `stats`), as metrics.json holds it."""
    out = {}
    for stage in round_stages(params):
        if stage.stats:
            key, name, keep = stage.stats
            data = _read_json(getattr(paths, name))
            out[key] = {k: len(data[k]) if isinstance(data[k], list) else data[k] for k in keep} if keep else data
    return out


def round_cost(stages: dict[str, dict]) -> dict:
    """What the round cost to make its training data and train on it: tokens through the policy and seconds.

    Data: sampling's generated and prefilled tokens, and what the pairs stage ran through the
    policy again (self-certainty's teacher-forced pass, self-rewarding's judgements). Samples
    shared by several replicate arms are counted whole in each. Online RL samples inside its
    train stage: its rollouts (generated and prefilled tokens, generation seconds) are the data,
    the rest of the stage (rewards, log-prob passes, updates) the training.
    """
    sampling, pairs, training = (stages.get(k, {}) for k in ("sampling", "pairs", "training"))
    rollout_tokens = training.get("generated_tokens", 0) + training.get("prefill_tokens", 0)
    rollout_seconds = training.get("generation_seconds", 0.0)
    data_tokens = sampling.get("generated_tokens", 0) + sampling.get("prefill_tokens", 0) + pairs.get("tokens", 0)
    data_seconds = sampling.get("sampling_seconds", sampling.get("seconds", 0.0)) + pairs.get("seconds", 0.0)
    return {
        "data_tokens": data_tokens + rollout_tokens,
        "data_seconds": data_seconds + rollout_seconds,
        "train_tokens": training.get("tokens", 0),
        "train_seconds": training.get("seconds", 0.0) - rollout_seconds,
    }


def eval_row(metrics: dict) -> dict[str, float]:
    """A round's metrics.json as one flat row for the tracker: accuracy per task, the probe's numbers."""
    row = {f"eval/{task}": acc for task, acc in metrics["accuracy"].items()}
    diagnostics = metrics.get("diagnostics") or {}
    row |= {f"diagnostics/{k}": v for k, v in diagnostics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return row


def run_toy(params: Params, log: Log = print) -> Path:
    from genius.toy.build import build_toy

    return build_toy(params.toy, params.toy.out_dir, log=log)

