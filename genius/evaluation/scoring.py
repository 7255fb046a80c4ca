"""A checkpoint's responses to labelled problems, sampled with a generation engine and judged.

The fast scorer beside lm-eval (genius.evaluation.harness, which scores the rounds): the
diagnostics sample with it (genius.evaluation.diagnostics), and so does every bench
(bench/sweep.py, bench/sft_control.py, bench/headroom.py). `open_engine` loads the checkpoint
on the engine `eval.engine` names (`hf`: transformers in process, a LoRA adapter applied
unmerged; `vllm`: the sampler's vLLM engine with the evaluation's vLLM settings); `score`
samples n responses per problem and reads each one's answer as the diagnostics do
(`eval.diagnostics_answer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from genius.config import EvalConfig, ModelConfig, SamplingConfig
from genius.data import reasoning_gym
from genius.data.answers import gold_answer, read_answer


@dataclass
class Scored:
    """Per problem i, its n responses j: text, score (mean token log-prob, the self-reward) and correctness."""

    responses: list[list[str]]
    scores: list[list[float]]
    correct: list[list[bool]]

    def accuracy(self) -> float:
        """The share of right first responses (with n = 1: the accuracy)."""
        return sum(c[0] for c in self.correct) / len(self.correct) if self.correct else 0.0


def open_engine(checkpoint: str, eval_cfg: EvalConfig, model_cfg: ModelConfig, sampling: SamplingConfig = SamplingConfig()):
    """(engine, tokenizer) of a checkpoint on the engine `eval.engine` names.

    `sampling.max_batch_sequences` bounds a transformers batch, as in sampling.
    """
    if eval_cfg.engine == "vllm":
        from genius.engines.vllm_engine import VLLMEngine

        engine = VLLMEngine(
            checkpoint,
            dtype=model_cfg.dtype,
            tensor_parallel_size=eval_cfg.vllm_tensor_parallel_size,
            seed=eval_cfg.seed,
            trust_remote_code=model_cfg.trust_remote_code,
            kv_cache_gib=eval_cfg.vllm_kv_cache_gib,
            enforce_eager=eval_cfg.vllm_enforce_eager,
        )
        return engine, engine.tokenizer
    from genius.engines.transformers_engine import TransformersEngine
    from genius.evaluation.harness import load_for_eval

    model, tokenizer = load_for_eval(checkpoint, model_cfg)
    return TransformersEngine(model, tokenizer, sampling.max_batch_sequences), tokenizer


def score(
    engine,
    tokenizer,
    problems: list[dict],
    answer: str,
    n: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 96,
    seed: int | None = None,
) -> Scored:
    """n responses per problem ({query, answer}, or a reasoning-gym probe's), each judged as `answer` reads it
    (toy, last_number, reasoning_gym). `seed` seeds torch before sampling (None: as it stands)."""
    from genius.algorithm.sampling import prompt_ids

    prompts = [prompt_ids(tokenizer, p["query"]) for p in problems]
    if seed is not None:
        torch.manual_seed(seed)
    out = engine.generate(prompts, n=n, temperature=temperature, max_new_tokens=max_new_tokens, stop=None)
    texts = [[tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in cs] for cs in out]
    right = [judge(p, answer) for p in problems]
    return Scored(
        responses=texts,
        scores=[[float(np.mean(c.logprobs)) if c.logprobs else float("-inf") for c in cs] for cs in out],
        correct=[[is_right(t) for t in ts] for is_right, ts in zip(right, texts)],
    )


# ---------------------------------------------------------------------------- answers
# The readers themselves live in genius.data.answers (one per task, shared with the methods
# that vote on answers): scoring only compares what they read with the gold answer.


def is_right(response: str, gold: str, mode: str) -> bool:
    """Whether the answer `response` gives, read as `mode` reads it (genius.data.answers), is `gold`."""
    answer = read_answer(response, mode)
    return answer is not None and answer == gold_answer(gold, mode)


def judge(problem: dict, mode: str) -> Callable[[str], bool]:
    """response -> right or wrong, for one probe problem: reasoning-gym's scorer where the problem
    comes from a spec (it carries "spec" and "index"), else the gold answer compared as `mode` reads it."""
    if mode == "reasoning_gym":
        spec = reasoning_gym.parse_spec(problem["spec"])
        return lambda response: reasoning_gym.is_correct(response, spec, problem["index"])
    return lambda response: is_right(response, problem["answer"], mode)
