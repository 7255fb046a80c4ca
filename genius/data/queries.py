"""Query ingestion: unlabelled queries from files or the hub -> one shuffled pool -> a round's slice.

Genius self-trains on queries alone, no answers. They come from JSON Lines, JSON, CSV or
Parquet files, a folder saved by `datasets`, a hub dataset (`hf:<name>[:<split>]`), or a
reasoning-gym generator (`reasoning_gym:<dataset>?size=N&seed=S&...`, genius.data.reasoning_gym:
its questions only, never its answers).
Each text is normalised and deduplicated, so a query written twice (extra spaces, a
decomposed accent) is sampled once. A bad row is dropped with a reason and where it was,
and ingestion goes on: one stray line must not cost a run. A source that cannot be read at
all stops ingestion, naming it (`queries.skip_bad_sources: true` reports and skips it). The
pool is shuffled once with a seed and round r takes its own disjoint slice, so no round
revisits a query. `ingest` writes the slice and a report of what was
dropped and why.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from genius.config import QueriesConfig
from genius.data import reasoning_gym
from genius.data.sources import read_source
from genius.io import write_atomic, write_json
from genius.layout import RoundPaths


class QueryError(ValueError):
    """No usable query at all, or too few for a round; the message says where and why."""


@dataclass(frozen=True)
class Query:
    id: str
    text: str  # normalised


@dataclass
class Drop:
    source: str  # the entry of queries.paths, as written there
    location: str  # "line 12" (1-based, jsonl/csv), "row 3" (0-based index, json/parquet/datasets) or "source"
    reason: str  # "<kind>: <detail>"; reports count drops by kind

    @property
    def kind(self) -> str:
        return self.reason.split(":", 1)[0]


@dataclass
class IngestReport:
    sources: list[str]
    read: int = 0  # rows seen, before any check; read == kept + row drops
    kept: int = 0  # the pool size
    dropped: list[Drop] = field(default_factory=list)
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> {"read", "kept"}
    round: int = 0  # 0 until a round's slice is taken
    round_size: int = 0
    slice_start: int = 0  # the round's queries are pool[slice_start:slice_end]
    slice_end: int = 0
    note: str = ""  # set when the round gets fewer than per_round queries

    def drops_by_reason(self) -> dict[str, int]:
        return dict(Counter(d.kind for d in self.dropped).most_common())

    def summary(self) -> dict[str, Any]:
        return {
            "sources": self.sources,
            "read": self.read,
            "kept": self.kept,
            "dropped": len(self.dropped),
            "drops_by_reason": self.drops_by_reason(),
            "round": self.round,
            "round_size": self.round_size,
            "slice": [self.slice_start, self.slice_end],
            "note": self.note,
        }

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "drops_by_reason": self.drops_by_reason()}


# ---------------------------------------------------------------------------- text


def normalise(text: str) -> str:
    """NFC; CRLF/CR -> LF; runs of other whitespace -> one space; control characters dropped.

    NFC first, so "e" + combining acute and the precomposed "é" become the same query.
    Tabs, NBSP and the like collapse to a space before control characters are removed,
    so "a\\fb" reads "a b", not "ab". Newlines stay: steps and lists may need them.
    """
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[^\S\n]+", " ", text)
    text = "".join(c for c in text if c == "\n" or unicodedata.category(c) != "Cc")
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def text_id(text: str) -> str:
    """A stable id for a query without one: the same text always gets the same id."""
    return "h" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _to_query(row: Any, cfg: QueriesConfig) -> Query | str:
    """The row as a Query, or the reason it cannot be one."""
    if isinstance(row, Exception):  # readers hand over unparseable rows this way
        return str(row)
    if not isinstance(row, dict):
        return f"not an object: got {type(row).__name__}"
    text = row.get(cfg.text_field)
    if text is None:
        return f"missing text: no field {cfg.text_field!r}" + (" (it is null)" if cfg.text_field in row else "")
    if not isinstance(text, str):
        return f"text not a string: got {type(text).__name__}"
    text = normalise(text)
    if not text:
        return "empty text: nothing left after normalisation"
    if len(text) < cfg.min_chars:
        return f"too short: {len(text)} chars < queries.min_chars={cfg.min_chars}"
    if len(text) > cfg.max_chars:
        return f"too long: {len(text)} chars > queries.max_chars={cfg.max_chars}"
    raw_id = row.get(cfg.id_field) if cfg.id_field else None
    if raw_id is None or raw_id == "":
        return Query(text_id(text), text)
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        return f"bad id: expected a string or integer, got {type(raw_id).__name__}"
    return Query(str(raw_id), text)


# ---------------------------------------------------------------------------- pool and rounds


def _rows(source: str, cfg: QueriesConfig, base_dir: Path, report: IngestReport) -> Iterator[tuple[str, Any]]:
    """The source's rows; failing to read it, at open or midway, becomes one source drop.

    Only reader errors land here (the consumer's own errors are raised in its frame), and
    pyarrow, `datasets` and the hub raise too many types to list, hence `Exception`.
    """
    try:
        yield from read_source(source, cfg, base_dir)
    except FileNotFoundError as e:
        report.dropped.append(Drop(source, "source", f"missing source: {e}"))
    except Exception as e:
        detail = str(e) if type(e) is ValueError else f"{type(e).__name__}: {e}"
        report.dropped.append(Drop(source, "source", f"unreadable source: {detail}"))


def load_pool(cfg: QueriesConfig, base_dir: Path = Path(".")) -> tuple[list[Query], IngestReport]:
    """Every valid, distinct query from cfg.paths, shuffled once with cfg.shuffle_seed.

    Sources are read in order and the first occurrence of a text or an id wins, so the
    same files and seed always give the same pool.
    """
    _check_specs(cfg.paths)
    report = IngestReport(sources=list(cfg.paths))
    pool: list[Query] = []
    text_at: dict[str, str] = {}  # normalised text -> where it was kept
    id_at: dict[str, str] = {}
    for source in cfg.paths:
        counts = report.by_source.setdefault(source, {"read": 0, "kept": 0})
        for location, row in _rows(source, cfg, Path(base_dir), report):
            counts["read"] += 1
            query, where = _to_query(row, cfg), f"{source} {location}"
            if isinstance(query, Query) and query.text in text_at:
                query = f"duplicate text: same as {text_at[query.text]}"
            elif isinstance(query, Query) and query.id in id_at:
                query = f"duplicate id: {query.id!r} already used by {id_at[query.id]} for another text"
            if isinstance(query, str):
                report.dropped.append(Drop(source, location, query))
                continue
            text_at[query.text] = id_at[query.id] = where
            pool.append(query)
            counts["kept"] += 1
    report.read = sum(c["read"] for c in report.by_source.values())
    report.kept = len(pool)
    if not pool:
        raise QueryError(_nothing_left(report))
    unread = [d for d in report.dropped if d.location == "source"]
    if unread and not cfg.skip_bad_sources:
        raise QueryError(
            "; ".join(f"queries.paths entry {d.source!r}: {d.reason}" for d in unread)
            + " (fix or remove it; queries.skip_bad_sources: true goes on without it)"
        )
    random.Random(cfg.shuffle_seed).shuffle(pool)
    return pool, report


def _check_specs(sources: list[str]) -> None:
    """A bad `reasoning_gym:` entry is a mistake in the config, not a source to skip: refuse it.

    Two entries of one dataset and seed would give the same ids to different questions.
    """
    seen: dict[tuple[str, int], str] = {}
    for source in sources:
        if not reasoning_gym.is_spec(source):
            continue
        try:
            spec = reasoning_gym.parse_spec(source)
        except reasoning_gym.SpecError as e:
            raise QueryError(f"queries.paths: {source}: {e}") from None
        if (spec.name, spec.seed) in seen:
            raise QueryError(
                f"queries.paths: {source}: same dataset and seed as {seen[spec.name, spec.seed]}; "
                "their ids would collide: give each its own seed"
            )
        seen[spec.name, spec.seed] = source


def _nothing_left(report: IngestReport) -> str:
    lines = ["no valid query in queries.paths:"]
    for source in report.sources:
        problem = next((d.reason for d in report.dropped if d.source == source and d.location == "source"), None)
        lines.append(f"  {source}: {problem or str(report.by_source[source]['read']) + ' rows read, all dropped'}")
    top = ", ".join(
        f"{kind} x{n} (first: {next(f'{d.source} {d.location}' for d in report.dropped if d.kind == kind)})"
        for kind, n in list(report.drops_by_reason().items())[:3]
    )
    return "\n".join(lines + [f"top drop reasons: {top}"])


def round_slice(pool: list[Query], round_index: int, per_round: int) -> list[Query]:
    """Round r's queries, pool[(r-1)*per_round : r*per_round]: disjoint across rounds."""
    if round_index < 1 or per_round < 1:
        raise ValueError(f"round_index and per_round must be >= 1, got {round_index} and {per_round}")
    start = (round_index - 1) * per_round
    if start >= len(pool):
        raise QueryError(
            f"the query pool has {len(pool)} queries and rounds 1..{round_index - 1} use the first {start}; "
            f"round {round_index} needs more: add queries to queries.paths or lower queries.per_round ({per_round})"
        )
    return pool[start : start + per_round]


def ingest(cfg: QueriesConfig, round_index: int, out_dir: Path, base_dir: Path = Path(".")) -> IngestReport:
    """Load the pool, take the round's slice, write the round folder's report, then its queries (RoundPaths)."""
    pool, report = load_pool(cfg, base_dir)
    chosen = round_slice(pool, round_index, cfg.per_round)
    report.round, report.round_size = round_index, len(chosen)
    report.slice_start = (round_index - 1) * cfg.per_round
    report.slice_end = report.slice_start + len(chosen)
    if len(chosen) < cfg.per_round:
        report.note = f"partial round: {len(chosen)} of {cfg.per_round} queries; the pool of {len(pool)} is used up"
    paths = RoundPaths(Path(out_dir))
    paths.dir.mkdir(parents=True, exist_ok=True)
    rows = "".join(json.dumps({"id": q.id, "query": q.text}, ensure_ascii=False) + "\n" for q in chosen)
    write_json(paths.ingest_report, report.to_json())
    write_atomic(paths.queries, rows)  # last: a round whose queries exist is ingested whole
    return report


def read_queries(path: str | Path) -> list[Query]:
    """The queries `ingest` wrote to a queries.jsonl."""
    queries = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                queries.append(Query(str(row["id"]), row["query"]))
            except (ValueError, KeyError, TypeError) as e:
                raise QueryError(f"{path} line {n}: expected {{'id', 'query'}} as ingest writes ({e!r})") from None
    return queries


def cut_batches(queries: list[Query], size: int) -> list[list[Query]]:
    """A round's queries, in order, cut into batches of `size` (the last may be shorter).

    The one place batches are cut: batch b is what a sampler samples with one seed and what a
    shard samples and resumes (`genius.stages.shards`), so every process must cut the same
    list the same way.
    """
    return [queries[b : b + size] for b in range(0, len(queries), size)]
