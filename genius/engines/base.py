"""The engine interface foresight sampling calls: what an engine returns and what it spent.

An engine takes token-id prompts and returns, for each, `n` sampled continuations with the
policy's per-token log-probs (at temperature 1, whatever the sampling temperature: the
foresight score is a log-prob of the policy, not of the tempered sampler). Foresight
sampling makes one engine call per timestamp for a whole batch of queries: every candidate
step, each continued to the end of the response by its rollout (`then`), so the rollout
reuses the step's KV cache instead of re-encoding prompt + prefix + step. The backends:
`genius.engines.transformers_engine` and `genius.engines.vllm_engine`; this module imports
neither, and `genius.engines.build_engine` picks one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch

FinishReason = Literal["stop", "eos", "length"]


@dataclass
class Completion:
    token_ids: list[int]  # generated tokens, the EOS token included when one was generated
    logprobs: list[float]  # log pi(token | context), one per token
    finish_reason: FinishReason  # stop: a token containing the step delimiter; eos; length
    continuation: Completion | None = None  # with `then` and no EOS: the rest of the response


@dataclass(frozen=True)
class Continuation:
    """Keep sampling a completion that did not end the response (it stopped at `stop` or at
    its limit) to the end of the response: the foresight rollout a'_>k of a step a_k."""

    temperature: float
    max_new_tokens: int


@dataclass
class EngineCost:
    """What an engine spent, summed over its calls (a round's cost accounting)."""

    calls: int = 0  # generate() calls
    generated_tokens: int = 0  # sampled tokens returned, continuations included
    prefill_tokens: int = 0  # prompt tokens run through the model (a prompt shared by n samples counts once)
    steps: int = 0  # forward passes over a batch (vLLM: engine steps): each reads every weight once


class Engine(Protocol):
    cost: EngineCost
    num_parameters: int | None  # for the FLOPs estimate; None when unknown

    def generate(
        self,
        prompts: list[list[int]],
        *,
        n: int,
        temperature: float,
        max_new_tokens: int,
        stop: str | None,
        then: Continuation | None = None,
    ) -> list[list[Completion]]:
        """`n` completions per prompt; generation ends at EOS, at `stop`, or at the limit;
        with `then`, each completion not ended by EOS carries its `continuation`."""
        ...


def stop_token_mask(tokenizer, stop: str, size: int) -> torch.Tensor:
    """(size,) bool: tokens whose text contains `stop` (a step ends on such a token).

    `size` is the model's output vocabulary, which may exceed len(tokenizer) (padded
    embeddings); the extra ids never stop.
    """
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    mask = torch.tensor([stop in t for t in texts])
    return torch.nn.functional.pad(mask, (0, max(0, size - len(mask))))


def inverse_cdf_sample(probs: torch.Tensor, generators: dict[int, torch.Generator]) -> torch.Tensor:
    """One token per row of `probs` (rows: requests, columns: the vocabulary): row i takes the
    first token whose float64 cumulative probability exceeds u_i times the row's total, u_i
    uniform on [0, 1) from `generators[i]`, or from torch's global generator for a row that has
    none. A token of probability 0 (cut by top-k or top-p) is never taken. The vLLM engine's
    seeded requests and every sampled token of the transformers engine are drawn here."""
    u = torch.rand(probs.shape[0], dtype=torch.float64, device=probs.device)
    for i, generator in generators.items():
        u[i] = torch.rand((), dtype=torch.float64, generator=generator)
    cdf = probs.cumsum(dim=-1, dtype=torch.float64)
    tokens = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True)
    return tokens.clamp_(max=probs.shape[-1] - 1).view(-1)
