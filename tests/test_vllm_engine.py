"""The vLLM engine on CPU, against a fake `vllm` module: what it asks vLLM for, and how vLLM's
outputs become Completions. (No GPU here: vLLM itself is not exercised.)

The fake LLM answers a call with stop token ids (a step) by the script in `STEPS`, one
sample per entry, and a call without (a rollout) with "A:5<eos>". Each sampled token's
log-prob is -0.5; every position also lists a more likely other token (-0.1), as
`logprobs=1` returns the top-1 beside the sampled one: the engine must pick the sampled.
"""

import importlib
import sys
import types
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from genius.config import ConfigError, ModelConfig, SamplingConfig
from genius.engine import Continuation, build_engine
from genius.queries import Query
from genius.sampling import foresight_sample
from genius.toy.tokenizer import build_tokenizer

TOKENIZER = build_tokenizer()
NL, EOS = TOKENIZER.convert_tokens_to_ids("\n"), TOKENIZER.eos_token_id
EOT = 99  # an end-of-turn stop token a model's generation config may add: also "eos"


def tok(text):
    return TOKENIZER(text, add_special_tokens=False)["input_ids"]


# (tokens, finish_reason, stop_reason) per sample of a step call, as vLLM reports them
STEPS = [
    (tok("1+2=3\n"), "stop", NL),  # our delimiter token -> "stop"
    (tok("A:3") + [EOS], "stop", None),  # EOS -> "eos"
    (tok("12+3"), "length", None),  # the limit -> "length"
    (tok("A:4") + [EOT], "stop", EOT),  # another stop token of the model -> "eos"
]


def Logprob(value):  # noqa: N802 (vllm.logprobs.Logprob's shape: .logprob)
    return SimpleNamespace(logprob=value)


class FakeLLM:
    instances: list = []

    def __init__(self, **kwargs):
        self.kwargs, self.calls = kwargs, []
        FakeLLM.instances.append(self)

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        results = []
        assert len(params) == len(prompts)  # one SamplingParams per request: each has its own seed
        for p, params in zip(prompts, params):
            script = STEPS[: params.n] if params.stop_token_ids else [(tok("A:5") + [EOS], "stop", None)] * params.n
            outputs = [
                SimpleNamespace(
                    index=i,
                    token_ids=tuple(ids),
                    logprobs=[{t: Logprob(-0.5), (t + 1) % 20: Logprob(-0.1)} for t in ids],
                    finish_reason=reason,
                    stop_reason=stop_reason,
                )
                for i, (ids, reason, stop_reason) in enumerate(script)
            ]
            results.append(SimpleNamespace(outputs=outputs[::-1], num_cached_tokens=2))  # any order: sorted by index
        return results


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = FakeLLM, FakeSamplingParams
    vllm.inputs = types.ModuleType("vllm.inputs")
    vllm.inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.inputs", vllm.inputs)
    FakeLLM.instances = []
    return vllm


@pytest.fixture
def model_dir(tmp_path):
    TOKENIZER.save_pretrained(tmp_path)
    save_file({"embed": torch.zeros(22, 8), "head.bias": torch.zeros(5)}, tmp_path / "model.safetensors")
    return str(tmp_path)


def test_vllm_is_imported_lazily(monkeypatch):
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    importlib.reload(importlib.import_module("genius.vllm_engine"))
    assert "vllm" not in sys.modules


def test_without_vllm_the_error_says_how_to_get_it(monkeypatch, model_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what an environment without vLLM looks like
    with pytest.raises(ConfigError, match=r"pip install '.\[gpu\]'"):
        build_engine(model_dir, SamplingConfig(engine="vllm"), ModelConfig())


def test_llm_arguments_and_outputs_as_completions(fake_vllm, model_dir):
    cfg = SamplingConfig(engine="vllm", tensor_parallel_size=2, seed=7)
    engine, tokenizer = build_engine(model_dir, cfg, ModelConfig(dtype="bfloat16"))
    (llm,) = FakeLLM.instances
    assert llm.kwargs == dict(
        model=model_dir, dtype="bfloat16", tensor_parallel_size=2, seed=7, trust_remote_code=False,
        enable_prefix_caching=True, logprobs_mode="raw_logprobs",  # untempered log-probs
    )
    assert engine.num_parameters == 22 * 8 + 5  # from the safetensors header

    prompts = [[1] + tok("Q:1+2\n"), [1] + tok("Q:3+4\n")]
    out = engine.generate(prompts, n=4, temperature=0.6, max_new_tokens=32, stop="\n", then=Continuation(1.0, 64))

    (step_prompts, step_params), (roll_prompts, roll_params) = llm.calls
    assert step_prompts == [{"prompt_token_ids": p} for p in prompts]
    seeds = [params.__dict__.pop("seed") for params in step_params + roll_params]
    assert len(set(seeds)) == len(seeds)  # a seed per request
    assert all(vars(params) == dict(n=4, temperature=0.6, max_tokens=32, stop_token_ids=[NL], logprobs=1, detokenize=False) for params in step_params)
    for completions in out:
        assert [c.finish_reason for c in completions] == ["stop", "eos", "length", "eos"]
        assert [c.token_ids for c in completions] == [ids for ids, _, _ in STEPS]
        assert all(lp == -0.5 for c in completions for lp in c.logprobs)  # the sampled token's, not the top-1
        # rollouts for the samples that did not end the response: the step and the limit
        assert [c.continuation is not None for c in completions] == [True, False, True, False]
        assert completions[0].continuation.token_ids == tok("A:5") + [EOS]
        assert completions[0].continuation.finish_reason == "eos"
    # the rollout pass: prompt + step for each continued sample, one sample each, no stop
    assert roll_prompts == [{"prompt_token_ids": p + STEPS[i][0]} for p in prompts for i in (0, 2)]
    assert all(vars(params) == dict(n=1, temperature=1.0, max_tokens=64, stop_token_ids=None, logprobs=1, detokenize=False) for params in roll_params)

    steps = 2 * sum(len(ids) for ids, _, _ in STEPS)
    rollouts = 4 * len(tok("A:5") + [EOS])
    assert engine.cost.calls == 1 and engine.cost.generated_tokens == steps + rollouts
    # prefill as vLLM reports it: prompt tokens minus those found in its prefix cache (2 per request)
    prefilled = [len(p) - 2 for p in prompts] + [len(p["prompt_token_ids"]) - 2 for p in roll_prompts]
    assert engine.cost.prefill_tokens == sum(prefilled)


def test_request_seeds_follow_the_batch_seed_not_the_engine_history(fake_vllm, model_dir):
    """What makes resumed and sharded vLLM rounds sample what one process would: the sampler
    seeds torch per batch, and each request's vLLM seed is drawn from it."""
    engine, _ = build_engine(model_dir, SamplingConfig(engine="vllm"), ModelConfig())
    prompts = [[1] + tok("Q:1+2\n"), [1] + tok("Q:3+4\n")]

    def seeds():
        params = FakeLLM.instances[-1].calls[-1][1]
        return [p.seed for p in params]

    torch.manual_seed(3)
    engine.generate(prompts, n=2, temperature=0.6, max_new_tokens=8, stop=None)
    first = seeds()
    engine.generate(prompts, n=2, temperature=0.6, max_new_tokens=8, stop=None)  # another batch in between
    assert seeds() != first
    torch.manual_seed(3)
    engine.generate(prompts, n=2, temperature=0.6, max_new_tokens=8, stop=None)
    assert seeds() == first


def test_missing_logprobs_and_aborts_are_errors(fake_vllm, model_dir):
    from genius.vllm_engine import to_completion

    ok = SimpleNamespace(token_ids=(5,), logprobs=[{5: Logprob(-1.0)}], finish_reason="length", stop_reason=None)
    assert to_completion(ok, {NL}).logprobs == [-1.0]
    with pytest.raises(RuntimeError, match="log-probs"):
        to_completion(SimpleNamespace(**{**vars(ok), "logprobs": None}), {NL})
    with pytest.raises(RuntimeError, match="abort"):
        to_completion(SimpleNamespace(**{**vars(ok), "finish_reason": "abort"}), {NL})


def test_foresight_sampling_runs_on_the_vllm_engine(fake_vllm, model_dir):
    cfg = SamplingConfig(engine="vllm", step_beam_size=2, num_rollouts=4, num_foresight_steps=2, tau=1e-6)
    engine, tokenizer = build_engine(model_dir, cfg, ModelConfig())
    (record,) = foresight_sample(engine, tokenizer, [Query("a", "1+2")], cfg)
    # k=1 scores (full): all tokens -0.5, so ties; every candidate is a complete trajectory
    assert len(record["timestamps"]) >= 1 and record["pairs"]
    assert {c["step"] for c in record["timestamps"][0]["candidates"]} == {"1+2=3\n", "A:3", "12+3", "A:4"}
