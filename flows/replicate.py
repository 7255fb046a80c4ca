"""`make replicate`: Genius, its ablations and the base, over seeds, written up in docs/RESULTS.md.

The plan (configs/replicate.yaml) names the arms; genius/stages/replicate.py says how each runs.
This flow builds the replicate's toy once, then runs every (seed, arm) as a chain of the
ordinary stages (ingest -> foresight sampling -> pairs -> training -> lm-eval), `workers`
stages at a time, and finally writes the results table and plot. A stage whose output
exists is skipped, so a rerun after a crash or Ctrl-C picks up where it stopped.

    python -m flows.replicate                          # what `make replicate` runs
    python -m flows.replicate --plan my-plan.yaml
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from genius.stages import replicate as rep
from genius.config import load_params

PLAN = "configs/replicate.yaml"


@task(name="replicate-toy", retries=1)
def build_toy(plan_path: str) -> str:
    """The replicate's own toy (more test problems than the default's): built once, deterministic."""
    plan = rep.load_plan(plan_path)
    model = Path(load_params(plan.params, rep.overrides(plan, plan.seeds[0], None)).model.path)
    if not (model / "config.json").exists():
        subprocess.run(rep.command(plan, plan.seeds[0], None, "toy"), check=True)
    return str(model)


@task(name="replicate-stage", task_run_name="seed{seed} {arm} {name} r{r}", retries=1, retry_delay_seconds=5)
def stage(plan_path: str, seed: int, arm: str, name: str, r: int) -> bool:
    """One stage of one (seed, arm) through the `genius` CLI; skipped when already done."""
    plan = rep.load_plan(plan_path)
    spec = None if arm == "base" else plan.arm(arm)
    first = "train" if spec and spec.pairs_from else "ingest"  # the arm's first stage
    if spec and (name, r) == (first, 1) and not rep.stage_done(plan, seed, spec, name, r):
        rep.start_arm(plan, seed, spec)
    return rep.run_stage(plan, seed, spec, name, r, log=get_run_logger().info)


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
