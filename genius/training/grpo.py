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
- self-certainty and negative entropy need the policy's logits over each response: the reward
  runs one no-grad forward pass of the current policy over prompt + response (TRL computes its
  own logits only later, in the loss, after the rewards are needed).
- every step also measures the group's majority agreement (and, where labels exist, how often
  the majority is right): a measurement, whatever the reward.
- the round's checkpoint is `policy.save_checkpoint`'s (merged HF folder, safetensors);
  `train_steps.jsonl` and `train.json` sit in `work_dir`; each step goes to `track` (wandb).
- resume: with `training.save_every`, TRL/transformers checkpoints go to work_dir/train_state
  (loaded with torch's weights-only loader), guarded by a key of the round's inputs and
  settings; they are removed once the round is done.
"""

from __future__ import annotations

import functools
import json
import math
import resource
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from transformers import TrainerCallback

from genius.algorithm.rewards import Extract, majority_correct, majority_vote, neg_entropy, self_certainty
from genius.algorithm.sampling import prompt_ids
from genius.config import GrpoConfig, ModelConfig, TrainingConfig
from genius.data.queries import Query
from genius.io import stable_hash
from genius.threads import torch_threads
from genius.training.batches import collate
from genius.training.policy import load_policy, save_checkpoint

LOGIT_BYTES = 2**28  # a reward forward pass holds at most ~256 MB of fp32 logits (rows x length x vocab)


def train_grpo_round(
    queries: list[Query],
    policy_path: str,
    out_dir: str | Path,
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

    `extract` reads a response's final answer (the majority vote, and its measurement under
    every reward); `labels` (query id -> answer as `extract` writes it) are measurement only.
    `reference_path` None: the reference is the policy as it starts the round.
    """
    out_dir, work_dir = Path(out_dir), Path(work_dir or Path(out_dir).parent)
    with torch_threads(training.threads):
        return _train(queries, policy_path, out_dir, cfg, training, model_cfg, extract, labels, reference_path, log, track, work_dir)


def _train(queries, policy_path, out_dir, cfg, training, model_cfg, extract, labels, reference_path, log, track, work_dir) -> dict:
    from datasets import Dataset

    start = time.time()
    _check_batch(cfg, training)  # before the model loads
    model, tokenizer = load_policy(policy_path, model_cfg, training)
    reward = GroupReward(cfg, tokenizer, extract)
    rows = [{"prompt": [{"role": "user", "content": q.text}], "query_id": q.id} for q in queries]
    if labels is not None:
        rows = [r | {"label": labels.get(r["query_id"])} for r in rows]
    state_dir = work_dir / "train_state"
    run_key = _run_key(queries, labels, policy_path, cfg, training, model_cfg, reference_path)
    resume = _resumable(state_dir, run_key) if training.save_every else None
    trainer = _trainer(model, tokenizer, reward, Dataset.from_list(rows), cfg, training, model_cfg, state_dir)
    reward.trainer = trainer
    _set_reference(trainer, reference_path, model_cfg, cfg, training)
    history: list[dict] = []
    trainer.add_callback(_StepLog(history, cfg, log, track))
    if training.save_every:
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "run_key").write_text(run_key)
    steps = len(queries) // cfg.batch_queries * cfg.epochs * cfg.num_iterations  # TRL drops a last, partial batch
    log(
        f"GRPO ({cfg.reward}, {cfg.engine} engine) on {len(queries)} queries: {steps} steps of "
        f"{cfg.batch_queries} queries x {cfg.num_generations} responses, lr {cfg.learning_rate:g}, beta {cfg.beta:g}"
        + (f"; resuming from {resume.name}" if resume else "")
    )
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    save_checkpoint(trainer.model, tokenizer, out_dir, trainer.accelerator)
    steps = _rows(trainer.state.log_history, cfg)  # every step, a resumed attempt's included
    resumed = len(steps) - len(history)
    metrics = _summary(steps, cfg, training, len(queries), resumed, time.time() - start, trainer)
    if trainer.accelerator.is_main_process:
        shutil.rmtree(state_dir, ignore_errors=True)  # the round is done: its resumable state is spent
        with open(work_dir / "train_steps.jsonl", "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in steps)
        (work_dir / "train.json").write_text(json.dumps(metrics, indent=2))
        (out_dir / "genius_training.json").write_text(json.dumps({"config": cfg.model_dump(), "metrics": metrics}, indent=2))
    trainer.accelerator.wait_for_everyone()
    return metrics


class GroupReward:
    """The reward as TRL calls it: one float per response of this process's generation batch.

    Responses are grouped by their query (this process must hold whole groups: `_trainer`
    checks it). The majority vote runs whatever the reward, as a measurement; `trainer` is set
    once the trainer exists: the policy whose logits self-certainty and entropy read.
    """

    def __init__(self, cfg: GrpoConfig, tokenizer, extract: Extract):
        self.__name__ = cfg.reward  # TRL names the reward's metrics after it: rewards/<name>/mean
        self.cfg, self.tokenizer, self.extract = cfg, tokenizer, extract
        self.trainer = None
        self._prompt = functools.cache(lambda query: prompt_ids(tokenizer, query))  # TRL renders the same chat template

    def __call__(self, prompts, completions, completion_ids, label=None, log_metric=None, **_) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(_text(p), []).append(i)
        votes = {q: majority_vote([texts[i] for i in idx], self.extract) for q, idx in groups.items()}
        if log_metric is not None:
            _log_votes(votes, groups, label, log_metric)
        if self.cfg.reward == "majority_vote":
            rewards = [0.0] * len(texts)
            for q, idx in groups.items():
                for i, r in zip(idx, votes[q].rewards):
                    rewards[i] = r
            return rewards
        return self.logit_reward([_text(p) for p in prompts], completion_ids)

    @torch.no_grad()
    def logit_reward(self, queries: list[str], completion_ids: list[list[int]]) -> list[float]:
        """Self-certainty or minus the mean token entropy of each response, from one forward pass of the policy."""
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        device = next(model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        seqs = [(self._prompt(q), list(c)) for q, c in zip(queries, completion_ids)]
        score = self_certainty if self.cfg.reward == "self_certainty" else neg_entropy
        vocab = model.get_output_embeddings().weight.shape[0]
        rows = max(1, LOGIT_BYTES // (4 * vocab * max(len(p) + len(c) for p, c in seqs)))
        out: list[float] = []
        for i in range(0, len(seqs), rows):
            ids, attention, response = collate(seqs[i : i + rows], pad, device)
            logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits[:, :-1]
            out += score(logits, response[:, 1:]).tolist()  # position t predicts token t + 1
        return out


def _text(prompt) -> str:
    return prompt[-1]["content"] if isinstance(prompt, list) else prompt


def _log_votes(votes, groups, label, log_metric) -> None:
    """The step's vote measurements: majority agreement, answered share, and (labels) majority correctness."""
    log_metric("majority_agreement", sum(v.agreement for v in votes.values()) / len(votes))
    answers = [a for v in votes.values() for a in v.answers]
    log_metric("answered", sum(a is not None for a in answers) / len(answers))
    if label is not None:
        right = [majority_correct(votes[q].majority, label[idx[0]]) for q, idx in groups.items()]
        right = [r for r in right if r is not None]
        if right:
            log_metric("majority_correct", sum(right) / len(right))


def engine_rollout(cfg: GrpoConfig, tokenizer) -> Callable:
    """TRL's `rollout_func` backed by the project's transformers engine.

    TRL hands over this process's prompts, each repeated G times; the engine prefills each
    distinct prompt once and samples its G rows on copies of that cache. Log-probs are the
    policy's own (temperature 1); TRL uses them only for vLLM's importance-sampling correction.
    """
    from trl.models import unwrap_model_for_generation

    from genius.engines.transformers_engine import TransformersEngine

    render = functools.cache(lambda query: prompt_ids(tokenizer, query))

    def rollout(prompts, trainer) -> dict:
        ids = [render(_text(p)) for p in prompts]
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as model:
            engine = TransformersEngine(model, tokenizer)  # puts the model in eval mode
            try:
                out = engine.generate(ids, n=1, temperature=cfg.temperature, max_new_tokens=cfg.max_completion_tokens, stop=None)
            finally:
                model.train()
        return {"prompt_ids": ids, "completion_ids": [c[0].token_ids for c in out], "logprobs": [c[0].logprobs for c in out]}

    return rollout


def _trainer(model, tokenizer, reward, dataset, cfg: GrpoConfig, training: TrainingConfig, model_cfg: ModelConfig, state_dir: Path):
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
        scale_rewards=cfg.scale_rewards, seed=cfg.seed, data_seed=cfg.seed,
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
            f"its {rows} responses a multiple of processes x training.gradient_accumulation_steps ({world * accumulation}): "
            "each process votes on whole groups"
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


def _set_reference(trainer, reference_path: str | None, model_cfg: ModelConfig, cfg: GrpoConfig, training: TrainingConfig) -> None:
    """With `training.reference: base`, the KL is to the lineage's base instead of the round's starting policy."""
    if reference_path is None or cfg.beta == 0:
        return
    if training.finetune == "lora":  # TRL's reference under LoRA is the adapters switched off: the round's start
        raise ValueError("grpo with training.finetune: lora takes the round's starting policy as reference: set training.reference: previous")
    from genius.engines.loading import load_model

    reference, _ = load_model(reference_path, model_cfg.dtype, "cpu", model_cfg.trust_remote_code)
    trainer.ref_model = trainer.accelerator.prepare_model(reference.eval(), evaluation_mode=True)


ROW_KEYS = {  # train_steps.jsonl name -> TRL's log name
    "reward": "reward",
    "reward_std": "reward_std",
    "majority_agreement": "majority_agreement",
    "majority_correct": "majority_correct",  # measurement only, where labels exist
    "answered": "answered",  # share of responses with a final answer
    "entropy": "entropy",  # mean token entropy of the policy over the responses
    "response_length": "completions/mean_length",
    "truncated": "completions/clipped_ratio",  # share of responses cut at max_completion_tokens
    "kl": "kl",  # to the reference, per token (beta > 0)
    "clip_ratio": "clip_ratio/region_mean",
    "zero_std_groups": "frac_reward_zero_std",  # groups whose responses all scored alike: no gradient
    "loss": "loss",
    "grad_norm": "grad_norm",
    "lr": "learning_rate",
    "seconds": "step_time",
    "generation_seconds": "generation_seconds",
}


def _rows(log_history: list[dict], cfg: GrpoConfig) -> list[dict]:
    """One row per optimizer step from TRL's log history (logging_steps=1), in the project's names.

    generated_tokens: response tokens sampled for the step; tokens: prompt + response tokens the
    update ran over (a batch reused by num_iterations > 1 counts again). Update seconds are the
    step's seconds less generation: rewards, reference and loss passes, the optimizer.
    """
    rows, seen, batch_tokens = [], 0.0, 0.0
    for logs in log_history:
        if "loss" not in logs or "step" not in logs:
            continue  # the final summary entry
        row = {name: logs[key] for name, key in ROW_KEYS.items() if key in logs} | {"step": logs["step"]}
        generation = row.get("generation_seconds", 0.0)
        if generation:
            batch_tokens, seen = logs["num_tokens"] - seen, logs["num_tokens"]
        update = row["seconds"] - generation
        generated = row["response_length"] * cfg.batch_queries * cfg.num_generations if generation else 0
        rows.append(row | {
            "generated_tokens": generated,
            "tokens": batch_tokens,
            "generation_tokens_per_second": generated / generation if generation else None,
            "update_tokens_per_second": batch_tokens / update if update > 0 else None,
        })  # fmt: skip
    return rows


class _StepLog(TrainerCallback):
    """Each optimizer step: its row into `history` and to `track` (wandb), a line to `log` every tenth of the round."""

    def __init__(self, history: list, cfg: GrpoConfig, log, track):
        self.history, self.cfg, self.log, self.track = history, cfg, log, track
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs or not state.is_world_process_zero:
            return
        self.logs.append(logs | {"step": state.global_step})
        row = _rows(self.logs, self.cfg)[-1]  # token counts are differences of TRL's running total
        self.history.append(row)
        if self.track:
            self.track(row, state.global_step)
        total = state.max_steps
        if state.global_step % max(1, total // 10) == 0 or state.global_step == total:
            self.log(
                f"step {state.global_step}/{total} reward {row['reward']:.3f} agreement {row.get('majority_agreement', math.nan):.2f} "
                f"entropy {row.get('entropy', math.nan):.3f} length {row.get('response_length', math.nan):.1f} kl {row.get('kl', math.nan):.4f}"
            )


def _summary(steps: list[dict], cfg: GrpoConfig, training: TrainingConfig, queries: int, resumed: int, seconds: float, trainer) -> dict:
    """The round's training metrics for train.json: first, last and mean of what a user watches, and speed.

    Speed counts only the steps this attempt ran (from `resumed` on).
    """
    first, last = (steps[0], steps[-1]) if steps else ({}, {})
    ran = steps[resumed:]
    total = lambda key: sum(r.get(key) or 0 for r in ran)  # noqa: E731
    generation = total("generation_seconds")
    update = total("seconds") - generation
    watched = ("reward", "majority_agreement", "majority_correct", "answered", "entropy", "response_length", "kl")
    peak = (
        torch.cuda.max_memory_allocated()
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "method": "grpo",
        "reward": cfg.reward,
        "engine": cfg.engine,
        "queries": queries,
        "steps": len(steps),
        "resumed_from_step": resumed,
        "finetune": training.finetune,
        **{f"{k}_{which}": row.get(k) for k in watched for which, row in (("first", first), ("last", last))},
        **{f"{k}_mean": _mean(steps, k) for k in watched},
        "lr_peak": max((r["lr"] for r in steps), default=None),
        "generated_tokens": total("generated_tokens"),
        "generation_seconds": generation,
        "generation_tokens_per_second": total("generated_tokens") / generation if generation > 0 else None,
        "update_seconds": update,
        "update_tokens_per_second": total("tokens") / update if update > 0 else None,
        "peak_memory_mb": peak / 2**20,
        "precision": "bf16" if trainer.args.bf16 else "fp32",
        "processes": trainer.accelerator.num_processes,
        "seconds": seconds,
    }


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def _run_key(queries, labels, policy_path, cfg, training, model_cfg, reference_path) -> str:
    """What a resumable state belongs to: the queries, the models and every setting that changes the result."""
    from genius.training.reference import model_fingerprint

    settings = {k: v for k, v in training.model_dump().items() if k not in ("save_every", "threads")}
    return stable_hash({
        "queries": [(q.id, q.text) for q in queries], "labels": labels, "policy": model_fingerprint(policy_path),
        "reference": reference_path, "grpo": cfg.model_dump(), "training": settings, "model": model_cfg.model_dump(),
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
