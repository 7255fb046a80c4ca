"""The stage table: every stage of the pipeline declared once, as DVC's example-get-started does.

A stage is a function of (params, round) in genius/stages/rounds.py that reads files of its
round and writes others, named here as `RoundPaths` fields (genius/layout.py), with the params
sections that decide its outputs and the library code it runs. Everything else is derived:

- dvc.yaml's stages, deps, params and outs (genius/stages/pipeline.py renders them);
- the `genius <stage>` subcommands and their options (genius/stages/cli.py dispatches here);
- the Prefect tasks' names and the DVC stage each runs (tasks/);
- which stages a round has, in order (`round_stages`), for the flow and for a lineage run
  without DVC, which skips a stage whose last output exists (`done`): a stage writes its
  outputs in the order listed, atomically, so the last one is its completion marker.

Adding or renaming a stage is an edit of this table and of its function; nothing else names it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from genius.config import ConfigError, GrpoConfig
from genius.io import hold
from genius.layout import RoundPaths, round_name

Log = Callable[[str], None]
EACH, BASE, NONE = "each", "base", "none"  # a stage per registered round, one for the base model (round 0), none


def shard_arg(text: str) -> tuple[int, int]:
    """`I/S` -> (I, S), with 0 <= I < S."""
    i, sep, s = text.partition("/")
    if not (sep and i.isdigit() and s.isdigit() and 0 <= int(i) < int(s)):
        raise argparse.ArgumentTypeError(f"expected I/S with 0 <= I < S, e.g. 1/4; got {text!r}")
    return int(i), int(s)


@dataclass(frozen=True)
class Stage:
    name: str  # dvc.yaml's stage (`sample@r1` per round), the Prefect task run's name
    function: str  # "module:function", called as function(params, r, log) (a stage without a round: params, log)
    task: str  # the Prefect task's name
    help: str  # `genius --help`
    rounds: Literal["each", "base", "none"] = EACH
    cli: str = ""  # its `genius` subcommand; default: the name
    reads: tuple[str, ...] = ()  # RoundPaths fields of its round it reads
    writes: tuple[str, ...] = ()  # RoundPaths fields it writes, in writing order: the last is its completion marker
    policy: bool = False  # it reads the policy the registry gives the round (DVC: ${item.policy})
    inputs: Callable[[Any], list[str | None]] = lambda params: []  # files the params name; the local ones are deps
    outputs: Callable[[Any], list[str]] = lambda params: []  # folders the params name, for a stage without a round
    params: tuple[str, ...] = ()  # params sections whose keys decide its outputs (less SPEED_ONLY)
    code: tuple[str, ...] = ()  # the library code it runs: DVC deps (with SHARED_CODE, which every stage runs)
    # its statistics, for the round's metrics.json: (key there, RoundPaths field, the keys kept (lists
    # counted); () keeps the file whole)
    stats: tuple[str, str, tuple[str, ...]] | None = None
    round_stats: bool = False  # it reads the statistics of every stage of its round (evaluate: into metrics.json)
    enabled: Callable[[Any], bool] = lambda params: True  # in the pipeline at all
    shards: bool = False  # can be split into shards that run at once (orchestration.sampling_shards)
    options: tuple[tuple[tuple[str, ...], dict], ...] = ()  # extra `genius <cli>` options: (flags, add_argument kwargs)
    main: str | None = None  # "module:function"(params, args, log) -> exit code, when the CLI needs more than `function`
    retries: int = 1
    retry_delay_seconds: float = 10
    command: str = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "command", self.cli or self.name)

    def id(self, r: int | str | None = None) -> str:
        """Its DVC stage: `sample@r3` for a stage of each round, the name otherwise."""
        return f"{self.name}@{round_name(r)}" if self.rounds == EACH else self.name

    def run_name(self, r: int | None = None) -> str:
        """Its Prefect task run's name: `sample r3`."""
        return f"{self.name} {round_name(r)}" if self.rounds == EACH else self.name

    def argv(self, r: int | str | None = None) -> list[str]:
        """Its `genius` command line, after the global options."""
        rounds = {EACH: ["--round", str(r)], BASE: ["--round", "0"], NONE: []}[self.rounds]
        return [self.command, *rounds]

    def paths(self, runs_dir: str | Path, r: int) -> RoundPaths:
        return RoundPaths.of(runs_dir, 0 if self.rounds == BASE else r)

    def outs(self, runs_dir: str | Path, r: int | None) -> list[Path]:
        """What it writes for round r, in writing order (a stage without a round: nothing under RoundPaths)."""
        if self.rounds == NONE:
            return []
        paths = self.paths(runs_dir, r)
        return [getattr(paths, name) for name in self.writes]

    def done(self, params, r: int | None) -> bool:
        """Its last output exists: the stage ran to its end (outputs are written atomically, in order)."""
        outs = self.outs(params.rounds.runs_dir, r) or [Path(p) for p in self.outputs(params)]
        return bool(outs) and outs[-1].exists()

    def call(self, params, args: argparse.Namespace, log: Log) -> int:
        """Run it from the CLI, holding its round (io.hold: a second process on the round is refused, naming
        the first): its `main`, or its function on --round."""
        r = getattr(args, "round", None)
        mode = _lock_mode(args) if self.rounds != NONE else None  # a stage without a round holds none
        holder = " ".join(["genius", *self.argv(r)])
        held = hold(self.paths(params.rounds.runs_dir, r).lock, holder, mode == "shared") if mode else nullcontext()
        with held:
            if self.main:
                return resolve(self.main)(params, args, log) or 0
            function = resolve(self.function)
            function(params, log) if self.rounds == NONE else function(params, r, log)
            return 0


def _lock_mode(args: argparse.Namespace) -> str | None:
    """How a stage's process holds its round: alone, or `shared` with the other shards of its sampling; not
    at all as one process of a multi-process training run (the launched ones, the other nodes')."""
    if os.environ.get("GENIUS_LAUNCHED") == "1" or getattr(args, "machine_rank", 0):  # genius.training.launch
        return None
    return "shared" if getattr(args, "shard", None) else "exclusive"


def resolve(ref: str) -> Callable:
    """The function a "module:function" reference names, imported on use."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)  # on use: `genius --help` stays instant


def _evaluation_files(params) -> list[str | None]:
    return [params.eval.test_path, params.eval.diagnostics_path, params.eval.include_path]


def _base(params) -> list[str | None]:
    """The base model, read by every stage that loads a round's policy: a LoRA round's policy is the
    base plus the adapters of its chain (genius/engines/lineage.py)."""
    return [params.model.path]


STAGE_FUNCTIONS = "genius.stages.rounds"
# The code every stage runs beside its own, listed in each stage's DVC deps: the installed environment
# (`make install` installs exactly the lock) and the CPU arithmetic genius pins before torch loads. A new
# lock or arithmetic shows every stage as changed in `dvc status`: a lineage never mixes two (issue 21).
SHARED_CODE = ("requirements/lock.txt", "genius/numerics.py")
STAGES: dict[str, Stage] = {
    s.name: s
    for s in [
        Stage(
            "toy", f"{STAGE_FUNCTIONS}:run_toy", task="build-toy", rounds=NONE, help="build the embedded default model, query pool and test set",
            outputs=lambda p: [p.toy.out_dir], params=("toy",),
            code=("genius/toy", "genius/engines/transformers_engine.py"),  # the engine decodes pre-training's dev checks
            enabled=lambda p: p.toy.enabled,
            retry_delay_seconds=0,
        ),
        Stage(
            "evaluate_base", f"{STAGE_FUNCTIONS}:run_evaluate", task="evaluate", rounds=BASE, cli="evaluate", help="lm-eval on the base model",
            inputs=lambda p: [p.model.path, *_evaluation_files(p)], writes=("eval_samples", "diagnostics", "metrics"),
            params=("model", "eval", "sampling"),  # sampling: the diagnostics re-run the round's foresight sampling
            code=("genius/evaluation",), main="genius.stages.mains:evaluate",
        ),
        Stage(
            "ingest", f"{STAGE_FUNCTIONS}:run_ingest", task="ingest", help="take round R's query slice",
            inputs=lambda p: list(p.queries.paths), writes=("ingest_report", "queries"), params=("queries",),
            code=("genius/data",), stats=("ingest", "ingest_report", ("round_size", "kept", "dropped")), retries=2, retry_delay_seconds=5,
        ),
        Stage(
            "sample", f"{STAGE_FUNCTIONS}:run_sample", task="foresight-sample", help="foresight re-sampling with round R's policy",
            policy=True, reads=("queries",), inputs=_base, writes=("samples", "sampling"), params=("model", "sampling"),
            code=("genius/algorithm", "genius/engines", "genius/stages/shards.py"), stats=("sampling", "sampling", ()), shards=True,
            options=((("--shard",), {"type": shard_arg, "metavar": "I/S", "help": "only shard I of S; `genius sample` assembles"}),),
            main="genius.stages.mains:sample",
        ),
        Stage(
            "pairs", f"{STAGE_FUNCTIONS}:run_pairs", task="build-pairs", help="the round's training data by its method (pairs or SFT targets) and their statistics",
            reads=("samples",), writes=("pairs", "pair_stats"),
            code=("genius/algorithm/records.py", "genius/stages/tools.py"), stats=("pairs", "pair_stats", ()), retry_delay_seconds=0,
        ),
        Stage(
            "train", f"{STAGE_FUNCTIONS}:run_train", task="train",
            help="train round R's policy by its method: on the round's pairs (ACO or the loss it takes), or online (GRPO)",
            policy=True, reads=("pairs",), inputs=_base, writes=("checkpoint", "train_steps", "training"), params=("model", "training"),
            code=("genius/training", "genius/algorithm/losses.py", "genius/algorithm/records.py"), stats=("training", "training", ()),
            options=((("--machine-rank",), {"type": int, "default": 0, "help": "with training.num_machines > 1: this node's rank"}),),
            main="genius.stages.mains:train",
        ),
        Stage(
            "evaluate", f"{STAGE_FUNCTIONS}:run_evaluate", task="evaluate", help="lm-eval on round R's checkpoint (R = 0: the base model)",
            reads=("checkpoint",), inputs=lambda p: [*_base(p), *_evaluation_files(p)], writes=("eval_samples", "diagnostics", "metrics"),
            params=("model", "eval", "sampling"), code=("genius/evaluation",), round_stats=True,
            main="genius.stages.mains:evaluate",
        ),
    ]
}
# ---------------------------------------------------------------------------- methods
# How a round learns from the policy's own samples is a method (`method.name`, README
# "Methods"): a row of ROUNDS. Its stages run in order; the sample stage hands its sampler to
# the shard store, the pairs stage calls its `build`, and the train stage refuses a
# `training.loss` that cannot train what `build` writes. An online method (GRPO on a reward)
# has no sample or pairs stage: its train stage samples and updates on the round's queries.
# Adding a method is its module (a sampler, or one of these two, and a `build`; or a reward),
# its name in MethodConfig, a row here, a test.

ROUND = ("ingest", "sample", "pairs", "train", "evaluate")
ONLINE = ("ingest", "train", "evaluate")  # online RL: train samples from the policy as it learns
PAIR_LOSSES = ("aco", "dpo", "ipo", "simpo", "ropo", "sft")  # losses of any preference pair (sft: its positive)
FORESIGHT = "genius.algorithm.sampling:batch_sampler"  # stepwise foresight re-sampling (`sampling`)
RESPONSES = "genius.algorithm.responses:batch_sampler"  # n whole responses per query (`method.samples`)
RESPONSE_KEYS = ("method.samples", "method.temperature", "method.max_new_tokens")  # what RESPONSES reads
ANSWER_KEYS = ("method.answer", "method.answers_path")


@dataclass(frozen=True)
class Method:
    """A row of ROUNDS: one method's round."""

    build: str | None  # "module:function"(samples, params, tools) -> (records, statistics): the pairs stage's work
    losses: tuple[str, ...]  # the training.loss values that can train what `build` writes, its own first
    sampler: str | None = FORESIGHT  # "module:function"(params, log) -> the sampler the sample stage hands the shard store
    labels: bool = False  # it reads gold answers (method.answers_path): a positive control, never a result
    params: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per stage: the method's own keys it reads (DVC params)
    code: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per stage: the method's code it runs (DVC deps)
    stages: tuple[str, ...] = ROUND  # the round's stages, in order (online RL: ingest, train, evaluate)
    reads: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per stage: the round files it reads instead of its own
    reward: str | None = None  # online RL: the reward GRPO maximises (genius.algorithm.rewards); train samples and updates


def _responses(build: str, losses: tuple[str, ...], module: str, pairs_keys: tuple[str, ...] = (), labels: bool = False) -> Method:
    """A method that chooses among n whole responses per query."""
    code = (f"genius/algorithm/{module}.py", "genius/algorithm/responses.py", "genius/data/answers.py")
    params = {"sample": RESPONSE_KEYS, "pairs": ("method.name", *pairs_keys)}
    return Method(build, losses, RESPONSES, labels, params, {"pairs": code})


def _online(reward: str) -> Method:
    """GRPO on `reward`: the train stage samples G responses per query of the round and updates (genius/training/grpo.py).

    The vote is measured under every reward (majority agreement), so the answer reader is a
    param of each; method.answers_path, when set, only measures how often the majority is right.
    """
    keys = ("method.name", "method.answer", "method.answers_path", *(f"grpo.{k}" for k in GrpoConfig.model_fields))
    code = ("genius/algorithm/rewards.py", "genius/data/answers.py")
    return Method(
        None, (), None, params={"train": keys}, code={"train": code}, stages=ONLINE, reads={"train": ("queries",)}, reward=reward
    )


ROUNDS: dict[str, Method] = {
    "genius": Method("genius.algorithm.pairs:build", PAIR_LOSSES, params={"pairs": ("method.name",)}, code={"pairs": ("genius/algorithm/pairs.py",)}),
    "self_consistency": _responses(
        "genius.algorithm.self_consistency:build", ("scpo", *PAIR_LOSSES), "self_consistency", ("method.answer", "method.min_vote_share")
    ),
    "lmsi": _responses("genius.algorithm.lmsi:build", ("sft",), "lmsi", ("method.answer", "method.min_vote_share")),
    "self_certainty": _responses("genius.algorithm.self_certainty:build", ("dpo", *PAIR_LOSSES), "self_certainty"),
    "self_rewarding": _responses(
        "genius.algorithm.self_rewarding:build", ("dpo", *PAIR_LOSSES), "self_rewarding",
        ("method.judgements", "method.judge_temperature", "method.judge_max_new_tokens"),
    ),  # fmt: skip
    "oracle_pairs": Method(
        "genius.algorithm.controls:build_oracle_pairs", PAIR_LOSSES, labels=True, params={"pairs": ("method.name", *ANSWER_KEYS)},
        code={"pairs": ("genius/algorithm/controls.py", "genius/data/answers.py")},
    ),  # fmt: skip
    "rft": _responses("genius.algorithm.controls:build_rft", ("sft",), "controls", ANSWER_KEYS, labels=True),
    "ttrl": _online("majority_vote"),  # TTRL, arXiv 2504.16084
    "intuitor": _online("self_certainty"),  # INTUITOR, arXiv 2505.19590
    "rent": _online("neg_entropy"),  # RENT, arXiv 2505.22660
}


def method(params) -> Method:
    """The row of the method this lineage runs (`method.name`)."""
    return ROUNDS[params.method.name]


def check_method(params) -> None:
    """Refuse, in one line naming the keys, a `training.loss` the method's data cannot train, an online
    method without TRL, or a label-using control without its answers: before any stage of the round runs."""
    m, name = method(params), params.method.name
    if m.losses and params.training.loss not in m.losses:  # online methods train on their reward, not a loss on pairs
        raise ConfigError(
            f"training.loss: {params.training.loss} cannot train what method.name {name} writes: set training.loss: "
            f"{m.losses[0]}" + (f" (or one of {', '.join(m.losses[1:])})" if len(m.losses) > 1 else "")
        )
    if m.reward and importlib.util.find_spec("trl") is None:
        raise ConfigError(f"method.name: {name} trains online with TRL's GRPOTrainer, which is not installed: pip install -e '.[rl]'")
    if m.labels and params.method.answers_path is None:
        raise ConfigError(
            f"method.answers_path: null, but method.name {name} is a positive control that USES LABELS: "
            "point it at a JSONL of {id, answer} for the query pool (the toy writes answers.jsonl beside its queries)"
        )


def round_stages(params) -> list[Stage]:
    """The stages each round of this lineage runs, in order (its method's row)."""
    return [STAGES[name] for name in method(params).stages]


def reads(params, stage: Stage) -> tuple[str, ...]:
    """The files of its round `stage` reads under this lineage's method (online RL's train: the queries, not pairs)."""
    return method(params).reads.get(stage.name, stage.reads)


def writer(params, name: str) -> Stage:
    """The stage of a round that writes RoundPaths field `name`."""
    return next(s for s in round_stages(params) if name in s.writes)


def upstream(params, name: str) -> list[Stage]:
    """The stages of a round that field `name` comes from: its writer and, recursively, the writers of what
    that reads, in round order (a replicate arm that borrows another's pairs copies their outputs)."""
    needed, todo = set(), [name]
    while todo:
        stage = writer(params, todo.pop())
        if stage.name not in needed:
            needed.add(stage.name)
            todo += [f for f in reads(params, stage) if any(f in s.writes for s in round_stages(params))]
    return [s for s in round_stages(params) if s.name in needed]


def sharded() -> Stage:
    """The stage whose work can be split into shards that run at once (sampling)."""
    return next(s for s in STAGES.values() if s.shards)


def start_stages(params) -> list[Stage]:
    """The lineage's stages before its rounds, in order: the toy (when enabled), the base model's evaluation."""
    return [s for s in STAGES.values() if s.rounds != EACH and s.enabled(params)]


def evaluation(r: int) -> Stage:
    """The stage that scores round r (0: the base model)."""
    return STAGES["evaluate_base" if r == 0 else "evaluate"]


def commands() -> dict[str, list[Stage]]:
    """`genius` subcommand -> the stages it runs (evaluate: the base's and the rounds')."""
    out: dict[str, list[Stage]] = {}
    for stage in STAGES.values():
        out.setdefault(stage.command, []).append(stage)
    return out


def for_command(command: str, r: int | None) -> Stage:
    """The stage `genius <command> --round r` runs."""
    stages = commands()[command]
    return next((s for s in stages if (s.rounds == BASE) == (r == 0)), stages[0])

