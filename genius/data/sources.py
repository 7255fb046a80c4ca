"""Query sources: one reader per format, each yielding a source's rows with where they were.

JSON Lines, JSON, CSV and Parquet files, a folder saved by `datasets`, a hub dataset
(`hf:<name>[:<split>]`) or a reasoning-gym generator (`reasoning_gym:<spec>`, its
questions only). A row that cannot be parsed comes back as an Exception naming the
problem, so genius.data.queries drops that row and goes on; a source that cannot be read
at all raises.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterator

from genius.config import QueriesConfig
from genius.data import reasoning_gym

FORMATS = ".jsonl, .json, .csv, .parquet, a `datasets` save_to_disk folder, hf:<name>[:<split>] or reasoning_gym:<spec>"


# ---------------------------------------------------------------------------- readers
# Each yields (location, row): row is a dict, or an Exception whose message is the drop
# reason. A reader raises when the source as a whole cannot be read.


def _read_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open("rb") as f:  # bytes, so one undecodable line drops that line, not the file
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield f"line {n}", ValueError(f"not UTF-8: {e.reason} at byte {e.start}")
                continue
            if not line.strip():
                continue  # blank lines (a trailing one, say) are not rows
            try:
                yield f"line {n}", json.loads(line)
            except json.JSONDecodeError as e:
                yield f"line {n}", ValueError(f"bad JSON: {e.msg} at column {e.colno}")


def _read_json(path: Path) -> Iterator[tuple[str, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and text.lstrip().startswith("{"):
            yield from _read_jsonl(path)  # one object per line under a .json name, as `datasets` writes it
            return
        raise ValueError(f"bad JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise ValueError(f"expected a list, or an object holding exactly one list; got keys {sorted(data)[:5]}")
        data = data[lists[0]]
    if not isinstance(data, list):
        raise ValueError(f"expected a list of objects, got {type(data).__name__}")
    for i, row in enumerate(data):
        yield f"row {i}", row


def _read_csv(path: Path, cfg: QueriesConfig) -> Iterator[tuple[str, Any]]:
    bad: dict[int, str] = {}  # physical line -> why it is not UTF-8

    def lines(f) -> Iterator[str]:  # decoded line by line, so one bad byte costs its row, not the rest of the file
        for n, raw in enumerate(f, 1):
            try:
                yield raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                bad[n] = f"not UTF-8: {e.reason} at byte {e.start}"
                yield raw.decode("utf-8", errors="replace")

    with path.open("rb") as f:
        reader = csv.reader(lines(f))
        header = next(reader, None)
        _require_column(header or [], cfg.text_field)
        while True:
            first = reader.line_num + 1  # a quoted field may span lines: report the first
            where = f"line {first}"
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield where, ValueError(f"bad CSV: {e}")
                continue
            undecodable = [bad[n] for n in range(first, reader.line_num + 1) if n in bad]
            if undecodable:
                yield where, ValueError(undecodable[0])
            elif not cells:
                continue  # a blank line
            elif len(cells) != len(header):
                yield where, ValueError(f"bad CSV: {len(cells)} fields, the header has {len(header)}")
            else:
                yield where, dict(zip(header, cells))


def _read_parquet(path: Path, cfg: QueriesConfig) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    columns = _columns(parquet.schema_arrow.names, cfg)
    i = 0
    for batch in parquet.iter_batches(columns=columns):  # batches: a large file never sits in memory whole
        for row in batch.to_pylist():
            yield f"row {i}", row
            i += 1


def _read_dataset(ds, cfg: QueriesConfig) -> Iterator[tuple[str, Any]]:
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds and len(ds) != 1:
            raise ValueError(f"splits {sorted(ds)}: expected a 'train' split or a single one")
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    ds = ds.select_columns(_columns(ds.column_names, cfg))  # skip images and other heavy columns
    for i, row in enumerate(ds):
        yield f"row {i}", row


def _read_hub(spec: str, cfg: QueriesConfig) -> Iterator[tuple[str, Any]]:
    import datasets

    name, _, split = spec.partition(":")
    try:
        ds = datasets.load_dataset(name, split=split or None)
    except Exception as e:  # the hub client raises many types: offline, not found, gated, no such split
        offline = any(os.environ.get(v, "0") not in ("", "0") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
        hint = " (offline mode is on and no cached copy was found)" if offline else ""
        raise ValueError(f"cannot load hub dataset {name!r}{hint}: {type(e).__name__}: {e}") from None
    yield from _read_dataset(ds, cfg)


def _read_reasoning_gym(spec, cfg: QueriesConfig) -> Iterator[tuple[str, Any]]:
    """The spec's problems as rows {text_field: prompt, id_field: rg:<name>:<seed>:<index>}: no answer."""
    for p in reasoning_gym.problems(spec):
        yield f"row {p.index}", {cfg.text_field: p.query} | ({cfg.id_field: p.id} if cfg.id_field else {})


def _require_column(names: list[str], column: str) -> None:
    if column not in names:  # a whole file without the text column is one problem, not one per row
        raise ValueError(f"no column {column!r} (queries.text_field); columns: {', '.join(names) or 'none'}")


def _columns(names: list[str], cfg: QueriesConfig) -> list[str]:
    _require_column(names, cfg.text_field)
    return list(dict.fromkeys(c for c in (cfg.text_field, cfg.id_field) if c and c in names))


def read_source(source: str, cfg: QueriesConfig, base_dir: Path) -> Iterator[tuple[str, Any]]:
    if source.startswith("hf:"):
        return _read_hub(source[3:], cfg)
    if reasoning_gym.is_spec(source):
        return _read_reasoning_gym(reasoning_gym.parse_spec(source), cfg)
    path = base_dir / source
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_dir():
        import datasets

        return _read_dataset(datasets.load_from_disk(str(path)), cfg)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".csv":
        return _read_csv(path, cfg)
    if suffix == ".parquet":
        return _read_parquet(path, cfg)
    raise ValueError(f"unknown format {suffix or '(no suffix)'!r}; expected {FORMATS}")
