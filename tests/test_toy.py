"""The embedded default: the perm task, its splits, and a tiny build that reloads like a hub model."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from genius.config import ToyConfig
from genius.toy import build, task
from genius.toy.build import build_toy

TINY = ToyConfig(seed=3, num_queries=50, num_test=20, num_dev=30, pretrain_steps=20, batch_size=16, hidden_size=32, num_layers=2)


def multiset(p: task.Problem) -> tuple[int, ...]:
    return tuple(sorted(p.numbers))


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "toy"
    logged: list[str] = []
    assert build_toy(TINY, out, log=logged.append) == out
    return out, logged


# ---------------------------------------------------------------------------- task


def test_splits_are_disjoint_as_multisets_and_deterministic():
    pool, test = task.generate_splits(0, 300, 100)
    assert (len(pool), len(test)) == (300, 100)
    keys = [multiset(p) for p in pool + test]
    assert len(set(keys)) == len(keys)  # no reordering of one problem appears twice, in or across splits
    assert task.generate_splits(0, 300, 100) == (pool, test)
    assert task.generate_splits(1, 300, 100) != (pool, test)


def test_solve_adds_up_and_extract_answer_returns_the_sum():
    rng = random.Random(0)
    for _ in range(200):
        p = task.sample_problem(rng)
        assert 3 <= len(p.numbers) <= 5 and p.answer <= 99
        *steps, last = task.solve(p, rng).split("\n")
        assert len(steps) == len(p.numbers) - 1
        used, total = [], None
        for line in steps:
            a, b, c = map(int, re.fullmatch(r"(\d+)\+(\d+)=(\d+)", line).groups())
            assert a + b == c
            assert total is None or a == total  # each step continues from the previous sum
            used += [a, b] if total is None else [b]
            total = c
        assert sorted(used) == sorted(p.numbers)
        assert last == f"A:{p.answer}"
        assert task.extract_answer(task.solve(p, rng)) == p.answer
    assert task.extract_answer("1+2=3\nA:3\nA:4") == 4  # the last answer counts
    assert task.extract_answer("1+2=3") is None


# ---------------------------------------------------------------------------- build


def test_build_writes_unlabelled_pool_and_labelled_test(tiny):
    out, _ = tiny
    queries, test = read_jsonl(out / "queries.jsonl"), read_jsonl(out / "test.jsonl")
    pool, held_out = task.generate_splits(TINY.seed, TINY.num_queries, TINY.num_test)
    assert queries == [{"id": f"q{i:05d}", "query": p.query} for i, p in enumerate(pool)]  # no answers
    assert test == [{"id": f"t{i:05d}", "query": p.query, "answer": str(p.answer)} for i, p in enumerate(held_out)]
    info = json.loads((out / "toy.json").read_text())
    assert info["config"]["pretrain_steps"] == 20 and info["num_parameters"] > 0 and info["wall_seconds"] >= 0
    assert info["steps"] == 20 and info["dev_curve"] == [] and 0 <= info["dev_accuracy"] <= 1  # no target: every step
    assert info["environment"]["threads"] == TINY.threads and info["environment"]["device"] == "cpu"


def test_the_dev_split_is_held_out_from_everything_and_moves_nothing(tiny):
    out, _ = tiny
    dev = read_jsonl(out / "dev.jsonl")
    pool, held_out = task.generate_splits(TINY.seed, TINY.num_queries, TINY.num_test + TINY.num_dev)
    assert task.generate_splits(TINY.seed, TINY.num_queries, TINY.num_test) == (pool, held_out[: TINY.num_test])
    assert dev == [{"id": f"d{i:05d}", "query": p.query, "answer": str(p.answer)} for i, p in enumerate(held_out[TINY.num_test :])]
    assert not {multiset(p) for p in held_out[TINY.num_test :]} & {multiset(p) for p in pool + held_out[: TINY.num_test]}


def test_pretraining_never_sees_a_dev_pool_or_test_problem(tmp_path, monkeypatch):
    seen = {}

    def capture(cfg, tokenizer, excluded, dev, log):
        seen["excluded"], seen["dev"] = excluded, dev
        raise KeyboardInterrupt  # enough: the build stops here and leaves nothing behind

    monkeypatch.setattr(build, "pretrain", capture)
    with pytest.raises(KeyboardInterrupt):
        build_toy(TINY, tmp_path / "toy")
    pool, held_out = task.generate_splits(TINY.seed, TINY.num_queries, TINY.num_test + TINY.num_dev)
    assert seen["dev"] == held_out[TINY.num_test :]
    assert seen["excluded"] == {multiset(p) for p in pool + held_out}  # _training_batch skips these


def test_pretraining_stops_at_the_first_check_that_reaches_the_dev_target(tmp_path, monkeypatch):
    """The stopping rule alone: the dev accuracies are scripted (the real ones: tests/test_determinism.py)."""
    scripted = iter([0.10, 0.30, 0.44, 0.45, 0.90])
    monkeypatch.setattr(build, "dev_accuracy", lambda model, tokenizer, dev: next(scripted))
    cfg = TINY.model_copy(update={"pretrain_steps": 40, "dev_target": 0.45, "dev_every": 5})
    logged: list[str] = []
    build_toy(cfg, tmp_path / "toy", log=logged.append)
    info = json.loads((tmp_path / "toy" / "toy.json").read_text())
    assert info["steps"] == 20 and info["dev_accuracy"] == 0.45  # the 4th check, at step 4 x 5
    assert info["dev_curve"] == [[5, 0.10], [10, 0.30], [15, 0.44], [20, 0.45]]
    assert "pretrain step 20: dev accuracy 45.0% reached the target 45.0%" in logged


def test_a_target_never_reached_runs_every_step_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "dev_accuracy", lambda model, tokenizer, dev: 0.2)
    cfg = TINY.model_copy(update={"pretrain_steps": 10, "dev_target": 0.45, "dev_every": 5})
    logged: list[str] = []
    build_toy(cfg, tmp_path / "toy", log=logged.append)
    info = json.loads((tmp_path / "toy" / "toy.json").read_text())
    assert info["steps"] == 10 and info["dev_accuracy"] == 0.2 and len(info["dev_curve"]) == 2
    assert "pretrain: dev accuracy never reached 45.0% in 10 steps" in logged


def test_build_is_atomic_and_logs(tiny):
    out, logged = tiny
    assert [p.name for p in out.parent.iterdir()] == ["toy"]  # no temp folders left behind
    assert any("pretrain step 20/20" in line for line in logged)


def test_failed_build_leaves_the_previous_one_untouched(tiny, monkeypatch):
    out, _ = tiny
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "pretrain", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_toy(TINY, out)
    assert [p.name for p in out.parent.iterdir()] == ["toy"]
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_model_reloads_offline_from_safetensors(tiny):
    out, _ = tiny
    files = {p.name for p in (out / "model").iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt")) for f in files)
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    tok = AutoTokenizer.from_pretrained(out / "model")
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tok) and model.config.tie_word_embeddings
    gen = model.generation_config
    assert (gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    prompt = tok.apply_chat_template([{"role": "user", "content": "35+16+8"}], tokenize=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        new = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert new.shape[1] > prompt["input_ids"].shape[1]


def test_chat_template_round_trips(tiny):
    out, _ = tiny
    tok = AutoTokenizer.from_pretrained(out / "model")
    response = "35+8=43\n43+16=59\nA:59"
    chat = [{"role": "user", "content": "35+16+8"}, {"role": "assistant", "content": response}]
    assert tok.apply_chat_template(chat[:1], tokenize=False) == "<bos>Q:35+16+8\n"
    ids = tok.apply_chat_template(chat, tokenize=True, return_dict=False)
    prompt_ids = tok.apply_chat_template(chat[:1], tokenize=True, return_dict=False)
    assert ids[: len(prompt_ids)] == prompt_ids  # the prompt is a prefix: response-only loss masks relies on it
    assert tok.decode(ids) == "<bos>Q:35+16+8\n" + response + "<eos>"
    assert tok.decode(ids[len(prompt_ids) :], skip_special_tokens=True) == response
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids
