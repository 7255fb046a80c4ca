"""One round of online RL: GRPO on a label-free reward (TTRL, INTUITOR, RENT), via TRL's GRPOTrainer.

Reads top to bottom as the method: for each batch of the round's queries, sample a group of
G responses per query from the current policy; score each response with the reward
(genius.algorithm.rewards); normalise the rewards within the group into advantages; update
with the clipped-ratio objective, plus beta * KL to the reference when beta > 0. TRL's
`GRPOTrainer` (trl>=1.16,<2) does the loop, the advantages and the loss; this module gives
it the project's policy loading (safetensors, LoRA), its generation engine, its rewards and
its conventions:

- generation (`grpo.engine`): `genius` hands TRL the project's transformers engine through
  `rollout_func` (a group's prompt is prefilled once and its KV cache shared by the G rows,
  finished rows leave the batch); `trl` keeps TRL's `model.generate`. bench/grpo.py measures both.
- the rewards as TRL calls them (genius.training.grpo_rollout): self-certainty and negative
  entropy run one no-grad forward pass of the current policy over prompt + response; every
  step also measures the group's majority agreement (and, where labels exist, how often the
  majority is right), whatever the reward.
- what a user watches (genius.training.grpo_metrics): per step, reward, majority agreement,
  token entropy, response length, KL to the reference, seconds of generation and of update.
- the round's checkpoint is `policy.save_checkpoint`'s (merged HF folder, safetensors);
  the steps' rows go to `train_steps.jsonl` in `work_dir` (genius.layout.RoundPaths), each step
  also to `track` (wandb); the caller writes the returned summary (the stage: train.json).
- resume: with `training.save_every`, TRL/transformers checkpoints go to `train_state/` in work_dir
  (loaded with torch's weights-only loader), guarded by a key of the round's inputs and
  settings; they are removed once the round is done.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from genius.algorithm.rewards import Extract
from genius.config import GrpoConfig, ModelConfig, TrainingConfig
from genius.data.queries import Query
from genius.io import stable_hash
from genius.layout import RoundPaths
from genius.threads import torch_threads
from genius.training.grpo_metrics import StepLog, round_summary, step_rows
from genius.training.grpo_rollout import GroupReward, engine_rollout
from genius.training.policy import load_policy, save_checkpoint


def train_grpo_round(
    queries: list[Query],
    policy_path: str,
    out_dir: str | Path,
    reward: str,
    cfg: GrpoConfig,
    training: TrainingConfig,
    model_cfg: ModelConfig,
    extract: Extract,
    labels: dict[str, str] | None = None,
    reference_path: str | None = None,
    log: Callable[[str], None] = print,
    track: Callable[[dict, int], None] | None = None,
    work_dir: str | Path | None = None,
) -> dict:
    """GRPO on `queries` from the policy at `policy_path`; save to `out_dir`; return the round's metrics.

    `reward`: one of genius.algorithm.rewards.REWARDS (the method's: ttrl, intuitor, rent).
    `extract` reads a response's final answer (the majority vote, and its measurement under
    every reward); `labels` (query id -> answer as `extract` writes it) are measurement only.
    `reference_path` None: the reference is the policy as it starts the round. The steps' rows
    go to `work_dir`'s train_steps.jsonl (default: out_dir's parent, the round's folder).
    """
    out_dir, work = Path(out_dir), RoundPaths(Path(work_dir or Path(out_dir).parent))
    with torch_threads(training.threads):
        inputs = (queries, labels, policy_path, reference_path, reward)
        return _train(inputs, out_dir, cfg, training, model_cfg, extract, log, track, work)


def _train(inputs, out_dir, cfg, training, model_cfg, extract, log, track, work: RoundPaths) -> dict:
    queries, labels, policy_path, reference_path, reward_name = inputs
    start = time.time()
    _check_batch(cfg, training)  # before the model loads
    model, tokenizer = load_policy(policy_path, model_cfg, training)
    reward = GroupReward(reward_name, tokenizer, extract)
    state_dir, resume = work.train_state, None
    if training.save_every:
        run_key = _run_key(inputs, cfg, training, model_cfg)  # hashes the weights: only when states are kept
        resume = _resumable(state_dir, run_key)
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "run_key").write_text(run_key)
    trainer = _trainer(model, tokenizer, reward, _dataset(queries, labels), cfg, training, model_cfg, state_dir)
    reward.trainer = trainer
    _set_reference(trainer, reference_path, model_cfg, cfg, training)
    history: list[dict] = []
    trainer.add_callback(StepLog(history, cfg, log, track))
    steps = len(queries) // cfg.batch_queries * cfg.epochs * cfg.num_iterations  # TRL drops a last, partial batch
    log(
        f"GRPO ({reward_name}, {cfg.engine} engine) on {len(queries)} queries: {steps} steps of "
        f"{cfg.batch_queries} queries x {cfg.num_generations} responses, lr {cfg.learning_rate:g}, beta {cfg.beta:g}"
        + (f"; resuming from {resume.name}" if resume else "")
    )
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    save_checkpoint(trainer.model, tokenizer, out_dir, trainer.accelerator)
    steps = step_rows(trainer.state.log_history, cfg)  # every step, a resumed attempt's included
    resumed = len(steps) - len(history)
    metrics = round_summary(steps, reward_name, cfg, training, len(queries), resumed, time.time() - start, trainer)
    if trainer.accelerator.is_main_process:
        shutil.rmtree(state_dir, ignore_errors=True)  # the round is done: its resumable state is spent
        with open(work.train_steps, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in steps)
        record = {"reward": reward_name, "config": cfg.model_dump(), "metrics": metrics}
        (out_dir / "genius_training.json").write_text(json.dumps(record, indent=2))
    trainer.accelerator.wait_for_everyone()
    return metrics


def _dataset(queries: list[Query], labels: dict[str, str] | None):
    """The round's queries as TRL's conversational prompts; labels ride along for the measurements only."""
    from datasets import Dataset

    rows = [{"prompt": [{"role": "user", "content": q.text}], "query_id": q.id} for q in queries]
    if labels is not None:
        rows = [r | {"label": labels.get(r["query_id"])} for r in rows]
    return Dataset.from_list(rows)


def _trainer(model, tokenizer, reward, dataset, cfg: GrpoConfig, training: TrainingConfig, model_cfg, state_dir: Path):
    """TRL's GRPOTrainer with the round's settings (where TRL's defaults differ: README of bench/grpo.py)."""
    from transformers import PrinterCallback, ProgressCallback
    from trl import GRPOConfig as TrlConfig

    world, accumulation = _check_batch(cfg, training)
    rows = cfg.batch_queries * cfg.num_generations  # responses per optimizer step, all processes together
    on_gpu = model_cfg.device != "cpu" and torch.cuda.is_available()
    bf16 = training.mixed_precision == "bf16" or (
        training.mixed_precision == "auto" and on_gpu and torch.cuda.is_bf16_supported()
    )
    args = TrlConfig(
        output_dir=str(state_dir), use_cpu=not on_gpu, bf16=bf16, report_to=[], disable_tqdm=True,
        per_device_train_batch_size=rows // (world * accumulation), gradient_accumulation_steps=accumulation,
        num_train_epochs=cfg.epochs, num_generations=cfg.num_generations, temperature=cfg.temperature,
        max_completion_length=cfg.max_completion_tokens, learning_rate=cfg.learning_rate, lr_scheduler_type="linear",
        warmup_steps=cfg.warmup_ratio, weight_decay=0.0, optim="adamw_torch", max_grad_norm=cfg.max_grad_norm,
        beta=cfg.beta, epsilon=cfg.epsilon, num_iterations=cfg.num_iterations, loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards, seed=training.seed, data_seed=training.seed,
        activation_checkpointing=False,  # TRL's default True recomputes every activation: memory for time
        disable_dropout=True, logging_steps=1, log_completions=False,
        save_strategy="steps" if training.save_every else "no", save_steps=training.save_every or 1, save_total_limit=1,
    )  # fmt: skip
    with warnings.catch_warnings():  # rollout_func is "experimental" in trl 1.16: pinned <2, tested here
        warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
        trainer = _round_trainer()(
            model=model, reward_funcs=[reward], args=args, train_dataset=dataset, processing_class=tokenizer,
            rollout_func=engine_rollout(cfg, tokenizer) if cfg.engine == "genius" else None,
        )  # fmt: skip
    for printer in (PrinterCallback, ProgressCallback):  # the round logs its own lines
        trainer.remove_callback(printer)
    return trainer


def _check_batch(cfg: GrpoConfig, training: TrainingConfig) -> tuple[int, int]:
    """(processes, accumulation steps), once the batch is known to split into whole groups per process."""
    from accelerate import PartialState

    world, accumulation = PartialState().num_processes, training.gradient_accumulation_steps
    rows = cfg.batch_queries * cfg.num_generations
    if cfg.batch_queries % world or rows % (world * accumulation):
        raise ValueError(
            f"grpo.batch_queries ({cfg.batch_queries}) must be a multiple of the {world} training process(es), and "
            f"its {rows} responses a multiple of processes x training.gradient_accumulation_steps "
            f"({world * accumulation}): each process votes on whole groups"
        )
    return world, accumulation


def _round_trainer():
    """GRPOTrainer with two changes, both on TRL internals of trl 1.16 (pinned <2, tested in tests/test_grpo.py)."""
    from trl import GRPOTrainer
    from trl.trainer.utils import RepeatSampler

    class EpochSampler(RepeatSampler):
        """Each epoch's query order a function of (seed, epoch), as the ACO trainer's: TRL's sampler draws
        epochs from one running generator, so a round resumed in its second epoch replayed the first's order."""

        def set_epoch(self, epoch: int) -> None:  # transformers' Trainer calls it before each epoch
            if self.shuffle:
                self.generator.manual_seed(int(stable_hash(f"{self.seed}:{epoch}", 15), 16))

    class RoundTrainer(GRPOTrainer):
        def _get_train_sampler(self, dataset=None):
            return EpochSampler(
                data_source=self.train_dataset if dataset is None else dataset,
                mini_repeat_count=self.num_generations,
                batch_size=self.args.generation_batch_size // self.num_generations,
                repeat_count=self.num_iterations * self.args.steps_per_generation,
                shuffle=self.shuffle_dataset,
                seed=self.args.seed,
            )

        def _generate(self, prompts):  # timed, so a step splits into generation and update; flushed after the rewards
            started = time.perf_counter()
            out = super()._generate(prompts)
            self._pending_metrics["generation_seconds"].append(time.perf_counter() - started)
            return out

    return RoundTrainer


def _set_reference(trainer, reference_path: str | None, model_cfg: ModelConfig, cfg: GrpoConfig, training) -> None:
    """With `training.reference: base`, the KL is to the lineage's base instead of the round's starting policy."""
    if reference_path is None or cfg.beta == 0:
        return
    if training.finetune == "lora":  # TRL's reference under LoRA is the adapters switched off: the round's start
        raise ValueError(
            "grpo with training.finetune: lora takes the round's starting policy as reference: "
            "set training.reference: previous (or grpo.beta: 0)"
        )
    from genius.engines.loading import load_model

    reference, _ = load_model(reference_path, model_cfg.dtype, "cpu", model_cfg.trust_remote_code)
    trainer.ref_model = trainer.accelerator.prepare_model(reference.eval(), evaluation_mode=True)


def _run_key(inputs, cfg: GrpoConfig, training: TrainingConfig, model_cfg: ModelConfig) -> str:
    """What a resumable state belongs to: the queries, the models and every setting that changes the result."""
    from genius.training.reference import model_fingerprint

    queries, labels, policy_path, reference_path, reward = inputs
    settings = {k: v for k, v in training.model_dump().items() if k not in ("save_every", "threads")}
    return stable_hash({
        "queries": [(q.id, q.text) for q in queries], "labels": labels, "policy": model_fingerprint(policy_path),
        "reference": reference_path, "reward": reward, "grpo": cfg.model_dump(), "training": settings, "model": model_cfg.model_dump(),
    })  # fmt: skip


def _resumable(state_dir: Path, run_key: str) -> Path | None:
    """The last checkpoint a killed attempt of this very round left, or None; another run's states are removed."""
    from transformers.trainer_utils import get_last_checkpoint

    key = state_dir / "run_key"
    if key.exists() and key.read_text() == run_key:
        last = get_last_checkpoint(str(state_dir))
        return Path(last) if last else None
    shutil.rmtree(state_dir, ignore_errors=True)
    return None
