"""reasoning-gym as a query source, a held-out test set disjoint from the pool, and its scorer,
on the real library; the lm-eval tasks and the diagnostics probe end to end on SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genius.config import ConfigError, EvalConfig, ModelConfig, QueriesConfig, SamplingConfig
from genius.data import reasoning_gym as rg
from genius.data.queries import QueryError, ingest, load_pool
from genius.evaluation.diagnostics import diagnose_checkpoint, generated_probe, judge, read_answer
from genius.evaluation.harness import evaluate
from genius.evaluation.tasks import EvaluationError

ARITH = "reasoning_gym:basic_arithmetic?size={size}&seed={seed}&min_terms=2&max_terms=3"
POOL = ARITH.format(size=2000, seed=1)
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- specs


def test_spec_values_take_their_fields_types():
    spec = rg.parse_spec(
        "reasoning_gym:basic_arithmetic?size=5&seed=7&min_terms=2&max_terms=3"
        "&operators=+,-&allow_parentheses=false&format_style=natural"
    )
    assert (spec.name, spec.size, spec.seed) == ("basic_arithmetic", 5, 7)
    assert dict(spec.options) == {
        "min_terms": 2, "max_terms": 3, "operators": ("+", "-"), "allow_parentheses": False, "format_style": "natural"
    }  # fmt: skip
    assert rg.parse_spec(str(spec)) == spec  # the canonical text parses back to the same spec
    assert len(rg.dataset(spec)) == 5


def test_untyped_numbers_parse_as_int_or_float():
    assert rg._parse_value("3", object, "k") == "3"  # a type we do not know: the text as given
    from typing import Any

    assert [rg._parse_value(v, Any, "k") for v in ("3", "-2", "0.5", "1e-3", "abc")] == [3, -2, 0.5, 0.001, "abc"]


@pytest.mark.parametrize(
    "entry, message",
    [
        ("reasoning_gym:no_such_set?size=1&seed=1", "no reasoning-gym dataset 'no_such_set'"),
        ("reasoning_gym:basic_arith?size=1&seed=1", "similar: basic_arithmetic"),
        ("reasoning_gym:basic_arithmetic?size=10", "seed=<integer> is required"),
        ("reasoning_gym:basic_arithmetic?seed=1", "size=<integer> is required"),
        ("reasoning_gym:basic_arithmetic?size=0&seed=1", "size must be >= 1"),
        ("reasoning_gym:basic_arithmetic?size=ten&seed=1", "option size: expected an integer, got 'ten'"),
        ("reasoning_gym:basic_arithmetic?size=1&seed=1&min_terms=2.5", "option min_terms: expected an integer"),
        ("reasoning_gym:basic_arithmetic?size=1&seed=1&terms=3", "basic_arithmetic has no option 'terms'"),
        ("reasoning_gym:basic_arithmetic?size=1&seed=1&seed=2", "option 'seed' given twice"),
        ("reasoning_gym:basic_arithmetic?size=1&seed=1&max_terms", "expected key=value"),
        ("reasoning_gym:basic_arithmetic?size=1&seed=1&allow_negation=yes", "expected true or false"),
        ("reasoning_gym:basic_arithmetic?size=1&seed=1&format_style=fancy", "must be one of simple, natural"),
        ("reasoning_gym:basic_arithmetic?size=1&seed=1&min_terms=5&max_terms=3", "max_terms must be >= min_terms"),
    ],
)
def test_bad_specs_are_refused_by_name(entry, message):
    with pytest.raises(rg.SpecError, match=message.replace("(", r"\(").replace("?", r"\?")):
        rg.parse_spec(entry)


# ---------------------------------------------------------------------------- answers and score


@pytest.mark.parametrize(
    "response, answer",
    [
        ("5 - 3 = 2\nAnswer: 2", "2"),
        ("Answer: 1\nwait, no.\nAnswer: -1,130.", "-1130"),  # the last marker; separators and period go
        ("The answer is **42**", "42"),
        ("answer = $\\boxed{7}$", "7"),
        ("Answer: 5 - 3 = 2", "2"),  # an equation after the marker: its right-hand side
        ("Answer: 2.50", "2.5"),
        ("Answer: 12.0", "12"),
        ("First 4 + 5 = 9, then 9 * 2 = 18.", "18"),  # no marker: the last number
        ("Answer: seven", "seven"),  # non-numeric answers are kept as written
        ("To find the answer, add them.", None),  # "answer" without ":", "=" or "is" is no marker
        ("I cannot tell.", None),
    ],
)
def test_extract_answer(response, answer):
    assert rg.extract_answer(response) == answer
    assert read_answer(response, "reasoning_gym") == answer  # the diagnostics read it the same way


def test_score_is_reasoning_gyms_own():
    """Item 0 of seed 1: "Calculate 5 - 3." (reasoning-gym 0.1.25), gold "2".

    basic_arithmetic keeps the base score_answer: 1 for the exact string, len(gold)/len(answer)
    when the answer merely contains it ("-2" -> 1/2), else 0. Only 1 counts as solved.
    """
    spec = rg.parse_spec(ARITH.format(size=3, seed=1))
    (p, *_) = rg.problems(spec)
    assert (p.question, p.answer, p.id) == ("Calculate 5 - 3.", "2", "rg:basic_arithmetic:1:0")
    assert p.query == "Calculate 5 - 3.\n" + rg.INSTRUCTION
    assert rg.score(spec, 0, "2") == 1.0
    assert rg.score(spec, 0, "-2") == 0.5
    assert rg.score(spec, 0, "3") == 0.0
    assert rg.score(spec, 0, None) == 0.0
    assert rg.is_correct("5 - 3 = 2.\nAnswer: 2", spec, 0)
    assert not rg.is_correct("Answer: -2", spec, 0)  # partial credit is not a solve
    assert not rg.is_correct("5 - 3 = 2.\nAnswer: 3", spec, 0)  # the marked answer wins over other numbers


# ---------------------------------------------------------------------------- ingestion


def test_ingest_writes_queries_without_answers(tmp_path):
    spec = ARITH.format(size=50, seed=1)
    report = ingest(QueriesConfig(paths=[spec], per_round=20), 1, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "queries.jsonl").read_text().splitlines()]
    assert report.round_size == len(rows) == 20
    assert all(set(r) == {"id", "query"} for r in rows)  # no answer field
    by_id = {p.id: p for p in rg.problems(rg.parse_spec(spec))}
    for r in rows:
        assert r["query"] == by_id[r["id"]].query and r["id"].startswith("rg:basic_arithmetic:1:")
    # ids are stable: the same spec gives the same pool
    again, _ = load_pool(QueriesConfig(paths=[spec], per_round=20))
    assert [q.id for q in again][:20] == [r["id"] for r in rows]


def test_spec_mixes_with_files_and_follows_text_and_id_fields(tmp_path):
    (tmp_path / "q.jsonl").write_text(json.dumps({"question": "What is 1+1?"}) + "\n")
    cfg = QueriesConfig(paths=["q.jsonl", ARITH.format(size=10, seed=3)], text_field="question", id_field=None)
    pool, report = load_pool(cfg, tmp_path)
    assert report.by_source[cfg.paths[1]] == {"read": 10, "kept": 10}
    assert len(pool) == 11 and all(q.id.startswith("h") for q in pool)  # id_field None: text hashes


@pytest.mark.parametrize(
    "paths, message",
    [
        (["reasoning_gym:basic_arithmetic?size=10&seed=1&colour=red"], "queries.paths: reasoning_gym:.*colour=red: .*no option 'colour'"),
        (["reasoning_gym:nope?size=10&seed=1"], "queries.paths: reasoning_gym:nope.*no reasoning-gym dataset"),
        ([ARITH.format(size=10, seed=1), ARITH.format(size=20, seed=1)], "same dataset and seed"),
    ],
)
def test_bad_spec_in_queries_paths_is_a_query_error(tmp_path, paths, message):
    with pytest.raises(QueryError, match=message.replace("?", r"\?")):
        ingest(QueriesConfig(paths=paths, per_round=5), 1, tmp_path)


# ---------------------------------------------------------------------------- held-out


def test_held_out_is_disjoint_from_the_pool():
    """Seeds 1 and 11 share items 10.. of seed 1 (reasoning-gym seeds item i with seed + i):
    with 2000 problems from seed 1, nearly all of 200 from seed 11 are in the pool."""
    pool = rg.parse_spec(POOL)
    pool_questions = {rg.question_key(p.question) for p in rg.problems(pool)}
    near, left_out = rg.held_out(rg.parse_spec(ARITH.format(size=200, seed=11)), [pool])
    assert left_out >= 190 and len(near) == 200 - left_out
    far_spec = rg.parse_spec(ARITH.format(size=500, seed=100_000))
    far, far_left_out = rg.held_out(far_spec, [pool])
    collisions = sum(rg.question_key(p.question) in pool_questions for p in rg.problems(far_spec))
    assert far_left_out >= collisions > 0  # distant seeds still collide by chance on short problems
    for kept in (near, far):
        keys = [rg.question_key(p.question) for p in kept]
        assert not set(keys) & pool_questions and len(set(keys)) == len(keys)
    assert rg.held_out(far_spec, [])[1] < far_left_out  # without the pool only repeats go


def test_held_out_ignores_file_sources():
    spec, problems, left_out = rg.held_out_from(ARITH.format(size=20, seed=5000), ["runs/toy/queries.jsonl", POOL])
    assert spec.seed == 5000 and len(problems) == 20 - left_out > 0
    assert all(p.id.startswith("rg:basic_arithmetic:5000:") for p in problems)


# ---------------------------------------------------------------------------- diagnostics probe


def test_generated_probe_and_its_judge():
    probe = generated_probe(ARITH.format(size=30, seed=100_000), [POOL], limit=5)
    assert len(probe) == 5 and set(probe[0]) == {"id", "query", "answer", "spec", "index"}
    right = judge(probe[0], "reasoning_gym")
    assert right(f"Answer: {probe[0]['answer']}") and not right("Answer: 123456789")
    with pytest.raises(ValueError, match="pass pool=queries.paths"):
        generated_probe(ARITH.format(size=30, seed=100_000), None, limit=5)


@pytest.mark.parametrize(
    "test_path, mode", [(ARITH.format(size=5, seed=9), "last_number"), ("runs/toy/test.jsonl", "reasoning_gym")]
)
def test_probe_and_answer_mode_must_agree(test_path, mode, tmp_path):
    cfg = EvalConfig(test_path=test_path, diagnostics_answer=mode)
    with pytest.raises(ConfigError, match="reasoning_gym goes with a reasoning_gym: probe"):
        diagnose_checkpoint("unused", cfg, ModelConfig(device="cpu"), SamplingConfig(), tmp_path, pool=[])


# ---------------------------------------------------------------------------- on SmolLM2

EVAL = EvalConfig(
    tasks=["genius_rg", "genius_rg_sampled"],
    metric="correct,answer",
    test_path=ARITH.format(size=200, seed=100_000),
    limit=3,
    batch_size=3,
    threads=1,  # 2 threads crawled when other jobs shared the 2 cores
    max_gen_toks=96,  # wiring, not accuracy: short responses keep this under a minute or two
    diagnostics_answer="reasoning_gym",
)


def test_generated_test_set_needs_its_pool():
    with pytest.raises(EvaluationError, match="pass pool=queries.paths"):
        evaluate("unused", EVAL, ModelConfig(device="cpu"))


def test_task_scores_hand_made_responses():
    """The genius_rg task as lm-eval builds it: its filter then its process_results, no model."""
    from genius.evaluation.tasks import make_task_manager, task_metadata

    metadata = task_metadata(EVAL.test_path, REPO, [POOL, "runs/toy/queries.jsonl"])
    assert metadata == {"test_path": EVAL.test_path, "pool": [POOL]}
    task = make_task_manager(REPO / "eval", ["genius_rg"], metadata).load(["genius_rg"])["tasks"]["genius_rg"]
    doc = task.test_docs()[0]
    assert doc["id"] == "rg:basic_arithmetic:100000:0" and doc["answer"] == "-5333622"  # 3171 * -1682
    (answer_filter,) = task._filters
    responses = [
        "3171 * -1682 = -5333622\nAnswer: -5333622",  # right
        "So, the answer is: -5,333,622.",  # right, written with separators
        "3171 * -1682 = -5333622, I think.",  # right, no marker: the last number
        "Answer: 5333622",  # the sign is wrong
        "Answer: -5333622 or -5333623",  # hedged: reasoning-gym's partial credit (it contains the gold), not a solve
        "I do not know.",  # nothing to read
    ]
    answers = [[r] for r in responses]  # one response per request, as lm-eval holds them
    for step in answer_filter.filters:  # what FilterEnsemble.apply does: custom (extract), take_first
        answers = step().apply(answers, [doc] * len(responses))
    results = [task.process_results(doc, [a]) for a in answers]
    assert [r["correct"] for r in results] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert [r["score"] for r in results] == [1.0, 1.0, 1.0, 0.0, pytest.approx(8 / 20), 0.0]  # len(gold) / len(answer)


@pytest.mark.e2e
def test_lm_eval_tasks_on_smollm2(smollm2_path):
    out = evaluate(str(smollm2_path), EVAL, ModelConfig(device="cpu"), base_dir=REPO, pool=[POOL])
    assert out["num_samples"] == {"genius_rg": 3, "genius_rg_sampled": 3}
    spec, pool = rg.parse_spec(EVAL.test_path), rg.parse_spec(POOL)
    held, _ = rg.held_out(spec, [pool])
    assert not {rg.question_key(p.question) for p in held} & {rg.question_key(p.question) for p in rg.problems(pool)}
    for task in EVAL.tasks:
        records = out["samples"][task]
        assert [r["id"] for r in records] == [p.id for p in held[:3]]  # the held-out set, in order
        for r, p in zip(records, held):
            # lm-eval's verdict is reasoning-gym's on our own reading of the raw response
            assert r["answer"] == (rg.extract_answer(r["response"]) or "")
            assert r["correct"] == rg.is_correct(r["response"], spec, p.index)
            assert r["target"] == p.answer
        assert out["accuracy"][task] == sum(r["correct"] for r in records) / 3


@pytest.mark.e2e
def test_diagnostics_on_smollm2(smollm2_path):
    small = SamplingConfig(step_beam_size=1, num_rollouts=2, num_foresight_steps=1, max_step_tokens=8, max_rollout_tokens=24)
    cfg = EVAL.model_copy(update={"diagnostics_problems": 2, "diagnostics_samples": 2})
    out = diagnose_checkpoint(str(smollm2_path), cfg, ModelConfig(device="cpu"), small, pool=[POOL])
    s = out["summary"]
    assert s["problems"] == 2 and s["samples_per_problem"] == 2 and s["step_candidates"] == 2 * 2  # problems x M x N at K = 1
    probe = generated_probe(cfg.test_path, [POOL], 2)
    assert [p["id"] for p in out["problems"]] == [p["id"] for p in probe]
