"""Prefect tasks: each wraps one stage of `genius.rounds`, adding retries and a name.

The library does the work; a task only decides how Prefect runs it. Sampling, training and
evaluation hold a model in memory, so they get no retries on failure by default: a real
error there should surface, not repeat.
"""

from __future__ import annotations

from dataclasses import asdict

from prefect import get_run_logger, task

from genius import rounds
from genius.config import Params
from genius.tracking import wandb_run


def _log():
    logger = get_run_logger()
    return logger.info


@task(name="build-toy")
def build_toy(params: Params) -> str:
    """Build the embedded default, unless runs/toy already holds this exact build."""
    if rounds.toy_is_built(params):
        _log()(f"toy already built in {params.toy.out_dir} with these params")
    else:
        rounds.run_toy(params, _log())
    return params.model.path


@task(name="ingest", retries=2, retry_delay_seconds=1)
def ingest(params: Params, r: int) -> dict:
    return rounds.run_ingest(params, r, _log())


@task(name="foresight-sample")
def sample(params: Params, r: int) -> dict:
    return rounds.run_sample(params, r, _log())


@task(name="build-pairs")
def build_pairs(params: Params, r: int) -> dict:
    return rounds.run_pairs(params, r, _log())


@task(name="aco-train")
def train(params: Params, r: int) -> dict:
    with wandb_run(params.tracking, f"round-{r}", asdict(params), params.rounds.runs_dir) as track:
        return rounds.run_train(params, r, _log(), track)


@task(name="evaluate")
def evaluate(params: Params, r: int) -> dict:
    return rounds.run_evaluate(params, r, _log())


@task(name="report")
def report(params: Params) -> str:
    from genius.report import write_report

    return write_report(params.rounds.runs_dir, params.rounds.num_rounds)
