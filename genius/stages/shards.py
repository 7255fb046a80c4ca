"""Sampling in shards: a round's samples written batch by batch, by any number of processes.

A round's queries are cut, in query order, into batches of `sampling.batch_queries`
(`genius.data.queries.cut_batches`); batch b is sampled with a seed taken from its first
query's id, so its records depend on its queries alone, not on which process samples it or
when. A *shard* s of S samples batches s, s + S, s + 2S, ...: S processes (or Ray tasks,
`flows/scale_out.py`) fill one folder between them and the result is the same for any S.

What samples a batch is the method's sampler (the stage table's ROUNDS row: foresight
re-sampling for Genius, n whole responses for the voting methods), handed in as a function
of (engine, tokenizer, batches) yielding each batch's records; this module imports none.

`runs/r<k>/samples/` holds, while a round is being sampled:
  manifest.json            what decides the samples (the `sampling` section, the method's own
                           keys, the policy), its hash, and a hash of the query ids in order
                           (what batch b means)
  batch-00000.jsonl        the records of batch 0, renamed into place only once complete (a
                           kill leaves no partial batch)
  batch-00000.cost.json    what that batch cost: engine calls, tokens, seconds, parameters, and
                           the host and process that sampled it
A rerun checks the manifest: another config or another query list is refused, naming the
keys that differ (its batches would mix two samplers in one round); the same config skips
every finished batch. When every batch is done, `assemble` joins them into samples.jsonl
in query order and the folder is removed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from genius.config import SPEED_ONLY, ConfigError, SamplingConfig
from genius.data.queries import Query, cut_batches
from genius.engines.base import Engine, EngineCost
from genius.io import stable_hash, write_atomic
from genius.progress import Progress


class ResumeError(ConfigError):
    """Unfinished batches of a run with another config; the message names the differing keys."""


# A method's sampler: (engine, tokenizer, batches of queries) -> each batch's records, in order.
Sampler = Callable[[Engine, Any, list[list[Query]]], Iterator[list[Any]]]


def sampler_config(cfg: SamplingConfig, policy: str, dtype: str = "float32", method: dict | None = None) -> dict:
    """What decides the samples: the sampling section (minus its SPEED_ONLY keys), the policy and its
    precision, and the method's own keys its sampler reads (`method`: key -> value; none for Genius)."""
    sampling = {k: v for k, v in cfg.model_dump().items() if k not in SPEED_ONLY["sampling"]}
    return {"sampling": sampling, "policy": policy, "dtype": dtype} | ({"method": method} if method else {})


def config_hash(config: dict) -> str:
    return stable_hash(config, 12)


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts, sorted."""
    keys = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            keys.append(f"{prefix}{k}")
    return keys


def shard_batches(num_batches: int, shard: int = 0, num_shards: int = 1) -> list[int]:
    """The batches shard `shard` of `num_shards` samples: every num_shards-th, from `shard`.

    Round-robin rather than contiguous ranges: shards differ by at most one batch, and a
    trend in cost along the query order (a pool sorted by source or length) is spread over all.
    """
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} of {num_shards}: expected 0 <= shard < num_shards")
    return list(range(shard, num_batches, num_shards))


def shard_plan(queries: list[Query], batch_queries: int, shard: int = 0, num_shards: int = 1) -> dict[int, list[Query]]:
    """This shard's batches, by index: the round's batches (`cut_batches`), every num_shards-th."""
    batches = cut_batches(queries, batch_queries)
    return {b: batches[b] for b in shard_batches(len(batches), shard, num_shards)}


@dataclass(frozen=True)
class ShardStore:
    dir: Path

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    def batch_path(self, index: int) -> Path:
        return self.dir / f"batch-{index:05d}.jsonl"

    def open(self, config: dict, query_ids: list[str]) -> None:
        """Start a run, or resume one: refuse finished batches made with another config or query list."""
        self.dir.mkdir(parents=True, exist_ok=True)
        queries = config_hash({"query_ids": query_ids})
        if self.manifest.exists():
            old = json.loads(self.manifest.read_text())
            old_config, old_queries = old["config"], old.get("queries")
            if old_config != config:
                keys = config_diff(old_config, config)
                diff = ", ".join(f"{k}: {_get(old_config, k)!r} -> {_get(config, k)!r}" for k in keys)
                raise ResumeError(
                    f"{self.dir} holds {len(self.batches())} finished batch(es) of an interrupted run with another "
                    f"sampler config ({diff}). Rerun with the same params to resume it, or delete {self.dir} "
                    "to start over."
                )
            if old_queries != queries:
                raise ResumeError(
                    f"{self.dir} holds {len(self.batches())} finished batch(es) of an interrupted run over another "
                    f"query list (the round's queries.jsonl changed since). Delete {self.dir} to start over."
                )
        else:  # shards starting together all write it: the same text, each renamed into place whole
            manifest = {"config": config, "hash": config_hash(config), "queries": queries}
            write_atomic(self.manifest, json.dumps(manifest, indent=2) + "\n")

    def batches(self) -> list[Path]:
        return sorted(self.dir.glob("batch-?????.jsonl"))

    def done(self) -> set[int]:
        """Indices of the finished batches."""
        return {int(p.name[6:11]) for p in self.batches()}

    def write(self, index: int, records: list, cost: dict) -> Path:
        """Add finished batch `index`: its cost first, then the records, each renamed into place."""
        path = self.batch_path(index)
        write_atomic(path.with_suffix(".cost.json"), json.dumps(cost) + "\n")
        write_atomic(path, "".join(json.dumps(r.to_json()) + "\n" for r in records))
        return path

    def costs(self) -> list[dict]:
        """The cost of every finished batch (a cost file whose batch never landed is ignored)."""
        return [json.loads(p.with_suffix(".cost.json").read_text()) for p in self.batches()]

    def assemble(self, query_ids: list[str], out: Path) -> int:
        """Join the batches into `out`, one line per query id in `query_ids` order; returns the count.

        Lines are copied byte for byte, found through an index of (file, offset) per id, so
        a round of any size never sits in memory at once.
        """
        where: dict[str, tuple[Path, int]] = {}
        for batch in self.batches():
            with open(batch, "rb") as f:
                offset = 0
                for line in f:
                    if line.strip():
                        where.setdefault(json.loads(line)["query_id"], (batch, offset))
                    offset += len(line)
        missing = [q for q in query_ids if q not in where]
        if missing:
            raise RuntimeError(f"{self.dir}: {len(missing)} queries not sampled yet, e.g. {missing[:3]}")
        handles: dict[Path, object] = {}

        def copy_lines(tmp: Path) -> None:
            with open(tmp, "wb") as dst:
                for q in query_ids:
                    batch, offset = where[q]
                    src = handles.setdefault(batch, open(batch, "rb"))
                    src.seek(offset)
                    dst.write(src.readline())

        try:
            write_atomic(out, copy_lines)
        finally:
            for h in handles.values():
                h.close()
        return len(query_ids)

    def remove(self) -> None:
        shutil.rmtree(self.dir)


def _get(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def sample_in_shards(
    engine: Engine,
    tokenizer,
    queries: list[Query],
    batch_queries: int,
    sample: Sampler,
    store: ShardStore,
    log: Callable[[str], None] = print,
    shard: int = 0,
    num_shards: int = 1,
) -> int:
    """Sample this shard's unfinished batches with `sample`, one file each; returns how many of its queries
    were done already. `store.open` must have accepted this run's config and query list.
    """
    mine, done = shard_plan(queries, batch_queries, shard, num_shards), store.done()
    todo = [b for b in mine if b not in done]
    skipped = sum(len(mine[b]) for b in mine if b in done)
    if skipped:
        to_go = sum(len(mine[b]) for b in todo)
        log(f"resuming: {skipped} queries already sampled in {len(mine) - len(todo)} batch(es), {to_go} to go")
    for b in todo:
        for leftover in store.dir.glob(f".batch-{b:05d}.*.tmp"):  # a write of this batch cut short by a kill
            leftover.unlink()
    before, start = dataclasses.replace(engine.cost), time.perf_counter()
    where = {"host": socket.gethostname(), "pid": os.getpid(), "shard": shard, "num_shards": num_shards}
    done, progress = skipped, Progress(log, sum(map(len, mine.values())), "queries")
    progress(done)
    for b, records in zip(todo, sample(engine, tokenizer, [mine[b] for b in todo]), strict=True):
        now = time.perf_counter()
        cost = {k: v - getattr(before, k) for k, v in dataclasses.asdict(engine.cost).items()}
        cost |= {"queries": len(records), "seconds": now - start, "parameters": engine.num_parameters} | where
        store.write(b, records, cost)
        before, start = dataclasses.replace(engine.cost), now
        done += len(records)
        progress(done)
    return skipped


def sampling_cost(costs: list[dict]) -> dict:
    """Totals over a round's batches, and a FLOPs estimate.

    FLOPs ~ 6 x parameters x tokens (sampled + prefilled), the usual convention;
    it is the training rule of thumb: a forward pass alone is ~2 x parameters x tokens, so
    this is an upper bound three times the generation's compute.
    """
    # .get: a batch sampled before `steps` was counted, in a resumed round
    total = {k: sum(c.get(k, 0) for c in costs) for k in (*EngineCost.__dataclass_fields__, "queries", "seconds")}
    tokens = total["generated_tokens"] + total["prefill_tokens"]
    num_parameters = next((c["parameters"] for c in costs if c.get("parameters")), None)
    return {
        "engine_calls": total["calls"],
        "generated_tokens": total["generated_tokens"],
        "prefill_tokens": total["prefill_tokens"],  # prompt tokens encoded, each shared prefix once
        "engine_steps": total["steps"],  # batched forward passes: their count bounds a CPU's decode (a weight read each)
        "sampling_seconds": total["seconds"],  # engine time summed over batches: all shards, interrupted runs included
        "tokens_per_second": total["generated_tokens"] / total["seconds"] if total["seconds"] else 0.0,  # per engine
        "parameters": num_parameters,
        "flops_estimate": 6 * num_parameters * tokens if num_parameters else None,
        "hosts": len({c["host"] for c in costs if "host" in c}),  # machines the batches were sampled on
        "processes": len({(c["host"], c["pid"]) for c in costs if "host" in c}),  # shards, retries and resumes
    }
