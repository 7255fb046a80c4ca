"""genius.io: atomic writes, JSON Lines that round-trip, hashes that do not depend on key order."""

import pytest

from genius.io import read_jsonl, stable_hash, write_atomic, write_json, write_jsonl


def test_jsonl_round_trips_and_counts(tmp_path):
    rows = [{"id": "a", "text": "caf\u00e9 2+2"}, {"id": "b", "n": [1, 2.5, None]}]
    assert write_jsonl(tmp_path / "sub" / "x.jsonl", rows) == 2
    assert list(read_jsonl(tmp_path / "sub" / "x.jsonl")) == rows
    write_json(tmp_path / "x.json", {"k": 1})
    assert (tmp_path / "x.json").read_text() == '{\n  "k": 1\n}\n'


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "x.txt"
    write_atomic(path, "old")

    def half_then_crash(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half_then_crash)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]
    write_atomic(path, b"\x00new")
    assert path.read_bytes() == b"\x00new"


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2}) and len(stable_hash({}, 12)) == 12
    # sha256 of '{"a": 1}', computed by hand with hashlib
    assert stable_hash({"a": 1}) == "f9d86028c6e0d64e225186f96acb69338b2c59764df79162107f5c4bb34d1310"
