"""One self-training round as stage functions, shared by the CLI (DVC) and the Prefect tasks.

Round r lives in `runs/r<r>/` (the base model's evaluation in `runs/base/`). Every stage
reads the files the previous one wrote and writes its own, so DVC can track each stage and
a Prefect task can call it: ingest -> sample -> pairs -> train -> evaluate. Round r samples
with round r-1's checkpoint (round 1 with `model.path`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from genius.config import Params
from genius.engine import TransformersEngine, load_model
from genius.pairs import extract_pairs, read_jsonl, write_jsonl
from genius.queries import ingest, read_queries
from genius.sampling import foresight_sample

Log = Callable[[str], None]


@dataclass(frozen=True)
class RoundPaths:
    dir: Path

    queries = property(lambda self: self.dir / "queries.jsonl")  # this round's query slice
    ingest_report = property(lambda self: self.dir / "ingest_report.json")  # kept/dropped, with reasons
    samples = property(lambda self: self.dir / "samples.jsonl")  # full foresight provenance per query
    sampling = property(lambda self: self.dir / "sampling.json")  # cost of sampling
    pairs = property(lambda self: self.dir / "pairs.jsonl")  # (x, T_w, A_w, T_l, A_l) quintuples
    pair_stats = property(lambda self: self.dir / "pairs.json")
    checkpoint = property(lambda self: self.dir / "checkpoint")  # HF format, save_pretrained
    training = property(lambda self: self.dir / "train.json")
    metrics = property(lambda self: self.dir / "metrics.json")  # evaluation + the round's summary
    eval_samples = property(lambda self: self.dir / "eval_samples.jsonl")


def round_paths(params: Params, r: int) -> RoundPaths:
    runs = Path(params.rounds.runs_dir)
    return RoundPaths(runs / ("base" if r == 0 else f"r{r}"))


def policy_path(params: Params, r: int) -> str:
    """The model round r starts from: the previous round's checkpoint, or `model.path`."""
    return params.model.path if r <= 1 else str(round_paths(params, r - 1).checkpoint)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def run_ingest(params: Params, r: int, log: Log = print) -> dict:
    start = time.time()
    paths = round_paths(params, r)
    paths.dir.mkdir(parents=True, exist_ok=True)
    report = ingest(params.queries, r, paths.dir)
    summary = report.summary() | {"seconds": time.time() - start}
    log(f"round {r}: {report.round_size} queries ({report.kept} valid in the pool, {len(report.dropped)} dropped)")
    return summary


def run_sample(params: Params, r: int, log: Log = print) -> dict:
    start = time.time()
    cfg, paths = params.sampling, round_paths(params, r)
    queries = read_queries(paths.queries)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        m = params.model
        model, tokenizer = load_model(policy_path(params, r), m.dtype, m.device, m.trust_remote_code)
        engine = TransformersEngine(model, tokenizer, cfg.max_batch_sequences)
        log(f"round {r}: foresight sampling {len(queries)} queries with {policy_path(params, r)}")
        n = write_jsonl(paths.samples, foresight_sample(engine, tokenizer, queries, cfg, progress=log))
    finally:
        torch.set_num_threads(threads)
    seconds = time.time() - start
    stats = {
        "queries": n,
        "engine_calls": engine.calls,
        "generated_tokens": engine.generated_tokens,
        "seconds": seconds,
        "tokens_per_second": engine.generated_tokens / seconds,
        "config_hash": params.hash("sampling"),
    }
    _write_json(paths.sampling, stats)
    return stats


def run_pairs(params: Params, r: int, log: Log = print) -> dict:
    paths = round_paths(params, r)
    stats = extract_pairs(paths.samples, paths.pairs)
    _write_json(paths.pair_stats, stats)
    log(
        f"round {r}: {stats['pairs']} pairs from {stats['queries']} queries; "
        f"{stats['calibration_region_fraction']:.0%} in ACO's calibration region"
    )
    return stats


def run_train(params: Params, r: int, log: Log = print, track=None) -> dict:
    from genius.train import train_round  # keeps `genius ingest` and friends light

    paths = round_paths(params, r)
    pairs = list(read_jsonl(paths.pairs))
    if not pairs:
        log(f"round {r}: no preference pairs; the checkpoint is the unchanged policy")
    reference = None if params.training.reference == "previous" else params.model.path
    metrics = train_round(pairs, policy_path(params, r), paths.checkpoint, params.training, params.model, reference, log, track)
    _write_json(paths.training, metrics)
    return metrics


def run_evaluate(params: Params, r: int, log: Log = print) -> dict:
    """Score round r's checkpoint (r = 0: the base model) and write the round's metrics.json."""
    from genius.evaluate import evaluate  # lm-eval costs seconds to import

    paths = round_paths(params, r)
    model = params.model.path if r == 0 else str(paths.checkpoint)
    log(f"round {r}: evaluating {model} on {', '.join(params.eval.tasks)}")
    result = evaluate(model, params.eval, params.model)
    write_jsonl(paths.eval_samples, ({"task": t, **s} for t, rows in result.pop("samples").items() for s in rows))
    metrics = {"round": r, "model": model, **result}
    if r > 0:  # the round's summary, in one file for `dvc metrics show` and the report
        report = _read_json(paths.ingest_report)
        stages = {
            "ingest": {"round_size": report["round_size"], "kept": report["kept"], "dropped": len(report["dropped"])},
            "sampling": _read_json(paths.sampling),
            "pairs": _read_json(paths.pair_stats),
            "training": _read_json(paths.training),
        }
        metrics |= stages
        metrics["seconds_total"] = result["seconds"] + sum(s.get("seconds", 0.0) for s in stages.values())
    _write_json(paths.metrics, metrics)
    log(f"round {r}: " + ", ".join(f"{t} {a:.1%}" for t, a in result["accuracy"].items()))
    return metrics


def run_toy(params: Params, log: Log = print) -> Path:
    from genius.toy.build import build_toy

    return build_toy(params.toy, params.toy.out_dir, log=log)


def toy_is_built(params: Params) -> bool:
    """True when `toy.out_dir` holds a build made with the current `toy` section."""
    info = _read_json(Path(params.toy.out_dir) / "toy.json")
    return info.get("config") == asdict(params.toy)
