"""`make replicate`: Genius, its ablations and the base, over seeds, written up in docs/RESULTS.md.

The plan (configs/replicate.yaml, read by genius/stages/replicate.py) names the arms. Every
(seed, arm) is a lineage of its own, with its registry and runs folder under
`<out_dir>/seed<s>/<arm>/` (`rounds.registry`, `rounds.runs_dir`), run by the round loop the
flow `genius` runs (genius/stages/lineage.py) with promotion off, as in the paper: round r
starts from round r-1. Its stages are the ordinary stages of the stage table, as Prefect tasks
(tasks/) through the `genius` CLI: a lineage outside dvc.yaml, where a stage whose last output
exists is skipped, so a rerun after a crash or Ctrl-C picks up where it stopped. An arm with
`pairs_from` starts from a copy of that arm's round-1 outputs before training, so its round 1
only trains and evaluates. This file keeps the plan's lineages and the results table;
`workers` lineages run at once.

    python -m flows.replicate                          # what `make replicate` runs
    python -m flows.replicate --plan my-plan.yaml
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

import tasks
from genius.config import load_params
from genius.layout import RoundPaths
from genius.stages import replicate as rep
from genius.stages.lineage import Outside, register, run_rounds
from genius.stages.table import NONE, Stage, evaluation, for_command, round_stages, start_stages, upstream

PLAN = "configs/replicate.yaml"


def lineage(plan: rep.Plan, seed: int, arm: rep.Arm | None) -> Outside:
    """How the stages of one (seed, arm) run: the plan's params file and the arm's overrides (None: the base)."""
    sets = tuple(f"{k}={_yaml(v)}" for k, v in rep.overrides(plan, seed, arm).items())
    return Outside(str(plan.params), sets, label=f"seed{seed}/{arm.name if arm else 'base'}")


def command(plan: rep.Plan, seed: int, arm: rep.Arm | None, stage: str, r: int | None = None) -> list[str]:
    """The `genius` CLI call that runs one stage of one (seed, arm)."""
    return lineage(plan, seed, arm).command(for_command(stage, r), r)


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def prepare(plan: rep.Plan, seed: int, arm: rep.Arm, policy: str) -> None:
    """Register the arm's rounds, unconditionally chained: round 1 from `policy`, round r from round r-1."""
    rep.arm_dir(plan, seed, arm.name).mkdir(parents=True, exist_ok=True)
    params = load_params(plan.params, rep.overrides(plan, seed, arm) | {"model.path": policy})
    for r in range(1, arm.rounds + 1):
        register(params, r, promotion=False)


def borrow_pairs(plan: rep.Plan, seed: int, arm: rep.Arm) -> None:
    """Copy what the round-1 stages before training wrote in `arm.pairs_from` into this arm's round 1:
    those stages are then done here, and this arm trains on the same pairs."""
    params = load_params(plan.params, rep.overrides(plan, seed, arm))
    src, dst = (RoundPaths.of(rep.arm_dir(plan, seed, name), 1) for name in (arm.pairs_from, arm.name))
    dst.dir.mkdir(parents=True, exist_ok=True)
    for stage in upstream(params, "pairs"):
        for name in stage.writes:
            shutil.copyfile(getattr(src, name), getattr(dst, name))


def trains_on_pairs(params) -> Stage:
    """The stage that trains on the round's pairs: an arm with `pairs_from` borrows until it is done."""
    return next(s for s in round_stages(params) if "pairs" in s.reads)


@task(name="replicate-lineage", task_run_name="seed{seed} {arm}")  # no retries of its own: its stages retry
def run_lineage(plan_path: str, seed: int, arm: str) -> None:
    """Every round of one (seed, arm), stage by stage (`base`: the base model's evaluation)."""
    plan = rep.load_plan(plan_path)
    spec = None if arm == "base" else plan.arm(arm)
    outside = lineage(plan, seed, spec)
    params = load_params(plan.params, rep.overrides(plan, seed, spec))
    if spec is None:
        tasks.TASKS[evaluation(0).name](0, outside)
        return
    prepare(plan, seed, spec, params.model.path)
    if spec.pairs_from and not trains_on_pairs(params).done(params, 1):
        borrow_pairs(plan, seed, spec)
    run_rounds(params, range(1, spec.rounds + 1), lambda stage, r: tasks.TASKS[stage.name](r, outside))


@task(name="replicate-inputs")
def build_inputs(plan_path: str) -> None:
    """What every lineage reads, built once (the embedded toy, when the plan's params enable it): deterministic."""
    plan = rep.load_plan(plan_path)
    outside = lineage(plan, plan.seeds[0], None)
    for stage in start_stages(outside.load()):
        if stage.rounds == NONE:
            tasks.TASKS[stage.name](None, outside)


@flow(name="genius-replicate", log_prints=True)
def replicate(plan_path: str = PLAN) -> str:
    plan = rep.load_plan(plan_path)
    start = time.time()
    inputs = build_inputs.submit(plan_path)
    lineages: dict[tuple[int, str], Any] = {}
    for arm in sorted(plan.arms, key=lambda a: a.pairs_from is not None):  # pair sources first
        for seed in plan.seeds:
            after = [lineages[(seed, arm.pairs_from)]] if arm.pairs_from else [inputs]
            lineages[(seed, arm.name)] = run_lineage.submit(plan_path, seed, arm.name, wait_for=after)
    for seed in plan.seeds:
        lineages[(seed, "base")] = run_lineage.submit(plan_path, seed, "base", wait_for=[inputs])
    futures = list(lineages.values())
    wait(futures)
    failed = [f for f in futures if not f.state.is_completed()]  # failed, or never ran: upstream failed
    text = rep.write_results(plan, time.time() - start, command=" ".join(["make replicate"] if plan_path == PLAN else ["python -m flows.replicate --plan", plan_path]))
    create_markdown_artifact(key="genius-replicate", markdown=text, description="Genius vs ablations over seeds")
    if failed:
        raise RuntimeError(f"{len(failed)} arm(s) failed; the others' results are in {plan.results}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description="Genius, its ablations and the base over seeds -> docs/RESULTS.md")
    parser.add_argument("--plan", default=PLAN)
    args = parser.parse_args()
    plan = rep.load_plan(args.plan)  # a bad plan fails here, before Prefect starts
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    runner = ThreadPoolTaskRunner(max_workers=plan.workers)  # each stage is a one-thread subprocess
    print(replicate.with_options(task_runner=runner)(args.plan))


if __name__ == "__main__":
    main()
