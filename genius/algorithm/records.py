"""The records foresight sampling writes and training reads (docs/ALGORITHM.md section 1).

`SampleRecord` is one query's search, a line of runs/r<k>/samples.jsonl; `PreferencePair` is
one quintuple (x, T_w, A_w, T_l, A_l), a line of runs/r<k>/pairs.jsonl. Field names are the
JSON keys and field order is key order, so `to_json` gives back exactly the dict the file
holds and the bytes on disk do not depend on these classes (resume checks and DVC hashes
compare them). `from_json` refuses a row with a missing or an unknown key, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class PreferencePair:
    """The pair of timestamp k of one query (steps 5-6): T_w the top-scored trajectory, T_l a draw from F_k."""

    query_id: str
    query: str  # x
    timestamp: int  # k
    chosen: str  # T_w as text: beam prefix + step + rollout
    rejected: str  # T_l
    chosen_complete: bool  # T_w ended the response (training appends EOS)
    rejected_complete: bool
    score_chosen: float  # f(T_w), the foresight score
    score_rejected: float  # f(T_l)
    adv_chosen: float  # A_w = f(T_w) - Q_{k-1}(beam of T_w)
    adv_rejected: float  # A_l = f(T_l) - Q_{k-1}(beam of T_l)
    same_beam: bool  # both extend one beam: then A_w >= A_l, outside ACO's calibration region

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, row: dict) -> PreferencePair:
        return cls(**_checked(cls, row))


@dataclass(frozen=True)
class SampleRecord:
    """One query's foresight search: its provenance, its pairs, and its final response."""

    query_id: str
    query: str
    # per timestamp k, as written: {"k", "beams": [{prefix, value, finished}], "candidates":
    # [{beam, step, rollout, score, prob}], "selected", "chosen", "rejected"}
    timestamps: tuple[dict, ...]
    pairs: tuple[PreferencePair, ...]
    final_response: dict | None  # the last timestamp's top-scored trajectory: {response, score, complete}

    def to_json(self) -> dict:
        return {
            "query_id": self.query_id,
            "query": self.query,
            "timestamps": list(self.timestamps),
            "pairs": [p.to_json() for p in self.pairs],
            "final_response": self.final_response,
        }

    @classmethod
    def from_json(cls, row: dict) -> SampleRecord:
        row = _checked(cls, row)
        pairs = tuple(PreferencePair.from_json(p) for p in row["pairs"])
        return cls(row["query_id"], row["query"], tuple(row["timestamps"]), pairs, row["final_response"])


def _checked(cls, row: dict) -> dict:
    """`row` itself when its keys are exactly `cls`'s fields; otherwise a ValueError naming the difference."""
    names = [f.name for f in fields(cls)]
    missing = [k for k in names if k not in row]
    unknown = [k for k in row if k not in names]
    if missing or unknown:
        problems = [f"missing key(s) {', '.join(map(repr, missing))}"] if missing else []
        problems += [f"unknown key(s) {', '.join(map(repr, unknown))}"] if unknown else []
        raise ValueError(f"{cls.__name__} record: {'; '.join(problems)} (expected the keys {', '.join(names)})")
    return row
