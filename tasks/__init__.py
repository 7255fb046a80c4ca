"""Prefect tasks: each runs one stage of the stage table (genius/stages/table.py), named after it.

A stage of the project's lineage runs through DVC (`dvc repro` of its dvc.yaml stage), which
keeps the lineage whole after any flow run: dvc.lock records every stage, the DVC cache holds
every output, and `dvc repro` afterwards has nothing left to do. It also gives crash recovery:
a stage whose dependencies and outputs are unchanged is up to date, so a rerun after a crash
skips it and the task returns at once. A lineage outside dvc.yaml (`Outside`: a replicate
arm) runs its stages through the `genius` CLI instead, skipping a stage whose last output
exists. One flow runs per project at a time (flows/genius.py holds a lock), so its stages
never compete for a GPU; no Prefect concurrency limit is used (its slots leak when a flow is
killed). Sampling shards (`sample_shard`, flows/scale_out.py) run outside DVC, all at once:
each fills its share of the round's batches, and the stage sample@rK then assembles them.

Either way the stage runs in a subprocess whose lines reach the task's log as they come; its
progress lines (genius/progress.py) move a progress artifact on the run's page instead.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from prefect import get_run_logger, task

from genius.layout import RunsPaths
from genius.stages.lineage import Outside, read_metrics
from genius.stages.table import STAGES, Stage, evaluation, sharded
from tasks.streams import stream

logging.getLogger("dvc").propagate = False  # status and push run in process: DVC's own handlers print once

# `dvc repro` of one stage, without the "git add dvc.lock" and autostage hints it prints after each
# (noise in a flow, which never commits: README says what to commit)
DVC_REPRO = (
    "import logging, sys; logging.getLogger('dvc.repo.scm_context').setLevel(logging.WARNING); "
    "from dvc.cli import main; sys.exit(main(['repro', '--single-item', sys.argv[1]]))"
)


def reproduce(stage: str) -> bool:
    """Run one DVC stage unless it is up to date; True if it ran. Its lines reach the task's log."""
    lines = stream([sys.executable, "-c", DVC_REPRO, stage], stage)
    ran = any(line.startswith(f"Running stage '{stage}'") for line in lines)
    get_run_logger().info(f"{stage}: {'done' if ran else 'up to date, skipped'}")
    return ran


def run_outside(stage: Stage, r: int | None, lineage: Outside) -> bool:
    """Run a stage of a lineage outside dvc.yaml through the CLI unless its last output exists; True if it ran."""
    params = lineage.load()
    if stage.done(params, r):
        return False
    name = f"{lineage.label} {stage.run_name(r)}".strip()
    get_run_logger().info(f"{name}: running")
    stream(lineage.command(stage, r), name, log_file=RunsPaths(Path(params.rounds.runs_dir)).stages_log)
    return True


def run_stage(stage: Stage, r: int | None = None, lineage: Outside | None = None) -> bool:
    return reproduce(stage.id(r)) if lineage is None else run_outside(stage, r, lineage)


def _run_name(stage: Stage):
    def name() -> str:
        from prefect.runtime import task_run

        args = task_run.parameters
        label = args["lineage"].label + " " if args.get("lineage") else ""
        return label + stage.run_name(args.get("r"))

    return name


def stage_task(name: str):
    """The Prefect task of stage `name`: its name, retries and run names from the table."""
    stage = STAGES[name]

    @task(name=stage.task, task_run_name=_run_name(stage), retries=stage.retries, retry_delay_seconds=stage.retry_delay_seconds)
    def run(r: int | None = None, lineage: Outside | None = None) -> bool:
        return run_stage(stage, r, lineage)

    return run


TASKS = {name: stage_task(name) for name in STAGES}  # the flows run stages through these


@task(name=evaluation(1).task, task_run_name=_run_name(evaluation(1)), retries=1, retry_delay_seconds=10)
def evaluate(r: int, runs_dir: str, lineage: Outside | None = None) -> dict:
    """Score round r (0: the base model); returns its metrics.json."""
    run_stage(evaluation(r), r, lineage)
    return read_metrics(runs_dir, r)


def up_to_date(stage: str) -> bool:
    """True if DVC would skip the stage: its deps, params and outs are as dvc.lock records."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        return not repo.status(targets=[stage])


def stale_stages() -> set[str]:
    """Stages DVC would rerun (changed or never run), from one status call over the whole pipeline."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        return set(repo.status())


def _shard_run_name() -> str:
    from prefect.runtime import task_run

    args = task_run.parameters
    return f"{sharded().run_name(args['r'])} shard {args['shard']}/{args['num_shards']}"


@task(name="sample-shard", task_run_name=_shard_run_name, retries=1, retry_delay_seconds=10)
def sample_shard(r: int, shard: int, num_shards: int, project: str) -> str:
    """Shard `shard` of round r's sampling, as a subprocess: `genius sample --round r --shard shard/num_shards`
    (the stage the table marks `shards`).

    A subprocess, not a call: a crash or kill of the engine fails this task (and its retry
    resumes at the shard's last finished batch) instead of taking the worker down; its GPU
    memory is freed when it exits; it sees the GPUs Ray gave the worker (CUDA_VISIBLE_DEVICES).
    Shards are meant to run at once, each on the resources Ray gives it.
    """
    cmd = [sys.executable, "-m", "genius", *sharded().argv(r), "--shard", f"{shard}/{num_shards}"]
    name = f"{sharded().run_name(r)} shard {shard}/{num_shards}"
    lines = stream(cmd, name, cwd=project)  # streamed: a shard of a paper-scale round runs for hours
    return lines[-1] if lines else ""


@task(name="dvc-push", retries=2, retry_delay_seconds=10)
def push() -> int:
    """Send the DVC cache's new outputs to the default remote, when one is configured."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        if not repo.config.get("core", {}).get("remote"):
            get_run_logger().info("no default DVC remote: outputs stay in the local cache (.dvc/cache)")
            return 0
        pushed = repo.push()
    get_run_logger().info(f"pushed {pushed} files to the DVC remote")
    return pushed
