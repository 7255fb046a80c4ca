"""The transformers engine against a teacher-forced forward, on a tiny random Llama.

Whatever the batching, padding, prefix sharing and compaction do, every returned log-prob
must be log pi(token | prompt, earlier tokens) as one unpadded forward pass computes it.
"""

import os

import pytest
import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from genius.engines.base import Continuation
from genius.engines.transformers_engine import TransformersEngine, plan_batches
from genius.toy.tokenizer import build_tokenizer

TOKENIZER = build_tokenizer()
DEVICE = os.environ.get("GENIUS_TEST_DEVICE", "cpu")  # cuda: the same checks on a GPU


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the test machines are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    t = TOKENIZER
    config = LlamaConfig(
        vocab_size=len(t), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=128, bos_token_id=t.bos_token_id,
        eos_token_id=t.eos_token_id, pad_token_id=t.pad_token_id,
    )
    m = LlamaForCausalLM(config).eval().to(DEVICE)
    m.generation_config = GenerationConfig(eos_token_id=t.eos_token_id, pad_token_id=t.pad_token_id)
    return m


def ids(text):
    return [TOKENIZER.bos_token_id] + TOKENIZER(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def teacher_forced(model, prompt, tokens):
    """log pi(tokens[i] | prompt + tokens[:i]) from one unpadded forward."""
    x = torch.tensor([prompt + tokens], device=model.device)
    logp = torch.log_softmax(model(input_ids=x).logits[0].float(), -1)
    return [logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(tokens)]


def check_against_teacher_forcing(model, prompts, out, n):
    assert len(out) == len(prompts) and all(len(cs) == n for cs in out)
    for prompt, completions in zip(prompts, out):
        for c in completions:
            assert len(c.token_ids) == len(c.logprobs) > 0
            assert c.logprobs == pytest.approx(teacher_forced(model, prompt, c.token_ids), abs=1e-5)


@pytest.mark.parametrize("budget", [dict(), dict(max_batch_sequences=5), dict(max_batch_tokens=200)])
def test_logprobs_equal_teacher_forcing_with_shared_prefixes(model, budget):
    # prompts of different lengths (padding), a repeated prompt, n > 1 (cache expansion)
    prompts = [ids("Q:1+2\n"), ids("Q:35+16+8\n"), ids("Q:1+2\n"), ids("Q:9\n1+2=3\n")]
    engine = TransformersEngine(model, TOKENIZER, **budget)
    torch.manual_seed(0)
    out = engine.generate(prompts, n=3, temperature=1.0, max_new_tokens=12, stop="\n")
    check_against_teacher_forcing(model, prompts, out, 3)
    reasons = {c.finish_reason for cs in out for c in cs}
    assert reasons <= {"stop", "eos", "length"} and len(reasons) >= 2
    for cs in out:
        for c in cs:  # a row ends on its first delimiter or EOS, or runs to the limit
            body = c.token_ids[:-1]
            assert all(TOKENIZER.decode([t]) != "\n" and t != TOKENIZER.eos_token_id for t in body)
            assert c.finish_reason != "length" or len(c.token_ids) == 12
            assert (c.finish_reason == "stop") == (TOKENIZER.decode([c.token_ids[-1]]) == "\n")
            assert (c.finish_reason == "eos") == (c.token_ids[-1] == TOKENIZER.eos_token_id)
    # a repeated prompt is still sampled independently for each occurrence
    assert [c.token_ids for c in out[0]] != [c.token_ids for c in out[2]]
    # three distinct prompts are prefilled once each, however many rows sample them
    assert engine.cost.prefill_tokens == sum(len(p) for p in prompts[:2] + prompts[3:])
    assert engine.cost.calls == 1 and engine.cost.generated_tokens == sum(len(c.token_ids) for cs in out for c in cs)


def test_continuation_goes_on_from_the_step_and_matches_teacher_forcing(model):
    prompts = [ids("Q:7+8\n"), ids("Q:20+3+41\n1+2=3\n")]
    engine = TransformersEngine(model, TOKENIZER, max_batch_sequences=4)  # two batches, lazy compaction inside
    torch.manual_seed(1)
    out = engine.generate(prompts, n=4, temperature=0.6, max_new_tokens=6, stop="\n", then=Continuation(1.0, 10))
    check_against_teacher_forcing(model, prompts, out, 4)
    continued = 0
    for prompt, completions in zip(prompts, out):
        for c in completions:
            if c.finish_reason == "eos":  # a step that ended the response has nothing to continue
                assert c.continuation is None
                continue
            r = c.continuation
            continued += 1
            # the rollout's log-probs are conditioned on prompt + step, as one forward sees them
            assert r.logprobs == pytest.approx(teacher_forced(model, prompt + c.token_ids, r.token_ids), abs=1e-5)
            assert r.finish_reason in ("eos", "length")  # no stop string in the continuation
            assert r.finish_reason == "eos" or len(r.token_ids) == 10
            assert TOKENIZER.eos_token_id not in r.token_ids[:-1]
    assert continued > 0
    assert engine.cost.generated_tokens == sum(
        len(c.token_ids) + (len(c.continuation.token_ids) if c.continuation else 0) for cs in out for c in cs
    )


def test_logprobs_are_untempered_and_greedy_is_argmax(model):
    prompts = [ids("Q:4+5\n"), ids("Q:12+3+4\n")]
    engine = TransformersEngine(model, TOKENIZER)
    out = engine.generate(prompts, n=2, temperature=0.3, max_new_tokens=20, stop=None)
    check_against_teacher_forcing(model, prompts, out, 2)  # log-probs at T=1, not at T=0.3
    steps = engine.cost.steps
    greedy = engine.generate(prompts, n=2, temperature=0.0, max_new_tokens=20, stop=None)
    # one batch: a prefill, then a decode forward per token until its longest row ends
    assert engine.cost.steps - steps == max(len(c.token_ids) for cs in greedy for c in cs)
    for prompt, cs in zip(prompts, greedy):
        assert cs[0].token_ids == cs[1].token_ids
        with torch.no_grad():  # every greedy token is the argmax of the teacher-forced distribution
            x = torch.tensor([prompt + cs[0].token_ids], device=model.device)
            logits = model(input_ids=x).logits[0, len(prompt) - 1 : -1]
        assert cs[0].token_ids == logits.argmax(-1).tolist()


def test_samples_follow_the_tempered_distribution(model):
    """4,000 first tokens at T = 0.1 against softmax(logits / 0.1), and not against T = 1."""
    prompt = ids("Q:4+5\n")
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt], device=model.device)).logits[0, -1].float().cpu()
    torch.manual_seed(0)
    out = TransformersEngine(model, TOKENIZER).generate([prompt], n=4000, temperature=0.1, max_new_tokens=1)
    counts = torch.bincount(torch.tensor([c.token_ids[0] for c in out[0]]), minlength=len(logits)).float()
    tv = lambda p, q: (p - q).abs().sum().item() / 2  # noqa: E731  total variation distance
    tempered, plain = torch.softmax(logits / 0.1, -1), torch.softmax(logits, -1)
    assert tv(tempered, plain) > 0.3  # the two hypotheses are far apart: the test can tell them apart
    assert tv(counts / counts.sum(), tempered) < 0.05  # sampling noise: ~0.03 at 4,000 draws of 22 tokens
    assert tv(counts / counts.sum(), plain) > 0.25


@pytest.mark.parametrize("seed", range(4))
def test_stop_strings_end_a_response_where_its_text_first_holds_one(model, seed):
    """A stop string of two tokens (lm-eval's `until`) cuts a seeded sample at the first token
    whose decoded text holds it; the tokens before are the unstopped sample's own."""
    engine, prompt = TransformersEngine(model, TOKENIZER), ids(["Q:4+5\n", "Q:12+3+4\n"][seed % 2])
    for seed in range(seed * 100, seed * 100 + 100):  # the first seed whose sample has 7 tokens or more
        torch.manual_seed(seed)
        (free,) = engine.generate([prompt], n=1, temperature=1.0, max_new_tokens=30)[0]
        if len(free.token_ids) >= 7:
            break
    decode = lambda tokens: TOKENIZER.decode(tokens, skip_special_tokens=False)  # noqa: E731
    stop = decode(free.token_ids[4:6])  # two tokens from inside the sample (an EOS comes last only)
    assert len(free.token_ids) >= 7 and len(TOKENIZER.encode(stop, add_special_tokens=False)) >= 2
    cut = next(k for k in range(1, len(free.token_ids) + 1) if stop in decode(free.token_ids[:k]))
    torch.manual_seed(seed)
    (stopped,) = engine.generate([prompt], n=1, temperature=1.0, max_new_tokens=30, stop_strings=[stop])[0]
    assert stopped.token_ids == free.token_ids[:cut] and stopped.finish_reason == "stop"
    with pytest.raises(ValueError, match="stop_strings .* do not go with `then`"):
        engine.generate([prompt], n=1, temperature=1.0, max_new_tokens=3, stop_strings=["x"], then=Continuation(1.0, 3))


def test_plan_batches_respects_row_and_token_budgets():
    lengths, rows = [10, 30, 20, 10], [4, 4, 8, 4]
    # shortest first: 0 (10), 3 (10), 2 (20), 1 (30)
    assert plan_batches(lengths, rows, 10, max_sequences=100, max_tokens=10**6) == [[0, 3, 2, 1]]
    assert plan_batches(lengths, rows, 10, max_sequences=8, max_tokens=10**6) == [[0, 3], [2], [1]]
    # tokens: rows * (longest prompt + new tokens): [0, 3, 2] = 16 * (20 + 10) = 480; + 1 -> 20 * 40 = 800
    assert plan_batches(lengths, rows, 10, max_sequences=100, max_tokens=500) == [[0, 3, 2], [1]]
    # a prompt over every budget still gets a batch
    assert plan_batches([500], [64], 10, max_sequences=8, max_tokens=100) == [[0]]
