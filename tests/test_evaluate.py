"""genius.evaluate against an independent reference: plain HF greedy generation.

A tiny Llama is over-fitted on the gold solutions of a few toy problems, so on a test set of
those problems plus unseen ones it scores strictly between 0 and 1: a wrong prompt, stop
rule or answer filter in the lm-eval task would change the number.
"""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from genius.config import EvalConfig, ModelConfig
from genius.evaluate import EvaluationError, evaluate
from genius.toy import task
from genius.toy.tokenizer import build_tokenizer

REPO = Path(__file__).resolve().parents[1]
CPU = ModelConfig(device="cpu")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(model dir, test.jsonl, test problems): 8 problems learned by heart, 8 unseen."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = random.Random(0)
    tok = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=128, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    learned = [task.sample_problem(rng) for _ in range(8)]
    unseen = [task.sample_problem(rng) for _ in range(8)]
    chats = [
        [{"role": "user", "content": p.query}, {"role": "assistant", "content": task.solve(p, rng)}] for p in learned
    ]
    batch = tok(tok.apply_chat_template(chats, tokenize=False), return_tensors="pt", padding=True)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):  # ~1 s; the loss ends near 0.1, so the learned problems come out right
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    root = tmp_path_factory.mktemp("toy")
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    problems = learned + unseen
    rows = [{"id": f"t{i:05d}", "query": p.query, "answer": str(p.answer)} for i, p in enumerate(problems)]
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "model", root / "test.jsonl", problems


def reference_correct(model_dir: Path, problems) -> list[bool]:
    """Greedy HF generate, one prompt at a time, written without lm-eval or the chat template."""
    tok = build_tokenizer()
    model = LlamaForCausalLM.from_pretrained(model_dir).eval()
    correct = []
    for p in problems:
        ids = tok(f"<bos>Q:{p.query}\n", return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(
                ids, do_sample=False, max_new_tokens=64, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
            )
        response = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).split("Q:")[0]  # the task's stop string
        correct.append(task.extract_answer(response) == p.answer)
    return correct


def without_generation_eos(model_dir: Path, out: Path) -> Path:
    """A copy whose generation_config names no EOS, as some hub checkpoints ship."""
    shutil.copytree(model_dir, out)
    for name in ("config.json", "generation_config.json"):
        data = json.loads((out / name).read_text())
        data.pop("eos_token_id", None)
        (out / name).write_text(json.dumps(data))
    return out


# Without EOS in generation_config, lm-eval would let batched sequences run on past EOS and
# read the text after it as part of the response (evaluate._stop_at_tokenizer_eos).
@pytest.mark.parametrize("generation_eos", [True, False])
def test_greedy_accuracy_equals_plain_generate(toy, tmp_path, generation_eos):
    model_dir, test_path, problems = toy
    if not generation_eos:
        model_dir = without_generation_eos(model_dir, tmp_path / "model")
    cfg = EvalConfig(tasks=["genius_toy"], test_path=str(test_path), batch_size=8, threads=1)
    result = evaluate(str(model_dir), cfg, CPU, base_dir=REPO)

    expected = reference_correct(model_dir, problems)
    assert 0 < sum(expected) < len(expected), "the test model must get some right and some wrong"
    records = result["samples"]["genius_toy"]
    assert [r["id"] for r in records] == [f"t{i:05d}" for i in range(len(problems))]
    assert [r["correct"] for r in records] == expected
    assert result["accuracy"]["genius_toy"] == sum(expected) / len(expected)
    assert result["num_samples"]["genius_toy"] == len(problems)
    assert result["stderr"]["genius_toy"] > 0


def test_sampled_task_runs(toy):
    model_dir, test_path, problems = toy
    cfg = EvalConfig(tasks=["genius_toy_sampled"], test_path=str(test_path), limit=8, threads=1)
    result = evaluate(str(model_dir), cfg, CPU, base_dir=REPO)
    assert 0.0 <= result["accuracy"]["genius_toy_sampled"] <= 1.0
    assert result["num_samples"]["genius_toy_sampled"] == 8


def test_missing_test_file_is_a_clear_error(toy, tmp_path):
    model_dir, _, _ = toy
    cfg = EvalConfig(tasks=["genius_toy"], test_path=str(tmp_path / "absent.jsonl"), threads=1)
    with pytest.raises(FileNotFoundError, match=r"genius_toy: test set .*absent\.jsonl does not exist"):
        evaluate(str(model_dir), cfg, CPU, base_dir=REPO)


def test_missing_metric_is_a_clear_error(toy):
    model_dir, test_path, _ = toy
    cfg = EvalConfig(tasks=["genius_toy"], test_path=str(test_path), metric="acc,none", limit=2, threads=1)
    with pytest.raises(EvaluationError, match=r"'genius_toy' reported no metric 'acc,none'.*exact_match,strict-match"):
        evaluate(str(model_dir), cfg, CPU, base_dir=REPO)


@pytest.mark.parametrize("response", ["3+4=7\nA:7", "A:12\nA:59", "1+2=3\nA:03", "A:0", "5+5=10\n", "A:x"])
def test_strict_match_reads_the_answer_like_extract_answer(response):
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.tasks._yaml_loader import load_yaml

    for name in ("genius_toy.yaml", "genius_toy_sampled.yaml"):
        cfg = load_yaml(REPO / "eval" / "genius_toy" / name, resolve_func=False)
        (strict,) = [f for f in cfg["filter_list"] if f["name"] == "strict-match"]
        regex = RegexFilter(**{k: v for k, v in strict["filter"][0].items() if k != "function"})
        (filtered,) = regex.apply([[response]], [{}])[0]
        expected = task.extract_answer(response)
        assert filtered == (str(expected) if expected is not None else "[invalid]")
