"""A lineage's rounds in order: register each, run its stages, judge it.

The one round loop. The Prefect flow `genius` runs the project's lineage with it, its stages
through DVC; `make replicate` runs each arm's lineage with it, its stages through the `genius`
CLI and with promotion off (the paper measures every round; it does not gate them);
bench/sweep.py its arms. Which stages a round has, and in which order, is the stage table's
(genius/stages/table.py); how one runs is the caller's `run(stage, r)`.

Promotion: a round is promoted unless its accuracy on `rounds.promotion_task` fell by more than
`rounds.promotion_tolerance` against the latest promoted round (or the base); the next round
starts from the latest promoted checkpoint. With promotion off, round r starts from round
r-1's checkpoint, whatever it scored.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from genius.config import Params, load_params
from genius.layout import RoundPaths
from genius.stages.report import write_summary
from genius.stages.registry import RoundEntry, decide_promotion, latest_promoted, read_registry, write_registry
from genius.stages.table import Stage, round_stages


@dataclass(frozen=True)
class Outside:
    """A lineage outside dvc.yaml (a replicate arm): its params file and overrides, and the label
    its log lines carry. Its stages run through the `genius` CLI; a stage whose last output
    exists is done (genius/stages/table.py)."""

    params: str
    overrides: tuple[str, ...] = ()
    label: str = ""

    def load(self) -> Params:
        return load_params(self.params, list(self.overrides))

    def command(self, stage: Stage, r: int | None) -> list[str]:
        sets = [x for item in self.overrides for x in ("-S", item)]
        return [sys.executable, "-m", "genius", "--params", self.params, *sets, *stage.argv(r)]


def register(params: Params, r: int, promotion: bool = True) -> RoundEntry:
    """Enter round r in the registry, starting from the latest promoted policy (promotion off: round r-1's).

    A round that already has results keeps its recorded policy: its lineage is history.
    """
    entries = read_registry(params.rounds.registry)
    if r in entries and RoundPaths.of(params.rounds.runs_dir, r).metrics.exists():
        return entries[r]
    current = latest_promoted(entries, before=r) if promotion else (r - 1 or None)
    policy = params.model.path if current is None else str(RoundPaths.of(params.rounds.runs_dir, current).checkpoint)
    entries[r] = RoundEntry(r, policy)
    write_registry(params.rounds.registry, entries)
    return entries[r]


def judge(params: Params, r: int, metrics: dict, base: dict) -> RoundEntry:
    """Record whether round r is promoted: it must not regress beyond the tolerance."""
    entries = read_registry(params.rounds.registry)
    task = params.rounds.promotion_task or params.eval.tasks[0]
    current = latest_promoted(entries, before=r)
    incumbent = base if current is None else read_metrics(params.rounds.runs_dir, current)
    promoted, reason = decide_promotion(
        metrics["accuracy"][task], incumbent["accuracy"][task], params.rounds.promotion_tolerance, task
    )
    entries[r].promoted, entries[r].reason = promoted, reason
    write_registry(params.rounds.registry, entries)
    write_summary(params.rounds.runs_dir, params.rounds.registry)  # the headline follows the decision
    return entries[r]


def read_metrics(runs_dir: str | Path, r: int) -> dict:
    """Round r's metrics.json (0: the base model's)."""
    return json.loads(RoundPaths.of(runs_dir, r).metrics.read_text())


def run_rounds(
    params: Params,
    rounds: Iterable[int],
    run: Callable[[Stage, int], object],
    base: dict | None = None,
    judged: Callable[[int, dict, RoundEntry], None] | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    """Rounds `rounds` of the lineage, one after the other, each stage by `run(stage, r)`.

    With `base` (the base model's metrics), each round is judged against it after its
    evaluation and `judged(r, metrics, entry)` is told; without, promotion is off. `skip`
    names stages not to run (bench/sweep.py scores its arms itself).
    """
    for r in rounds:
        register(params, r, promotion=base is not None)
        for stage in round_stages(params):
            if stage.name not in skip:
                run(stage, r)
        if base is not None:
            metrics = read_metrics(params.rounds.runs_dir, r)
            entry = judge(params, r, metrics, base)
            if judged:
                judged(r, metrics, entry)
