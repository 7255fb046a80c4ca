"""The round registry (`rounds.yaml`): which rounds exist, where each started, which were promoted.

DVC builds the per-round stages from it (`vars: [rounds.yaml]` in dvc.yaml), the CLI reads
a round's policy from it, and the Prefect flow writes it: it registers a round with the
latest promoted checkpoint as policy before running the round, and records the promotion
decision after evaluating it. A round that made the model worse stays in the registry,
marked, and the next round starts from the last good checkpoint.

The registry also records its lineage: the model it self-trains and the runs folder its
rounds write to (genius/stages/pipeline.py refuses to switch either under rounds already done).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from genius.config import read_yaml
from genius.io import write_atomic
from genius.layout import round_name

HEADER = """\
# The round registry: the lineage (the model it self-trains, the folder its rounds write to),
# every self-training round, the policy it started from, and whether the Prefect flow
# promoted it. dvc.yaml builds its per-round stages from `round_list`, so `dvc repro`
# reproduces exactly this lineage; the flow appends a round (starting from the latest
# promoted checkpoint) before running it. Written by genius: `genius pipeline`, the flow.
"""


@dataclass(frozen=True)
class Lineage:
    model: str  # model.path: what round 1 starts from
    runs_dir: str  # rounds.runs_dir: where the rounds write


@dataclass
class RoundEntry:
    round: int
    policy: str  # the model the round samples with and trains from
    promoted: bool | None = None  # None until the flow has judged the round
    reason: str = ""  # why it was (not) promoted


def read_registry(path: str | Path) -> dict[int, RoundEntry]:
    path = Path(path)
    if not path.exists():
        return {}
    data = read_yaml(path, "round registry")[0] or {}
    entries = {}
    for key, item in (data.get("round_list") or {}).items():
        try:
            entry = RoundEntry(**item)
        except TypeError as e:
            raise ValueError(f"{path}: round_list.{key}: {e}") from None
        if key != round_name(entry.round):
            raise ValueError(f"{path}: round_list.{key}: the key must be {round_name(entry.round)}")
        entries[entry.round] = entry
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise ValueError(f"{path}: rounds must be numbered 1..n without gaps, got {sorted(entries)}")
    return entries


def read_lineage(path: str | Path) -> Lineage | None:
    """The lineage the registry records, or None (no registry, or one from before lineages)."""
    path = Path(path)
    data = (read_yaml(path, "round registry")[0] or {}) if path.exists() else {}
    item = data.get("lineage")
    if item is None:
        return None
    try:
        return Lineage(**item)
    except TypeError as e:
        raise ValueError(f"{path}: lineage: {e}") from None


def write_registry(path: str | Path, entries: dict[int, RoundEntry], lineage: Lineage | None = None) -> None:
    """Write the registry; the recorded lineage is kept unless a new one is given."""
    lineage = lineage or read_lineage(path)
    lines = [HEADER.rstrip("\n")]
    if lineage:
        lines.append("lineage: " + yaml.safe_dump(vars(lineage), default_flow_style=True, sort_keys=False, width=1000).strip())
    lines.append("round_list:" + ("" if entries else " {}"))
    for r in sorted(entries):
        e = entries[r]
        item = {"round": e.round, "policy": e.policy}
        if e.promoted is not None:
            item |= {"promoted": e.promoted, "reason": e.reason}
        lines.append(f"  {round_name(r)}: " + yaml.safe_dump(item, default_flow_style=True, sort_keys=False, width=1000).strip())
    write_atomic(path, "\n".join(lines) + "\n")


def latest_promoted(entries: dict[int, RoundEntry], before: int) -> int | None:
    """The last promoted round before `before`, or None (the base model is current)."""
    return next((r for r in range(before - 1, 0, -1) if entries.get(r) and entries[r].promoted), None)


def decide_promotion(candidate: float, incumbent: float, tolerance: float, task: str) -> tuple[bool, str]:
    """Promote unless accuracy on `task` fell by more than `tolerance` against the incumbent."""
    delta = candidate - incumbent
    if delta >= -tolerance:
        return True, f"{task} {candidate:.1%} vs {incumbent:.1%} ({delta:+.1%}, tolerance {tolerance:.1%})"
    return False, f"{task} fell to {candidate:.1%} from {incumbent:.1%} ({delta:+.1%}), beyond the tolerance of {tolerance:.1%}"
