"""The thin `main` of the stages whose command line does more than call the stage's function.

`genius sample --shard I/S` samples one shard; `genius train` may hand itself to `accelerate
launch` and logs to wandb; `genius evaluate` logs its accuracies to wandb. Each takes the
parsed command line and returns an exit code (genius/stages/table.py names them).
"""

from __future__ import annotations

import argparse
import sys

from genius.config import Params
from genius.stages import rounds
from genius.stages.table import Log


def sample(params: Params, args: argparse.Namespace, log: Log) -> int:
    if args.shard:
        rounds.run_sample_shard(params, args.round, *args.shard, log)
    else:
        rounds.run_sample(params, args.round, log)
    return 0


def train(params: Params, args: argparse.Namespace, log: Log) -> int:
    from genius.tracking import wandb_run
    from genius.training import launch
    from genius.training.recipe import TrainingDiverged

    if params.training.launch == "accelerate" and not launch.launched():
        return launch.run_accelerate(params.training, args.params, args.set, args.round, args.machine_rank)
    try:
        with wandb_run(params.tracking, f"round-{args.round}", params.model_dump(), params.rounds.runs_dir) as track:
            rounds.run_train(params, args.round, log, track)
    except TrainingDiverged as e:
        print(f"genius train: error: round {args.round}: {e}", file=sys.stderr)
        return 1
    return 0


def evaluate(params: Params, args: argparse.Namespace, log: Log) -> int:
    from genius.tracking import wandb_run

    name = "base-eval" if args.round == 0 else f"round-{args.round}-eval"
    metrics = rounds.run_evaluate(params, args.round, log)
    with wandb_run(params.tracking, name, params.model_dump(), params.rounds.runs_dir) as track:
        if track:
            track(rounds.eval_row(metrics), args.round)
    return 0
