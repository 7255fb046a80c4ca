"""Prefect tasks: each runs one stage of the DVC pipeline (dvc.yaml) through DVC.

Running stages through DVC keeps the lineage whole after any flow run: dvc.lock records
every stage, the DVC cache holds every output, and `dvc repro` afterwards has nothing left to
do. It also gives crash recovery: a stage whose dependencies and outputs are unchanged is up
to date, so a rerun after a crash skips it and the task returns at once. One flow runs per
project at a time (flows/genius.py holds a lock), so its stages never compete for a GPU; no
Prefect concurrency limit is used (its slots leak when a flow is killed). Sampling shards (`sample_shard`, flows/scale_out.py) run outside DVC, all at once: each
fills its share of the round's batches, and the DVC stage sample@rK then assembles them.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import deque
from pathlib import Path

from prefect import get_run_logger, task

# DVC logs through handlers of its own: propagated to Prefect's console handler too, every
# line printed twice. Its per-stage "git add dvc.lock" and autostage hints are noise in a
# flow, which never commits (README says what to commit).
logging.getLogger("dvc").propagate = False
logging.getLogger("dvc.repo.scm_context").setLevel(logging.WARNING)


def reproduce(stage: str) -> bool:
    """Run one DVC stage unless it is up to date; True if it ran."""
    from dvc.repo import Repo

    with Repo(".") as repo:  # reopened per stage: the flow may have added rounds to rounds.yaml
        ran = bool(repo.reproduce(stage, single_item=True))
    get_run_logger().info(f"{stage}: {'done' if ran else 'up to date, skipped'}")
    return ran


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


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@task(name="build-toy", retries=1)
def build_toy() -> bool:
    return reproduce("toy")


@task(name="ingest", task_run_name="ingest r{r}", retries=2, retry_delay_seconds=5)
def ingest(r: int) -> bool:
    return reproduce(f"ingest@r{r}")


@task(name="foresight-sample", task_run_name="sample r{r}", retries=1, retry_delay_seconds=10)
def sample(r: int) -> bool:
    return reproduce(f"sample@r{r}")


@task(
    name="sample-shard",
    task_run_name="sample r{r} shard {shard}/{num_shards}",
    retries=1,
    retry_delay_seconds=10,
)
def sample_shard(r: int, shard: int, num_shards: int, project: str) -> str:
    """Shard `shard` of round r's sampling, as a subprocess: `genius sample --round r --shard shard/num_shards`.

    A subprocess, not a call: a crash or kill of the engine fails this task (and its retry
    resumes at the shard's last finished batch) instead of taking the worker down; its GPU
    memory is freed when it exits; it sees the GPUs Ray gave the worker (CUDA_VISIBLE_DEVICES).
    Shards are meant to run at once, each on the resources Ray gives it.
    """
    log = get_run_logger()
    cmd = [sys.executable, "-m", "genius", "sample", "--round", str(r), "--shard", f"{shard}/{num_shards}"]
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: deque[str] = deque(maxlen=20)
    for line in proc.stdout:  # streamed: a shard of a paper-scale round runs for hours
        tail.append(line.rstrip())
        log.info(tail[-1])
    if proc.wait():
        raise RuntimeError(f"{' '.join(cmd[1:])} exited with {proc.returncode}: " + "\n".join(tail))
    return tail[-1] if tail else ""


@task(name="build-pairs", task_run_name="pairs r{r}", retries=1)
def build_pairs(r: int) -> bool:
    return reproduce(f"pairs@r{r}")


@task(name="aco-train", task_run_name="train r{r}", retries=1, retry_delay_seconds=10)
def train(r: int) -> bool:
    return reproduce(f"train@r{r}")


@task(name="evaluate", task_run_name="evaluate r{r}", retries=1, retry_delay_seconds=10)
def evaluate(r: int, runs_dir: str) -> dict:
    """Score round r (0: the base model); returns its metrics.json."""
    reproduce("evaluate_base" if r == 0 else f"evaluate@r{r}")
    return _json(Path(runs_dir) / ("base" if r == 0 else f"r{r}") / "metrics.json")


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


@task(name="gc")
def gc(params) -> None:
    """Retire the rounds `rounds.keep` does not keep and free their disk (genius/stages/retention.py),
    after the push; the flow holds the project's lock already."""
    from genius.stages.retention import collect

    collect(params, get_run_logger().info, hold_lock=False)
