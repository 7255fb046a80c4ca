"""Where a lineage's files live: a round's folder (`RoundPaths`) and the runs folder around it (`RunsPaths`).

Every file name a stage reads or writes is spelled here and nowhere else (tests/test_layout.py
reads the rest of the code for `r{k}`-style literals and for these names). Round r lives in
`<rounds.runs_dir>/r<r>/`, the base model's evaluation in `<rounds.runs_dir>/base/`;
`round_name` is also the round's key in the registry and in dvc.yaml (`ingest@r1`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BASE = "base"  # round 0: the base model, evaluated only


def round_name(r: int) -> str:
    """`base` for round 0, else `r<r>`: the round's folder, registry key and DVC item key."""
    return BASE if r == 0 else f"r{r}"


@dataclass(frozen=True)
class RoundPaths:
    """The files of one round, in the order the stages write them."""

    dir: Path

    @classmethod
    def of(cls, runs_dir: str | Path, r: int) -> RoundPaths:
        return cls(Path(runs_dir) / round_name(r))

    queries = property(lambda self: self.dir / "queries.jsonl")  # this round's query slice
    ingest_report = property(lambda self: self.dir / "ingest_report.json")  # kept/dropped, with reasons
    samples = property(lambda self: self.dir / "samples.jsonl")  # full foresight provenance per query
    shards = property(lambda self: self.dir / "samples")  # samples.jsonl in the making: resumable shards
    sampling = property(lambda self: self.dir / "sampling.json")  # cost of sampling
    pairs = property(lambda self: self.dir / "pairs.jsonl")  # (x, T_w, A_w, T_l, A_l) quintuples
    pair_stats = property(lambda self: self.dir / "pairs.json")
    reference_logps = property(lambda self: self.dir / "reference_logps.safetensors")  # the reference's, cached
    train_state = property(lambda self: self.dir / "train_state")  # resumable training state, removed when done
    checkpoint = property(lambda self: self.dir / "checkpoint")  # HF format, save_pretrained
    train_steps = property(lambda self: self.dir / "train_steps.jsonl")  # one row per optimizer step
    training = property(lambda self: self.dir / "train.json")
    eval_samples = property(lambda self: self.dir / "eval_samples.jsonl")
    diagnostics = property(lambda self: self.dir / "diagnostics.json")  # self-reward vs correctness on a probe
    metrics = property(lambda self: self.dir / "metrics.json")  # evaluation + the round's summary
    lock = property(lambda self: self.dir / ".stage.lock")  # held by the stage working on the round


def round_fields() -> list[str]:
    """The names of RoundPaths' files (the stage table names its inputs and outputs by them)."""
    return [name for name, value in vars(RoundPaths).items() if isinstance(value, property)]


@dataclass(frozen=True)
class RunsPaths:
    """The runs folder of a lineage (`rounds.runs_dir`): the rounds, and the report over them."""

    dir: Path

    def round(self, r: int) -> RoundPaths:
        return RoundPaths.of(self.dir, r)

    report = property(lambda self: self.dir / "report.md")  # tables over the rounds; the flow publishes it
    accuracy_csv = property(lambda self: self.dir / "accuracy.csv")  # `dvc plots`
    accuracy_png = property(lambda self: self.dir / "accuracy.png")
    stages_log = property(lambda self: self.dir / "stages.log")  # the output of stages run outside DVC


def summary_path(registry: str | Path) -> Path:
    """The lineage's headline metrics (DVC's metric), beside its registry: rounds.yaml -> rounds.metrics.json.

    Beside the registry, not under runs/, so that git (and `dvc exp run`'s commits) keep it.
    """
    return Path(registry).with_suffix(".metrics.json")
