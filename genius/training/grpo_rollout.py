"""A GRPO step's groups: sampling them with the project's engine, and scoring them, as TRL calls both.

`engine_rollout` is TRL's `rollout_func`: the project's transformers engine samples the G
responses of each query (its prompt prefilled once, the cache shared by the G rows).
`GroupReward` is TRL's reward function: it finds each query's group, runs the majority vote
(the reward for TTRL, a measurement for every reward) and, for self-certainty and negative
entropy, one no-grad forward pass of the current policy over prompt + response (TRL's own
logits come later, in the loss, after the rewards are needed). The rewards' maths:
genius.algorithm.rewards.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from genius.algorithm.rewards import REWARDS, Extract, majority_correct, majority_vote, neg_entropy, self_certainty
from genius.algorithm.sampling import prompt_ids
from genius.config import GrpoConfig
from genius.training.batches import collate

LOGIT_BYTES = 2**28  # a reward forward pass holds at most ~256 MB of fp32 logits (rows x length x vocab)


class GroupReward:
    """The reward as TRL calls it: one float per response of this process's generation batch.

    Responses are grouped by their query (this process must hold whole groups: `_trainer`
    checks it). The majority vote runs whatever the reward, as a measurement; `trainer` is set
    once the trainer exists: the policy whose logits self-certainty and entropy read.
    """

    def __init__(self, reward: str, tokenizer, extract: Extract):
        if reward not in REWARDS:
            raise ValueError(f"unknown reward {reward!r}: one of {', '.join(REWARDS)}")
        self.__name__ = reward  # TRL names the reward's metrics after it: rewards/<name>/mean
        self.reward, self.tokenizer, self.extract = reward, tokenizer, extract
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
        if self.reward == "majority_vote":
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
        score = self_certainty if self.reward == "self_certainty" else neg_entropy
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
                out = engine.generate(ids, n=1, temperature=cfg.temperature, max_new_tokens=cfg.max_completion_tokens)
            finally:
                model.train()
        samples = [c for c, in out]
        return {"prompt_ids": ids, "completion_ids": [c.token_ids for c in samples], "logprobs": [c.logprobs for c in samples]}

    return rollout
