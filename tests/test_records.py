"""The typed records of genius.algorithm.records: JSON round trips, clear errors, and today's files read back exactly."""

import json

import pytest

from genius.algorithm.pairs import extract_pairs
from genius.algorithm.records import PreferencePair, SampleRecord
from genius.io import write_jsonl
from genius.stages.shards import ShardStore

PAIR = PreferencePair(
    query_id="q7",
    query="12+30+5",
    timestamp=2,
    chosen="12+30=42\n42+5=47\nA:47",
    rejected="12+30=43\nA:48",
    chosen_complete=True,
    rejected_complete=False,
    score_chosen=-0.25,
    score_rejected=-0.75,
    adv_chosen=0.125,
    adv_rejected=0.5,
    same_beam=False,
)
TIMESTAMP = {
    "k": 1,
    "beams": [{"prefix": "", "value": 0.0, "finished": False}],
    "candidates": [{"beam": 0, "step": "12+30=42\n", "rollout": "42+5=47\nA:47", "score": -0.25, "prob": 1.0}],
    "selected": [0],
    "chosen": None,
    "rejected": None,
}
RECORD = SampleRecord("q7", "12+30+5", (TIMESTAMP,), (PAIR,), {"response": PAIR.chosen, "score": -0.25, "complete": True})

# Written by the code before genius.algorithm.records existed (M = 2, N = 2, K = 1 on test_science_options'
# scripted engine): a line of samples/batch-*.jsonl (ASCII-escaped) and the pairs.jsonl line
# `genius pairs` made of it (UTF-8).
SAMPLE_LINE = r'{"query_id": "q\u00e9", "query": "1+2", "timestamps": [{"k": 1, "beams": [{"prefix": "", "value": 0.0, "finished": false}], "candidates": [{"beam": 0, "step": "0\n", "rollout": "A:0", "score": 0.0, "prob": 1.0}, {"beam": 0, "step": "1\n", "rollout": "A:1", "score": -0.1, "prob": 0.0}], "selected": [0, 1], "chosen": 0, "rejected": 1}], "pairs": [{"query_id": "q\u00e9", "query": "1+2", "timestamp": 1, "chosen": "0\nA:0", "rejected": "1\nA:1", "chosen_complete": true, "rejected_complete": true, "score_chosen": 0.0, "score_rejected": -0.1, "adv_chosen": 0.0, "adv_rejected": -0.1, "same_beam": true}], "final_response": {"response": "0\nA:0", "score": 0.0, "complete": true}}'  # noqa: E501
PAIR_LINE = r'{"query_id": "qé", "query": "1+2", "timestamp": 1, "chosen": "0\nA:0", "rejected": "1\nA:1", "chosen_complete": true, "rejected_complete": true, "score_chosen": 0.0, "score_rejected": -0.1, "adv_chosen": 0.0, "adv_rejected": -0.1, "same_beam": true}'  # noqa: E501


def test_pair_round_trips_in_the_file_key_order():
    row = PAIR.to_json()
    assert list(row) == [
        "query_id", "query", "timestamp", "chosen", "rejected", "chosen_complete", "rejected_complete",
        "score_chosen", "score_rejected", "adv_chosen", "adv_rejected", "same_beam",
    ]  # fmt: skip
    assert row["adv_rejected"] == 0.5 and row["chosen"] == PAIR.chosen
    assert PreferencePair.from_json(row) == PAIR
    assert PreferencePair.from_json(json.loads(json.dumps(row))) == PAIR


def test_sample_record_round_trips_with_its_pairs():
    row = RECORD.to_json()
    assert list(row) == ["query_id", "query", "timestamps", "pairs", "final_response"]
    assert row["pairs"] == [PAIR.to_json()] and row["timestamps"] == [TIMESTAMP]
    assert SampleRecord.from_json(row) == RECORD
    again = SampleRecord.from_json(json.loads(json.dumps(row)))
    assert again == RECORD and isinstance(again.pairs[0], PreferencePair)


def test_from_json_names_a_missing_key():
    row = PAIR.to_json()
    del row["adv_rejected"]
    with pytest.raises(ValueError, match=r"PreferencePair record: missing key\(s\) 'adv_rejected' \(expected"):
        PreferencePair.from_json(row)
    record = RECORD.to_json()
    del record["final_response"]
    with pytest.raises(ValueError, match=r"SampleRecord record: missing key\(s\) 'final_response'"):
        SampleRecord.from_json(record)
    record = RECORD.to_json()
    del record["pairs"][0]["same_beam"]  # a bad pair inside a record is named too
    with pytest.raises(ValueError, match=r"PreferencePair record: missing key\(s\) 'same_beam'"):
        SampleRecord.from_json(record)


def test_from_json_names_an_unknown_key():
    with pytest.raises(ValueError, match=r"PreferencePair record: unknown key\(s\) 'reward'"):
        PreferencePair.from_json(PAIR.to_json() | {"reward": 1.0})
    with pytest.raises(ValueError, match=r"SampleRecord record: unknown key\(s\) 'answer'"):
        SampleRecord.from_json(RECORD.to_json() | {"answer": "47"})
    row = PAIR.to_json() | {"A_w": 0.1}
    del row["adv_chosen"]
    with pytest.raises(ValueError, match=r"missing key\(s\) 'adv_chosen'; unknown key\(s\) 'A_w'"):
        PreferencePair.from_json(row)


def test_records_are_frozen():
    with pytest.raises(AttributeError):
        PAIR.chosen = "other"  # type: ignore[misc]


def test_todays_lines_read_back_as_expected_and_are_rewritten_byte_for_byte(tmp_path):
    pair = PreferencePair("qé", "1+2", 1, "0\nA:0", "1\nA:1", True, True, 0.0, -0.1, 0.0, -0.1, True)
    assert PreferencePair.from_json(json.loads(PAIR_LINE)) == pair
    record = SampleRecord.from_json(json.loads(SAMPLE_LINE))
    assert (record.query_id, record.query, record.pairs) == ("qé", "1+2", (pair,))
    assert record.final_response == {"response": "0\nA:0", "score": 0.0, "complete": True}
    (t,) = record.timestamps
    assert (t["k"], t["selected"], t["chosen"], t["rejected"]) == (1, [0, 1], 0, 1)
    assert [c["score"] for c in t["candidates"]] == [0.0, -0.1]

    # the writers of the shards, of pairs.jsonl and of `genius pairs` give the same bytes again
    store = ShardStore(tmp_path / "samples")
    assert store.write(0, [record], {}).read_text() == SAMPLE_LINE + "\n"
    write_jsonl(tmp_path / "pairs.jsonl", [pair.to_json()])
    assert (tmp_path / "pairs.jsonl").read_text(encoding="utf-8") == PAIR_LINE + "\n"
    (tmp_path / "samples.jsonl").write_text(SAMPLE_LINE + "\n")
    extract_pairs(tmp_path / "samples.jsonl", tmp_path / "extracted.jsonl")
    assert (tmp_path / "extracted.jsonl").read_text(encoding="utf-8") == PAIR_LINE + "\n"
