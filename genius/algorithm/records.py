"""The records sampling writes and training reads (docs/ALGORITHM.md section 1).

`SampleRecord` is one query's search, a line of runs/r<k>/samples.jsonl; `PreferencePair` is
one quintuple (x, T_w, A_w, T_l, A_l), a line of runs/r<k>/pairs.jsonl. The label-free
baselines (genius.algorithm.self_consistency and its peers) sample whole responses instead:
`ResponseGroup` is one query's n responses; their pairs are `PreferencePair`s too, and the
methods that fine-tune on responses alone (LMSI, RFT) write `SftTarget`s. A round's files hold
whichever its method makes: `sample_record` and `training_pair` read a line of either kind. Field names are the
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


@dataclass(frozen=True)
class Response:
    """One whole response sampled for a query, as the engine returned it."""

    text: str
    token_ids: tuple[int, ...]  # as sampled (EOS included when generated): decode-encode need not round-trip
    complete: bool  # it ended with EOS, not at the token limit
    mean_logprob: float  # mean over its tokens of log pi(token | context), untempered; 0 when it has none

    def to_json(self) -> dict:
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        return row | {"token_ids": list(self.token_ids)}

    @classmethod
    def from_json(cls, row: dict) -> Response:
        row = _checked(cls, row)
        return cls(row["text"], tuple(row["token_ids"]), row["complete"], row["mean_logprob"])


@dataclass(frozen=True)
class ResponseGroup:
    """A query's n responses, sampled independently from the same prompt (the voting methods' sample)."""

    query_id: str
    query: str
    responses: tuple[Response, ...]

    def to_json(self) -> dict:
        return {"query_id": self.query_id, "query": self.query, "responses": [r.to_json() for r in self.responses]}

    @classmethod
    def from_json(cls, row: dict) -> ResponseGroup:
        row = _checked(cls, row)
        return cls(row["query_id"], row["query"], tuple(Response.from_json(r) for r in row["responses"]))


@dataclass(frozen=True)
class SftTarget:
    """One response to fine-tune on, with no negative (LMSI, RFT): a line of the round's pairs file.

    Not a `PreferencePair` with a blank negative: a file of pairs may be trained by any loss,
    and a preference loss would then push the policy away from an empty response without a
    word. `as_pair` makes the pair the trainer reads; only `training.loss: sft` may train it.
    """

    query_id: str
    query: str
    response: str
    complete: bool  # it ended the response (training appends EOS)
    score: float  # why it was kept: the majority's vote share (LMSI), 1.0 (RFT: it is right)

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, row: dict) -> SftTarget:
        return cls(**_checked(cls, row))

    def as_pair(self) -> PreferencePair:
        """The pair `loss: sft` trains on: this response as T_w; T_l empty (no tokens, never trained on)."""
        return PreferencePair(
            query_id=self.query_id,
            query=self.query,
            timestamp=1,
            chosen=self.response,
            rejected="",
            chosen_complete=self.complete,
            rejected_complete=False,
            score_chosen=self.score,
            score_rejected=0.0,
            adv_chosen=self.score,
            adv_rejected=0.0,
            same_beam=True,
        )


def sample_record(row: dict) -> SampleRecord | ResponseGroup:
    """A line of a round's samples file: a foresight search (`timestamps`) or a query's n whole responses."""
    return SampleRecord.from_json(row) if "timestamps" in row else ResponseGroup.from_json(row)


def training_pair(row: dict) -> PreferencePair:
    """A line of a round's pairs file as the trainer reads it: a pair, or an SFT target's `as_pair`.

    Which losses may train which is the stage table's to check (genius/stages/table.py).
    """
    return SftTarget.from_json(row).as_pair() if "response" in row else PreferencePair.from_json(row)


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
