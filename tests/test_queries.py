"""Query ingestion on real files: every format, normalisation, drops with locations, rounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genius.config import QueriesConfig
from genius.data.queries import (
    Query,
    QueryError,
    ingest,
    load_pool,
    normalise,
    read_queries,
    round_slice,
    text_id,
)

ROWS = [{"id": "a", "query": "1+2"}, {"id": "b", "query": "3+4"}, {"id": "c", "query": "5+6"}]


def write_jsonl(path: Path, lines: list) -> Path:
    """Lines are written as given when str, else as JSON."""
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def cfg(*paths: str, **kw) -> QueriesConfig:
    return QueriesConfig(paths=list(paths), **kw)


def by_id(pool: list[Query]) -> dict[str, str]:
    return {q.id: q.text for q in pool}


# ---------------------------------------------------------------------------- formats


def test_jsonl(tmp_path):
    write_jsonl(tmp_path / "q.jsonl", ROWS)
    pool, report = load_pool(cfg("q.jsonl"), tmp_path)
    assert by_id(pool) == {"a": "1+2", "b": "3+4", "c": "5+6"}
    assert (report.read, report.kept, report.dropped) == (3, 3, [])


@pytest.mark.parametrize("wrap", [lambda rows: rows, lambda rows: {"data": rows, "version": 2}])
def test_json_list_or_object_holding_one_list(tmp_path, wrap):
    (tmp_path / "q.json").write_text(json.dumps(wrap(ROWS)))
    pool, _ = load_pool(cfg("q.json"), tmp_path)
    assert by_id(pool) == {"a": "1+2", "b": "3+4", "c": "5+6"}


def test_json_holding_json_lines_is_read_as_lines(tmp_path):
    write_jsonl(tmp_path / "q.json", ROWS)
    pool, _ = load_pool(cfg("q.json"), tmp_path)
    assert len(pool) == 3


def test_csv_bad_byte_drops_only_its_row(tmp_path):
    rows = [f"{i},{i}+1".encode() for i in range(2000)]
    rows[1499] = b"1499,caf\xe9 1+1"  # one Latin-1 byte at row 1,500
    rows[10] = b'10,"two\nlines \xff"'  # and one inside a quoted field spanning two lines
    (tmp_path / "q.csv").write_bytes(b"id,query\n" + b"\n".join(rows) + b"\n")
    pool, report = load_pool(cfg("q.csv"), tmp_path)
    assert len(pool) == 1998 and "1499" not in by_id(pool) and "10" not in by_id(pool)
    assert [(d.location, d.kind) for d in report.dropped] == [("line 12", "not UTF-8"), ("line 1502", "not UTF-8")]  # the quoted field took a line


def test_csv_with_multiline_field(tmp_path):
    (tmp_path / "q.csv").write_text('id,query\na,1+2\nb,"line one\nline two"\nc,5+6\n')
    pool, _ = load_pool(cfg("q.csv"), tmp_path)
    assert by_id(pool) == {"a": "1+2", "b": "line one\nline two", "c": "5+6"}


def test_parquet(tmp_path):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    table = pa.table({"id": [1, 2, 3], "query": ["1+2", None, "5+6"], "answer": [3, 7, 11]})
    pq.write_table(table, tmp_path / "q.parquet")
    pool, report = load_pool(cfg("q.parquet"), tmp_path)
    assert by_id(pool) == {"1": "1+2", "3": "5+6"}  # integer ids become strings
    assert [(d.location, d.kind) for d in report.dropped] == [("row 1", "missing text")]


@pytest.mark.parametrize("as_dict", [False, True])
def test_datasets_folder(tmp_path, as_dict):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ROWS)
    saved = datasets.DatasetDict({"train": ds, "test": ds.select([0])}) if as_dict else ds
    saved.save_to_disk(str(tmp_path / "saved"))
    pool, _ = load_pool(cfg("saved"), tmp_path)
    assert by_id(pool) == {"a": "1+2", "b": "3+4", "c": "5+6"}


def test_hub_source_offline_is_a_clear_source_drop(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    write_jsonl(tmp_path / "q.jsonl", ROWS)
    _, report = load_pool(cfg("hf:no-such-owner/no-such-set:train", "q.jsonl", skip_bad_sources=True), tmp_path)
    (drop,) = report.dropped
    assert (drop.location, drop.kind) == ("source", "unreadable source")
    assert "no-such-owner/no-such-set" in drop.reason and "offline" in drop.reason


# ---------------------------------------------------------------------------- normalisation and filters


def test_normalise():
    assert normalise("  Hello\t\t  world  \r\nnext\u00a0 line \x00\x07end ") == "Hello world\nnext line end"
    assert normalise("Cafe\u0301") == "Caf\u00e9"  # NFC
    assert normalise("a\fb") == "a b"  # whitespace controls become a space before controls are dropped


def test_dedup_length_filter_and_ids(tmp_path):
    write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "a", "query": "  what is  1+2 "},  # line 1: kept as "what is 1+2"
            {"id": "b", "query": "what is 1+2"},  # line 2: same text after normalisation
            {"id": "a", "query": "something else"},  # line 3: id "a" with another text
            {"query": "Cafe\u0301 au lait"},  # line 4: no id -> hash of the normalised text
            {"id": "d", "query": "Caf\u00e9 au lait"},  # line 5: same as line 4 under NFC
            {"id": "e", "query": "ab"},  # line 6: 2 chars < min_chars 3
            {"id": "f", "query": "x" * 21},  # line 7: 21 chars > max_chars 20
            {"id": "g", "query": "x" * 20},  # line 8: exactly max_chars, kept
        ],
    )
    pool, report = load_pool(cfg("q.jsonl", min_chars=3, max_chars=20), tmp_path)
    assert by_id(pool) == {"a": "what is 1+2", text_id("Café au lait"): "Café au lait", "g": "x" * 20}
    assert [(d.location, d.kind) for d in report.dropped] == [
        ("line 2", "duplicate text"),
        ("line 3", "duplicate id"),
        ("line 5", "duplicate text"),
        ("line 6", "too short"),
        ("line 7", "too long"),
    ]
    assert "q.jsonl line 1" in report.dropped[0].reason  # says which row it duplicates
    counts = {"duplicate text": 2, "duplicate id": 1, "too short": 1, "too long": 1}
    assert report.summary()["drops_by_reason"] == counts
    assert (report.read, report.kept) == (8, 3)


def test_id_field_none_hashes_text(tmp_path):
    write_jsonl(tmp_path / "q.jsonl", ROWS)
    pool, _ = load_pool(cfg("q.jsonl", id_field=None), tmp_path)
    assert sorted(q.id for q in pool) == sorted(text_id(r["query"]) for r in ROWS)
    assert text_id("1+2") == text_id("1+2") and text_id("1+2").startswith("h") and len(text_id("1+2")) == 13


# ---------------------------------------------------------------------------- malformed input


def test_malformed_jsonl_lines_dropped_with_line_numbers(tmp_path):
    write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "a", "query": "1+2"},  # 1
            '{"id": "b", "query": ',  # 2: bad JSON
            {"id": "c"},  # 3: no text field
            {"id": "d", "query": 42},  # 4: not a string
            {"id": "e", "query": "  \t "},  # 5: empty after normalisation
            "",  # 6: blank line, skipped silently
            '["not", "an", "object"]',  # 7
            {"id": "h", "query": "5+6"},  # 8
        ],
    )
    with (tmp_path / "q.jsonl").open("ab") as f:
        f.write(b'{"id": "i", "query": "\xff"}\n')  # 9: not UTF-8
    pool, report = load_pool(cfg("q.jsonl"), tmp_path)
    assert by_id(pool) == {"a": "1+2", "h": "5+6"}
    assert [(d.source, d.location, d.kind) for d in report.dropped] == [
        ("q.jsonl", "line 2", "bad JSON"),
        ("q.jsonl", "line 3", "missing text"),
        ("q.jsonl", "line 4", "text not a string"),
        ("q.jsonl", "line 5", "empty text"),
        ("q.jsonl", "line 7", "not an object"),
        ("q.jsonl", "line 9", "not UTF-8"),
    ]
    assert report.read == report.kept + len(report.dropped) == 8


def test_malformed_csv_rows_dropped_with_line_numbers(tmp_path):
    (tmp_path / "q.csv").write_text('id,query\na,"two\nlines"\nb\n\nc,\nd,5+6\n')
    pool, report = load_pool(cfg("q.csv"), tmp_path)
    assert by_id(pool) == {"a": "two\nlines", "d": "5+6"}
    assert [(d.location, d.kind) for d in report.dropped] == [("line 4", "bad CSV"), ("line 6", "empty text")]


def test_a_bad_source_beside_a_good_one_stops_ingest_naming_it(tmp_path):
    write_jsonl(tmp_path / "q.jsonl", ROWS)
    for bad in ("missing.jsonl", "notes.txt"):
        (tmp_path / "notes.txt").write_text("1+2\n")
        with pytest.raises(QueryError, match=f"queries.paths entry '{bad}': (missing|unreadable) source.*skip_bad_sources"):
            load_pool(cfg("q.jsonl", bad), tmp_path)


def test_skip_bad_sources_reports_them_and_loads_the_others(tmp_path):
    write_jsonl(tmp_path / "q.jsonl", ROWS)
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "nocol.csv").write_text("id,text\na,1+2\n")
    (tmp_path / "notes.txt").write_text("1+2\n")
    paths = ("missing.jsonl", "q.jsonl", "bad.json", "nocol.csv", "notes.txt")
    pool, report = load_pool(cfg(*paths, skip_bad_sources=True), tmp_path)
    assert len(pool) == 3
    assert [(d.source, d.location, d.kind) for d in report.dropped] == [
        ("missing.jsonl", "source", "missing source"),
        ("bad.json", "source", "unreadable source"),
        ("nocol.csv", "source", "unreadable source"),
        ("notes.txt", "source", "unreadable source"),
    ]
    assert "no column 'query'" in report.dropped[2].reason and "unknown format '.txt'" in report.dropped[3].reason


def test_all_invalid_raises_naming_every_source(tmp_path):
    write_jsonl(tmp_path / "bad.jsonl", ["{oops", {"id": "x"}, "{oops"])
    with pytest.raises(QueryError) as e:
        load_pool(cfg("bad.jsonl", "gone.csv"), tmp_path)
    message = str(e.value)
    assert "bad.jsonl: 3 rows read, all dropped" in message
    assert "gone.csv: missing source" in message
    assert "bad JSON x2 (first: bad.jsonl line 1)" in message


# ---------------------------------------------------------------------------- rounds


def pool_of(n: int, seed: int, tmp_path: Path) -> list[Query]:
    write_jsonl(tmp_path / "q.jsonl", [{"id": str(i), "query": f"{i}+1"} for i in range(n)])
    return load_pool(cfg("q.jsonl", shuffle_seed=seed), tmp_path)[0]


def test_shuffle_is_deterministic_per_seed(tmp_path):
    first, again, other = pool_of(50, 0, tmp_path), pool_of(50, 0, tmp_path), pool_of(50, 1, tmp_path)
    assert first == again and first != other
    assert [q.id for q in first] != [str(i) for i in range(50)]  # actually shuffled


def test_round_slices_disjoint_and_exhaustion(tmp_path):
    pool = pool_of(25, 0, tmp_path)
    rounds = [round_slice(pool, r, 10) for r in (1, 2, 3)]
    assert [len(s) for s in rounds] == [10, 10, 5]
    assert {q.id for s in rounds for q in s} == {q.id for q in pool}  # disjoint and covering
    assert sum(len(s) for s in rounds) == len(pool)
    with pytest.raises(QueryError, match=r"pool has 25 queries.*round 4 needs more.*lower queries.per_round"):
        round_slice(pool, 4, 10)


def test_ingest_writes_queries_and_report(tmp_path):
    write_jsonl(tmp_path / "q.jsonl", ROWS + ['{"bad'])
    out = tmp_path / "runs" / "r2"
    report = ingest(cfg("q.jsonl", per_round=2), 2, out, base_dir=tmp_path)
    pool, _ = load_pool(cfg("q.jsonl", per_round=2), tmp_path)
    assert read_queries(out / "queries.jsonl") == pool[2:3]  # the one query left after round 1
    saved = json.loads((out / "ingest_report.json").read_text())
    assert saved["kept"] == 3 and saved["round"] == 2 and (saved["slice_start"], saved["slice_end"]) == (2, 3)
    assert saved["dropped"] == [{"source": "q.jsonl", "location": "line 4", "reason": saved["dropped"][0]["reason"]}]
    assert saved["drops_by_reason"] == {"bad JSON": 1}
    assert "partial round: 1 of 2" in saved["note"] == report.note
    assert sorted(p.name for p in out.iterdir()) == ["ingest_report.json", "queries.jsonl"]  # no temp files left
