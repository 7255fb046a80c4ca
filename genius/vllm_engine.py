"""The vLLM backend of the engine interface (GPU; `pip install .[gpu]`, `sampling.engine: vllm`).

Same contract as `genius.engine.TransformersEngine`: token-id prompts in, `n` Completions per
prompt out, each with the policy's per-token log-probs at temperature 1 and a finish reason
(stop / eos / length), rollouts attached as `continuation`. vLLM is imported inside the
class, never at module import: the library, its tests and CPU machines do without it.

Choices, and why:
- Prompts go in as token ids (`TokensPrompt`): the beam prefixes are token sequences, and
  re-tokenising decoded text would not give them back.
- Prefix caching on: the N candidates of a beam share prompt + prefix, and a rollout's
  prompt is its step's prompt + the step, all of it already in the cache.
- `logprobs_mode="raw_logprobs"` (vLLM's default, set explicitly): log-probs of the raw
  logits, before temperature, which is what the foresight score needs. `logprobs=1`
  returns the sampled token's log-prob (plus the top-1's).
- The step delimiter is a set of stop *token ids* (every token whose text contains it),
  not a stop string: the same rule as the transformers engine, checked in the engine core
  on token ids, so no detokenisation is needed (`detokenize=False`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from transformers import AutoTokenizer

from genius.config import ConfigError
from genius.engine import Completion, Continuation, EngineCost, FinishReason, stop_token_mask


class VLLMEngine:
    def __init__(
        self,
        path: str,
        *,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        seed: int = 0,
        trust_remote_code: bool = False,
        **llm_kwargs,
    ):
        try:
            from vllm import LLM  # lazily: a GPU extra, and seconds to import
        except ImportError as e:
            raise ConfigError(f"sampling.engine: vllm needs vLLM (pip install '.[gpu]', on a GPU): {e}") from None

        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.llm = LLM(
            model=path,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            seed=seed,
            trust_remote_code=trust_remote_code,
            enable_prefix_caching=True,
            logprobs_mode="raw_logprobs",
            **llm_kwargs,
        )
        self.cost = EngineCost()
        self.num_parameters = count_parameters(path)
        self._stop_ids: dict[str, list[int]] = {}

    def generate(self, prompts, *, n, temperature, max_new_tokens, stop=None, then: Continuation | None = None):
        out = self._generate(prompts, n, temperature, max_new_tokens, self._stop_token_ids(stop))
        # rollouts: a second pass over the steps that did not end the response; their prompt
        # + step is in the prefix cache already, so vLLM encodes little of it again
        pending = [(p, c) for p, cs in zip(prompts, out) for c in cs if c.finish_reason != "eos"] if then else []
        if pending:
            starts = [list(p) + c.token_ids for p, c in pending]
            for (_, c), (r,) in zip(pending, self._generate(starts, 1, then.temperature, then.max_new_tokens, [])):
                c.continuation = r
        self.cost.calls += 1
        self.cost.generated_tokens += sum(
            len(c.token_ids) + (len(c.continuation.token_ids) if c.continuation else 0) for cs in out for c in cs
        )
        return out

    def _generate(self, prompts, n, temperature, max_tokens, stop_ids: list[int]) -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        # One seed per request, drawn from torch's generator, which the sampler seeds per batch of
        # queries: a request's draws then depend on its batch alone, not on what this engine ran
        # before, so a resumed or sharded round samples what one uninterrupted process would.
        seeds = torch.randint(0, 2**31 - 1, (len(prompts),)).tolist()
        params = [
            SamplingParams(
                n=n,
                temperature=temperature,
                max_tokens=max_tokens,
                stop_token_ids=stop_ids or None,
                logprobs=1,
                detokenize=False,
                seed=seed,
            )
            for seed in seeds
        ]
        results = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False)
        # tokens vLLM computed rather than found in its prefix cache
        self.cost.prefill_tokens += sum(len(p) - (r.num_cached_tokens or 0) for p, r in zip(prompts, results))
        stop_set = set(stop_ids)
        return [[to_completion(o, stop_set) for o in sorted(r.outputs, key=lambda o: o.index)] for r in results]

    def _stop_token_ids(self, stop: str | None) -> list[int]:
        if not stop:
            return []
        if stop not in self._stop_ids:
            mask = stop_token_mask(self.tokenizer, stop, len(self.tokenizer))
            self._stop_ids[stop] = mask.nonzero().squeeze(1).tolist()
        return self._stop_ids[stop]


def to_completion(output, stop_ids: set[int]) -> Completion:
    """A vLLM CompletionOutput as a Completion.

    vLLM's finish_reason is "length" or "stop"; a "stop" names its cause in stop_reason:
    one of our delimiter tokens -> "stop"; None (the EOS token) or another stop token the
    model's generation config declares (e.g. an end-of-turn token) -> "eos". The token that
    stopped generation is the last of token_ids, as in the transformers engine.
    """
    tokens = list(output.token_ids)
    if output.logprobs is None or len(output.logprobs) != len(tokens):
        raise RuntimeError("vLLM returned no per-token log-probs; the engine asks for logprobs=1")
    logprobs = [entry[t].logprob for t, entry in zip(tokens, output.logprobs)]
    reason: FinishReason
    if output.finish_reason == "length":
        reason = "length"
    elif output.finish_reason == "stop":
        reason = "stop" if output.stop_reason in stop_ids else "eos"
    else:
        raise RuntimeError(f"vLLM finished a sample with {output.finish_reason!r} (aborted?)")
    return Completion(tokens, logprobs, reason)


def count_parameters(path: str) -> int | None:
    """Parameters of a local safetensors model, from the files' headers (no weights read).

    For the FLOPs estimate of the cost accounting; None for a hub name that is not a folder.
    """
    files = sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else []
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as handle:  # 8-byte little-endian header size, then a JSON header
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total
