"""Scale-out: a round's foresight sampling split into shards that run at once, here or on Ray.

With `orchestration.sampling_shards: S` > 1 the flow `genius` runs the nested flow
`sample-shards` before the DVC stage sample@rK: one task per shard, each running
`genius sample --round K --shard i/S` (batches i, i+S, ... into runs/r<K>/samples/, see
genius/stages/shards.py). The stage then finds every batch done and only assembles samples.jsonl,
the same file a single process writes. A shard that fails is retried alone, and its rerun
skips the batches it finished.

The tasks run on the task runner `orchestration.task_runner` names: `local` (threads of the
flow's process, each shard a subprocess of this machine) or `ray` (prefect-ray's
RayTaskRunner: an existing cluster at `ray_address`, or a local one), each shard asking Ray
for `shard_cpus` CPUs and `shard_gpus` GPUs. On a cluster of several machines, every node
needs the project at the same path on a shared filesystem (the shards meet in runs/) and
a Prefect API it can reach (docs/SCALING.md).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

import tasks
from genius.config import OrchestrationConfig
from genius.stages.table import sharded

# Environment a Ray worker needs beside the code: the Hugging Face cache and offline
# switches, tokenizers' threads, and the Prefect API and its key (or it starts a server of its own).
FORWARDED = ("HF_", "TOKENIZERS_PARALLELISM", "PREFECT_API_")


def run_shards(cfg: OrchestrationConfig, r: int) -> list[str]:
    """Sample round r in `cfg.sampling_shards` shards on the configured task runner."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # The URL of the API this flow reports to, the temporary server of a bare
    # `python -m flows.genius` included, set where Prefect serializes its settings for
    # the tasks' workers: without it each Ray worker would start a server of its own.
    api = str(get_client(sync_client=True).api_url)
    resources = {"num_cpus": cfg.shard_cpus, "num_gpus": cfg.shard_gpus} if cfg.task_runner == "ray" else None
    with temporary_settings(updates={PREFECT_API_URL: api}):
        shards = sample_shards.with_options(task_runner=task_runner(cfg, api))
        return shards(r, cfg.sampling_shards, str(Path.cwd()), resources)


def task_runner(cfg: OrchestrationConfig, api_url: str):
    """The task runner `orchestration.task_runner` names, with room for every shard at once."""
    if cfg.task_runner == "local":
        return ThreadPoolTaskRunner(max_workers=cfg.sampling_shards)
    from prefect_ray import RayTaskRunner  # `pip install '.[ray]'`

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report to Anyscale unless asked for
    init = {"runtime_env": {"env_vars": worker_env(api_url)}, "include_dashboard": False}
    if cfg.ray_num_cpus is not None:
        init["num_cpus"] = cfg.ray_num_cpus
    return RayTaskRunner(address=cfg.ray_address, init_kwargs=init)


def worker_env(api_url: str) -> dict[str, str]:
    """Environment variables for Ray workers: FORWARDED ones, this API, and the project on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED)}
    root = str(Path(tasks.__file__).resolve().parents[1])  # `tasks` and `flows` are imported from here
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return env | {"PREFECT_API_URL": api_url}


def _run_name() -> str:
    from prefect.runtime import flow_run

    args = flow_run.parameters
    return f"{sharded().run_name(args['r'])} in {args['num_shards']} shards"


@flow(name="sample-shards", flow_run_name=_run_name)
def sample_shards(r: int, num_shards: int, project: str, resources: dict | None = None) -> list[str]:
    """One `genius sample --shard i/S` task per shard, all at once; fails if a shard still fails after its retry.

    `resources`: Ray resource requests per shard (num_cpus, num_gpus); None on the local runner.
    """
    if resources:
        from prefect_ray.context import remote_options

        requests = remote_options(**resources)
    else:
        requests = nullcontext()
    with requests:
        futures = tasks.sample_shard.map(r, range(num_shards), unmapped(num_shards), unmapped(project))
    return futures.result()
