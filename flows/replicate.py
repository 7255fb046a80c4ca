"""`make replicate`: Genius, its ablations and the base, over seeds, written up in docs/RESULTS.md.

The plan (configs/replicate.yaml, read by genius/stages/replicate.py) names the arms. This
flow builds the replicate's toy once, then runs every (seed, arm) as a chain of the ordinary
stages through the `genius` CLI (ingest -> foresight sampling -> pairs -> training ->
lm-eval), `workers` stages at a time, and finally writes the results table and plot. The
arms are not DVC pipelines: a stage whose last output exists is skipped (the stages write it
atomically, last), so a rerun after a crash or Ctrl-C picks up where it stopped.

    python -m flows.replicate                          # what `make replicate` runs
    python -m flows.replicate --plan my-plan.yaml
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from genius.config import load_params
from genius.stages import replicate as rep
from genius.stages.registry import RoundEntry, write_registry

PLAN = "configs/replicate.yaml"


def command(plan: rep.Plan, seed: int, arm: rep.Arm | None, stage: str, r: int | None = None) -> list[str]:
    """The `genius` CLI call that runs one stage of one (seed, arm)."""
    sets = [x for k, v in rep.overrides(plan, seed, arm).items() for x in ("-S", f"{k}={_yaml(v)}")]
    return [sys.executable, "-m", "genius", "--params", str(plan.params), *sets, stage, *(["--round", str(r)] if r is not None else [])]


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def prepare(plan: rep.Plan, seed: int, arm: rep.Arm, policy: str) -> None:
    """Write the arm's registry: round r starts from round r-1's checkpoint, round 1 from `policy`.

    Unconditionally chained, as in the paper: the replicate measures every round, it does not
    gate them (the product's flow promotes; see flows/genius.py).
    """
    d = rep.arm_dir(plan, seed, arm.name)
    d.mkdir(parents=True, exist_ok=True)
    entries = {1: RoundEntry(1, policy)}
    for r in range(2, arm.rounds + 1):
        entries[r] = RoundEntry(r, str(d / f"r{r - 1}" / "checkpoint"))
    write_registry(d / "rounds.yaml", entries)


def stage_done(plan: rep.Plan, seed: int, arm: rep.Arm | None, stage: str, r: int) -> bool:
    """Whether a stage's last output exists (the stages write it atomically, last)."""
    d = rep.arm_dir(plan, seed, arm.name if arm else "base") / ("base" if r == 0 else f"r{r}")
    last = {"ingest": "queries.jsonl", "sample": "sampling.json", "pairs": "pairs.json", "train": "train.json"}
    return (d / last.get(stage, "metrics.json")).exists()


def borrow_pairs(plan: rep.Plan, seed: int, arm: rep.Arm) -> None:
    """Copy the round-1 queries and pairs of `arm.pairs_from` into this arm's r1/."""
    src = rep.arm_dir(plan, seed, arm.pairs_from) / "r1"
    dst = rep.arm_dir(plan, seed, arm.name) / "r1"
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("ingest_report.json", "queries.jsonl", "sampling.json", "pairs.jsonl", "pairs.json"):
        shutil.copyfile(src / name, dst / name)


def run_stage(plan: rep.Plan, seed: int, arm: rep.Arm | None, stage: str, r: int, log=print) -> bool:
    """Run one stage through the CLI unless its output exists; True if it ran.

    The stage's output goes to `stages.log` in the arm's folder; a failure raises with its tail.
    """
    if stage_done(plan, seed, arm, stage, r):
        return False
    d = rep.arm_dir(plan, seed, arm.name if arm else "base")
    d.mkdir(parents=True, exist_ok=True)
    name = f"seed{seed}/{arm.name if arm else 'base'} {stage}" + (f" r{r}" if r else "")
    log(f"{name}: running")
    with open(d / "stages.log", "a") as out:
        out.write(f"\n==== {stage} r{r}\n")
        out.flush()
        done = subprocess.run(command(plan, seed, arm, stage, r), stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = (d / "stages.log").read_text().splitlines()[-15:]
        raise RuntimeError(f"{name} failed (exit {done.returncode}); {d / 'stages.log'} ends:\n" + "\n".join(tail))
    return True


def start_arm(plan: rep.Plan, seed: int, arm: rep.Arm) -> None:
    """Before an arm's first stage: its round registry and, for `pairs_from`, the borrowed pairs."""
    prepare(plan, seed, arm, str(load_params(plan.params, rep.overrides(plan, seed, arm)).model.path))
    if arm.pairs_from:
        borrow_pairs(plan, seed, arm)


def run_arm(plan: rep.Plan, seed: int, arm: rep.Arm, evaluate: bool = True, log=print) -> None:
    """All rounds of one (seed, arm), each stage skipped if already done."""
    start_arm(plan, seed, arm)
    for r in range(1, arm.rounds + 1):
        for name in ("train", "evaluate") if arm.pairs_from else rep.STAGES:
            if name != "evaluate" or evaluate:
                run_stage(plan, seed, arm, name, r, log)


@task(name="replicate-toy", retries=1)
def build_toy(plan_path: str) -> str:
    """The replicate's own toy (more test problems than the default's): built once, deterministic."""
    plan = rep.load_plan(plan_path)
    model = Path(load_params(plan.params, rep.overrides(plan, plan.seeds[0], None)).model.path)
    if not (model / "config.json").exists():
        subprocess.run(command(plan, plan.seeds[0], None, "toy"), check=True)
    return str(model)


@task(name="replicate-stage", task_run_name="seed{seed} {arm} {name} r{r}", retries=1, retry_delay_seconds=5)
def stage(plan_path: str, seed: int, arm: str, name: str, r: int) -> bool:
    """One stage of one (seed, arm) through the `genius` CLI; skipped when already done."""
    plan = rep.load_plan(plan_path)
    spec = None if arm == "base" else plan.arm(arm)
    first = "train" if spec and spec.pairs_from else "ingest"  # the arm's first stage
    if spec and (name, r) == (first, 1) and not stage_done(plan, seed, spec, name, r):
        start_arm(plan, seed, spec)
    return run_stage(plan, seed, spec, name, r, log=get_run_logger().info)


@flow(name="genius-replicate", log_prints=True)
def replicate(plan_path: str = PLAN) -> str:
    plan = rep.load_plan(plan_path)
    start = time.time()
    toy = build_toy.submit(plan_path)
    futures = []
    for seed in plan.seeds:
        futures.append(stage.submit(plan_path, seed, "base", "evaluate", 0, wait_for=[toy]))
        r1_pairs = {}
        for arm in sorted(plan.arms, key=lambda a: a.pairs_from is not None):  # pair sources first
            if arm.pairs_from:
                previous = r1_pairs[arm.pairs_from]
                for name in ("train", "evaluate"):
                    previous = stage.submit(plan_path, seed, arm.name, name, 1, wait_for=[previous])
                futures.append(previous)
                continue
            previous = toy
            for r in range(1, arm.rounds + 1):
                for name in rep.STAGES:
                    previous = stage.submit(plan_path, seed, arm.name, name, r, wait_for=[previous])
                    if (r, name) == (1, "pairs"):
                        r1_pairs[arm.name] = previous
            futures.append(previous)
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
