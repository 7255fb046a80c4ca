"""Resumable sampling: a round's samples written batch by batch, so a killed run resumes.

`runs/r<k>/samples/` holds, while a round is being sampled:
  manifest.json            the sampler's config (the `sampling` section and the policy) and its hash
  shard-00000.jsonl        the provenance records of one batch of queries, renamed into
                           place only once complete (a kill leaves no partial shard)
  shard-00000.cost.json    what that batch cost: engine calls, tokens, seconds
A rerun checks the manifest: another config is refused, naming the keys that differ (its
shards would mix two samplers in one round); the same config skips every query id already
in a shard. Batches are seeded by their first query's id (`genius.sampling`), so the resumed
run samples the remaining batches as an uninterrupted run would. When every query is done,
`assemble` joins the shards into samples.jsonl in query order and the folder is removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from genius.config import ConfigError, SamplingConfig
from genius.engine import Engine, EngineCost
from genius.queries import Query
from genius.sampling import foresight_sample_batches

# Keys that change how fast sampling runs, not what it samples: resuming on a machine
# with other threads, GPUs or memory is allowed.
THROUGHPUT_ONLY = ("threads", "max_batch_sequences", "max_batch_tokens", "tensor_parallel_size")


class ResumeError(ConfigError):
    """Unfinished shards of a run with another config; the message names the differing keys."""


def sampler_config(cfg: SamplingConfig, policy: str) -> dict:
    """What decides the samples: the sampling section (minus THROUGHPUT_ONLY) and the policy."""
    sampling = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in THROUGHPUT_ONLY}
    return {"sampling": sampling, "policy": policy}


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # a reader (or a resumed run) sees the old file or the whole new one


@dataclass(frozen=True)
class ShardStore:
    dir: Path

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    def open(self, config: dict) -> None:
        """Start a run, or resume one: refuse unfinished shards made with another config."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.dir.glob("*.tmp"):  # a write cut short by a kill
            leftover.unlink()
        if self.manifest.exists():
            old = json.loads(self.manifest.read_text())["config"]
            if old != config:
                diff = ", ".join(f"{k}: {_get(old, k)!r} -> {_get(config, k)!r}" for k in config_diff(old, config))
                raise ResumeError(
                    f"{self.dir} holds {len(self.shards())} finished shard(s) of an interrupted run with another "
                    f"sampler config ({diff}). Rerun with the same params to resume it, or delete {self.dir} "
                    "to start over."
                )
        else:
            _atomic_write(self.manifest, json.dumps({"config": config, "hash": config_hash(config)}, indent=2) + "\n")

    def shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.jsonl"))

    def done_ids(self) -> set[str]:
        return {json.loads(line)["query_id"] for shard in self.shards() for line in shard.open() if line.strip()}

    def write(self, records: list[dict], cost: dict) -> Path:
        """Add one complete shard: its cost first, then the records, each renamed into place."""
        index = max((int(p.name[6:11]) for p in self.shards()), default=-1) + 1
        shard = self.dir / f"shard-{index:05d}.jsonl"
        _atomic_write(shard.with_suffix(".cost.json"), json.dumps(cost) + "\n")
        _atomic_write(shard, "".join(json.dumps(r) + "\n" for r in records))
        return shard

    def costs(self) -> list[dict]:
        """The cost of every finished shard (a cost file whose shard never landed is ignored)."""
        return [json.loads(p.with_suffix(".cost.json").read_text()) for p in self.shards()]

    def assemble(self, query_ids: list[str], out: Path) -> int:
        """Join the shards into `out`, one line per query id in `query_ids` order; returns the count.

        Lines are copied byte for byte, found through an index of (shard, offset) per id, so
        a round of any size never sits in memory at once.
        """
        where: dict[str, tuple[Path, int]] = {}
        for shard in self.shards():
            with open(shard, "rb") as f:
                offset = 0
                for line in f:
                    if line.strip():
                        where.setdefault(json.loads(line)["query_id"], (shard, offset))
                    offset += len(line)
        missing = [q for q in query_ids if q not in where]
        if missing:
            raise RuntimeError(f"{self.dir}: {len(missing)} queries not sampled yet, e.g. {missing[:3]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        handles: dict[Path, object] = {}
        try:
            with open(tmp, "wb") as dst:
                for q in query_ids:
                    shard, offset = where[q]
                    src = handles.setdefault(shard, open(shard, "rb"))
                    src.seek(offset)
                    dst.write(src.readline())
        finally:
            for h in handles.values():
                h.close()
        os.replace(tmp, out)
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
    cfg: SamplingConfig,
    store: ShardStore,
    log: Callable[[str], None] = print,
) -> int:
    """Sample every query not yet in a shard, one shard per batch; returns how many were skipped.

    `store.open` must have accepted this run's config.
    """
    done = store.done_ids()
    todo = [q for q in queries if q.id not in done]
    skipped = len(queries) - len(todo)
    if skipped:
        log(f"resuming: {skipped} queries already sampled in {len(store.shards())} shard(s), {len(todo)} to go")
    before, start = dataclasses.replace(engine.cost), time.perf_counter()
    for records in foresight_sample_batches(engine, tokenizer, todo, cfg, progress=log):
        now = time.perf_counter()
        cost = {k: v - getattr(before, k) for k, v in dataclasses.asdict(engine.cost).items()}
        store.write(records, cost | {"queries": len(records), "seconds": now - start})
        before, start = dataclasses.replace(engine.cost), now
    return skipped


def sampling_cost(costs: list[dict], num_parameters: int | None) -> dict:
    """Totals over a round's shards, and a FLOPs estimate.

    FLOPs ~ 6 x parameters x tokens (sampled + prefilled), the convention issue 3 asks for;
    it is the training rule of thumb: a forward pass alone is ~2 x parameters x tokens, so
    this is an upper bound three times the generation's compute.
    """
    total = {k: sum(c[k] for c in costs) for k in (*EngineCost.__dataclass_fields__, "queries", "seconds")}
    tokens = total["generated_tokens"] + total["prefill_tokens"]
    return {
        "engine_calls": total["calls"],
        "generated_tokens": total["generated_tokens"],
        "prefill_tokens": total["prefill_tokens"],  # prompt tokens encoded, each shared prefix once
        "sampling_seconds": total["seconds"],  # summed over shards, those of interrupted runs included
        "tokens_per_second": total["generated_tokens"] / total["seconds"] if total["seconds"] else 0.0,
        "parameters": num_parameters,
        "flops_estimate": 6 * num_parameters * tokens if num_parameters else None,
    }
