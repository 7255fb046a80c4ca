"""Signal diagnostics: AUROC and best-of-n by hand, then on a real toy model.

Hand values are derived pair by pair in each test: AUROC is the share of (positive,
negative) pairs the positive wins, a tie counting one half.
"""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from genius.algorithm.records import SampleRecord
from genius.config import EvalConfig, ModelConfig, SamplingConfig
from genius.evaluation.diagnostics import (
    auroc,
    diagnose,
    diagnose_checkpoint,
    is_right,
    read_answer,
    response_level,
    step_level,
)
from genius.toy import task
from genius.toy.tokenizer import build_tokenizer


def test_auroc_by_hand():
    # positives 0.35, 0.8; negatives 0.1, 0.4: 0.35 beats 0.1 only, 0.8 beats both -> 3 of 4
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    # positives 1, 2; negatives 1, 0: (1 vs 1) tie 1/2, (1 vs 0) 1, (2 vs 1) 1, (2 vs 0) 1 -> 3.5 of 4
    assert auroc([1, 1, 2, 0], [1, 0, 1, 0]) == 0.875
    # one positive tied with all three negatives -> 1/2 each
    assert auroc([5, 5, 5, 5], [1, 0, 0, 0]) == 0.5
    assert auroc([1, 2, 3], [0, 1, 1]) == 1.0 and auroc([1, 2, 3], [1, 0, 0]) == 0.0
    assert auroc([1, 2], [1, 1]) is None and auroc([], []) is None  # one class: undefined


def test_auroc_is_the_pairwise_probability_with_ties_half():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 5, size=40)  # many ties
        labels = rng.random(40) < 0.4
        pos, neg = scores[labels], scores[~labels]
        pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]  # the definition, pair by pair
        assert auroc(scores, labels) == pytest.approx(sum(pairs) / len(pairs))


def test_response_level_by_hand():
    scores = [[-0.1, -0.5, -0.3], [-0.2, -0.4]]
    correct = [[False, True, True], [True, False]]
    out = response_level(scores, correct, greedy_correct=[True, False])
    # best of n: problem 1's top score -0.1 is wrong, problem 2's -0.2 is right -> 1/2
    assert out["best_of_n"] == 0.5
    # a random sample: 2/3 right on problem 1, 1/2 on problem 2 -> 7/12
    assert out["random_sample"] == pytest.approx(7 / 12)
    assert out["greedy"] == 0.5 and out["pass_at_n"] == 1.0 and out["headroom"] == 0.0
    # positives -0.5, -0.3, -0.2 against negatives -0.1, -0.4: only -0.3 and -0.2 beat -0.4 -> 2 of 6
    assert out["response_auroc"] == pytest.approx(1 / 3)


def test_step_level_reads_whole_trajectories():
    record = SampleRecord(
        query_id="q",
        query="1+2",
        timestamps=(
            {
                "beams": [{"prefix": ""}],
                "candidates": [
                    {"beam": 0, "step": "1+2=3\n", "rollout": "A:3", "score": -0.1},
                    {"beam": 0, "step": "1+2=4\n", "rollout": "A:4", "score": -0.3},
                ],
            },
            {
                "beams": [{"prefix": "1+2=3\n"}, {"prefix": "1+2=4\n"}],
                "candidates": [
                    {"beam": 1, "step": "A:4", "rollout": "", "score": -0.2},
                    {"beam": 0, "step": "A:3", "rollout": "", "score": -0.4},
                ],
            },
        ),
        pairs=(),
        final_response=None,
    )
    out = step_level([record], lambda qid, text: is_right(text, "3", "toy"))
    # right: -0.1, -0.4; wrong: -0.3, -0.2: -0.1 beats both, -0.4 neither -> 2 of 4
    assert out["step_auroc"] == 0.5
    assert out["step_top_correct"] == 0.5  # timestamp 1's top is right, timestamp 2's is not
    assert out["step_mean_correct"] == 0.5 and out["step_candidates"] == 4


@pytest.mark.parametrize(
    "response, mode, answer",
    [("3+4=7\nA:7", "toy", "7"), ("A:12\nA:059", "toy", "59"), ("5+5=10\n", "toy", None),
     ("so 1,000 apples, i.e. 2.50 each", "last_number", "2.5"), ("The answer is $1,000.", "last_number", "1000"),
     ("no number", "last_number", None)],
)  # fmt: skip
def test_read_answer(response, mode, answer):
    assert read_answer(response, mode) == answer


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    """A tiny Llama over-fitted on 8 toy problems, and a probe of those plus 8 unseen ones."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = random.Random(0)
    tok = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=128, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    learned = [task.sample_problem(rng) for _ in range(8)]
    chats = [
        [{"role": "user", "content": p.query}, {"role": "assistant", "content": task.solve(p, rng)}] for p in learned
    ]
    batch = tok(tok.apply_chat_template(chats, tokenize=False), return_tensors="pt", padding=True)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(120):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    root = tmp_path_factory.mktemp("diag")
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    problems = learned + [task.sample_problem(rng) for _ in range(8)]
    lines = [f'{{"id": "t{i}", "query": "{p.query}", "answer": "{p.answer}"}}\n' for i, p in enumerate(problems)]
    (root / "probe.jsonl").write_text("".join(lines))
    return root / "model", root / "probe.jsonl", problems


SMALL = SamplingConfig(num_foresight_steps=3, max_rollout_tokens=48, batch_queries=16)


def test_diagnose_on_a_toy_model(toy_model):
    model_dir, probe_path, problems = toy_model
    cfg = EvalConfig(diagnostics_path=str(probe_path), diagnostics_problems=16, diagnostics_samples=4, threads=1)
    out = diagnose_checkpoint(str(model_dir), cfg, ModelConfig(device="cpu"), SMALL)
    s = out["summary"]
    assert s["problems"] == 16 and s["samples_per_problem"] == 4 and len(out["problems"]) == 16
    # greedy: the engine's argmax decoding, checked against plain HF generate
    tok = build_tokenizer()
    model = LlamaForCausalLM.from_pretrained(model_dir).eval()
    expected = []
    for p in problems:
        ids = tok(f"<bos>Q:{p.query}\n", return_tensors="pt").input_ids
        with torch.no_grad():
            gen = model.generate(
                ids, do_sample=False, max_new_tokens=48, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
            )
        expected.append(task.extract_answer(tok.decode(gen[0, ids.shape[1] :], skip_special_tokens=True)) == p.answer)
    assert [p["greedy_correct"] for p in out["problems"]] == expected
    assert 0 < s["greedy"] < 1, "the probe must hold right and wrong answers for the numbers to mean anything"
    assert s["greedy"] == sum(expected) / 16
    for key in ("response_auroc", "step_auroc"):
        assert 0.0 <= s[key] <= 1.0
    assert s["random_sample"] <= s["pass_at_n"] and s["best_of_n"] <= s["pass_at_n"]
    assert s["headroom"] == pytest.approx(s["best_of_n"] - s["greedy"])
    assert s["step_candidates"] > 16 * 4  # M*N candidates per timestamp, several timestamps
    assert s["generated_tokens"] >= 16 * (4 + 1)  # at least a token per response of passes 1 and 2
    # the scores are the policy's own mean token log-probs
    assert all(-20 < x <= 0 for p in out["problems"] for x in p["scores"])


def test_diagnose_is_reproducible(toy_model):
    model_dir, probe_path, _ = toy_model
    model = LlamaForCausalLM.from_pretrained(model_dir).eval()
    tok = build_tokenizer()
    probe = [{"id": "a", "query": "3+4+5", "answer": "12"}, {"id": "b", "query": "10+20+7", "answer": "37"}]
    heard: list[str] = []
    runs = [diagnose(model, tok, probe, SMALL, n=3, answer_mode="toy", seed=5, log=heard.append)["problems"] for _ in range(2)]
    assert runs[0] == runs[1]
    # the minutes a preset's probe takes are not silent: each pass says it starts, foresight its batches
    passes = [m for m in heard[: len(heard) // 2] if not m.startswith("diagnostics 3/3: sampled")]
    assert [m[:16] for m in passes] == ["diagnostics 1/3:", "diagnostics 2/3:", "diagnostics 3/3:"], heard
    assert heard[-1].startswith("diagnostics 3/3: sampled 2/2 queries"), heard


def test_missing_probe_is_a_clear_error(toy_model, tmp_path):
    model_dir, _, _ = toy_model
    cfg = EvalConfig(diagnostics_path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(FileNotFoundError, match=r"diagnostics probe .*nope\.jsonl does not exist"):
        diagnose_checkpoint(str(model_dir), cfg, ModelConfig(device="cpu"), SMALL, base_dir=Path("."))
