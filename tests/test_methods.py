"""The label-free baselines and the positive controls: their pure parts against hand-derived values.

One group of k = 8 responses serves the voting methods. Their answers (`A:` lines) are
    7, 7, 5, 7, none, 9, 7, 5
so V(7) = 4, V(5) = 2, V(9) = 1 and the unreadable one does not vote: ScPO's pair is
response 0 (the first 7) against response 5 (the only 9), vote shares 4/8 and 1/8, margin
w = 3/8; LMSI keeps responses 0, 1, 3 and 6, each with the majority's share 4/8.
"""

import math

import pytest
import torch

from genius.algorithm.controls import MissingAnswers, oracle_pairs, rft_targets
from genius.algorithm.lmsi import lmsi_targets
from genius.algorithm.records import Response, ResponseGroup, SampleRecord, SftTarget
from genius.algorithm.responses import extremes, sample_responses, whole_response_pair
from genius.algorithm.self_certainty import certainty_pair, response_self_certainty, self_certainty
from genius.algorithm.self_consistency import majority, scpo_pair, votes
from genius.algorithm.self_rewarding import judge, judge_prompt, judged_pair, parse_score
from genius.data.answers import read_answer
from genius.io import read_jsonl
from genius.data.queries import Query
from genius.engines.base import Completion, EngineCost

ANSWERS = ["7", "7", "5", "7", None, "9", "7", "5"]


def group(answers=ANSWERS, query="3+4", qid="q1") -> ResponseGroup:
    texts = [f"r{i}\nA:{a}" if a is not None else f"r{i}\n" for i, a in enumerate(answers)]
    return ResponseGroup(qid, query, tuple(Response(t, (1, 2), a is not None, -0.5) for t, a in zip(texts, answers)))


def read(g: ResponseGroup) -> list:
    return [read_answer(r.text, "toy") for r in g.responses]


# ---------------------------------------------------------------------------- self-consistency, LMSI


def test_votes_skip_unreadable_answers_and_majority_needs_a_unique_top():
    assert votes(ANSWERS) == {"7": 4, "5": 2, "9": 1}
    assert majority(ANSWERS) == ("7", 4)
    assert majority(["1", "1", "2", "2", "3"]) is None  # tied top: no majority
    assert majority([None, None]) is None


def test_scpo_pair_is_most_voted_against_least_voted_with_vote_shares():
    g = group()
    assert read(g) == ANSWERS
    p = scpo_pair(g, read(g))
    assert (p.chosen, p.rejected) == (g.responses[0].text, g.responses[5].text)
    assert (p.score_chosen, p.score_rejected) == (0.5, 0.125)
    assert p.adv_chosen - p.adv_rejected == pytest.approx(3 / 8)  # w(x) = (V(y+) - V(y-)) / k: what loss scpo reads
    assert p.timestamp == 1 and p.same_beam and p.chosen_complete


def test_scpo_pair_filters_weak_majorities_and_agreement():
    g = group()
    assert scpo_pair(g, read(g), min_vote_share=0.6) is None  # 4/8 < 0.6
    unanimous = group(["7"] * 7 + [None])
    assert scpo_pair(unanimous, read(unanimous), min_vote_share=0.0) is None  # nothing to reject
    tied = group(["1", "1", "2", "2", "3", "4", "5", "6"])
    assert scpo_pair(tied, read(tied), min_vote_share=0.0) is None


def test_lmsi_keeps_every_response_agreeing_with_the_majority():
    g = group()
    targets = lmsi_targets(g, read(g))
    assert [t.response for t in targets] == [g.responses[i].text for i in (0, 1, 3, 6)]
    assert all(t.score == 0.5 and t.query_id == "q1" for t in targets)
    assert lmsi_targets(g, read(g), min_vote_share=0.75) == []


def test_sft_target_round_trips_and_becomes_a_pair_with_an_empty_negative():
    t = SftTarget("q1", "3+4", "3+4=7\nA:7", True, 0.5)
    assert SftTarget.from_json(t.to_json()) == t
    pair = t.as_pair()
    assert (pair.chosen, pair.rejected, pair.chosen_complete, pair.rejected_complete) == (t.response, "", True, False)
    with pytest.raises(ValueError, match="unknown key"):
        SftTarget.from_json(t.to_json() | {"rejected": ""})


def test_response_group_round_trips():
    g = group()
    assert ResponseGroup.from_json(g.to_json()) == g


# ---------------------------------------------------------------------------- self-certainty


def test_self_certainty_is_zero_for_uniform_and_the_hand_value_for_two_tokens():
    # V = 2, p = (0.75, 0.25): KL(U || p) = -log 2 - (log 0.75 + log 0.25) / 2 = 0.14384...
    logits = torch.tensor([[[0.0, 0.0], [math.log(0.75), math.log(0.25)], [5.0, 5.0]]])
    mask = torch.tensor([[1, 1, 0]])  # the third position is the prompt's: not counted
    expected = (0.0 + (-math.log(2) - (math.log(0.75) + math.log(0.25)) / 2)) / 2
    assert expected == pytest.approx(0.0719205, abs=1e-6)
    assert self_certainty(logits, mask).item() == pytest.approx(expected, abs=1e-6)
    # a sharper distribution is more certain; KL(U || p) -> -log V - (1/V) log p_min grows without bound
    sharp = torch.tensor([[[math.log(0.99), math.log(0.01)]]])
    assert self_certainty(sharp, torch.ones(1, 1)).item() > 1.0
    assert self_certainty(logits, torch.zeros(1, 3)).item() == 0.0


def test_response_self_certainty_is_the_teacher_forced_value(tiny_toy):
    model, tokenizer = tiny_toy
    from genius.algorithm.sampling import prompt_ids

    responses = ["1+2=3\nA:3", "A:9", "12+30=42\n42+5=47\nA:47"]
    ids = [tuple(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in responses]
    groups = [ResponseGroup("a", "1+2", tuple(Response(t, i, False, 0.0) for t, i in zip(responses[:2], ids[:2]))),
              ResponseGroup("b", "12+30+5", (Response(responses[2], ids[2], False, 0.0),))]  # fmt: skip
    expected = []
    for g in groups:  # one row at a time, no padding
        row = []
        for r in g.responses:
            p = prompt_ids(tokenizer, g.query)
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([p + list(r.token_ids)])).logits[0, len(p) - 1 : -1]
            row.append(float((-math.log(logits.shape[-1]) - torch.log_softmax(logits, -1).mean(-1)).mean()))
        expected.append(row)
    for budget in (8192, 40):  # one batch, and batches cut by the token budget
        got = response_self_certainty(model, tokenizer, groups, max_batch_tokens=budget)
        assert [pytest.approx(r, abs=1e-5) for r in expected] == got


def test_certainty_pair_is_highest_against_lowest():
    g = group(["1", "2", "3"])
    p = certainty_pair(g, [0.2, 0.9, 0.1])
    assert (p.chosen, p.rejected, p.score_chosen, p.adv_rejected) == (g.responses[1].text, g.responses[2].text, 0.9, 0.1)
    assert certainty_pair(g, [0.5, 0.5, 0.5]) is None
    assert extremes([None, 0.3, None, 0.1]) == (1, 3) and extremes([None, 0.3]) is None


# ---------------------------------------------------------------------------- self-rewarding


@pytest.mark.parametrize(
    "judgement, score",
    [
        ("The response is relevant... Score: 4", 4.0),
        ("Score: 3\nOn reflection, Score: 5", 5.0),  # the last one counts
        ("Total. score: **2**", 2.0),
        ("Score: 2.5", 2.5),
        ("Score: 7", None),  # not a total on a 5-point rubric
        ("I give it four points.", None),
    ],
)
def test_parse_score(judgement, score):
    assert parse_score(judgement) == score


def test_judge_prompt_is_the_additive_rubric_with_the_query_and_response_in_place():
    text = judge_prompt("What is 2+2?", "It is 4.")
    assert "additive 5-point scoring system" in text and "Bestow a fifth point" in text
    assert "User: What is 2+2?\n<response>It is 4.</response>" in text
    assert text.rstrip().endswith("based on the outlined criteria.") and 'Score: <total points>"' in text


class ScriptedJudge:
    """An engine whose every judgement of response i of a query says `Score: <scores[i]>`."""

    def __init__(self, tokenizer, scores):
        self.tokenizer, self.scores, self.cost, self.num_parameters, self.prompts = tokenizer, scores, EngineCost(), None, []

    def generate(self, prompts, *, n, temperature, max_new_tokens, stop=None, then=None):
        self.prompts += prompts
        out = []
        for i, _ in enumerate(prompts):
            ids = self.tokenizer(f"Score: {self.scores[i]}", add_special_tokens=False)["input_ids"]
            out.append([Completion(ids, [0.0] * len(ids), "eos") for _ in range(n)])
        self.cost.generated_tokens += sum(len(c.token_ids) for cs in out for c in cs)
        return out


def test_judge_scores_every_response_through_the_chat_template_and_pairs_best_with_worst(smollm2_tokenizer):
    g = group(["1", "2", "3"], query="Add 1 and 2.")
    engine = ScriptedJudge(smollm2_tokenizer, ["3", "5", "1"])
    scores, texts, cost = judge(engine, smollm2_tokenizer, [g], judgements=3)
    assert scores == [[3.0, 5.0, 1.0]] and texts[0][1] == ["Score: 5"] * 3 and cost["generated_tokens"] > 0
    assert smollm2_tokenizer.decode(engine.prompts[0]).count("<|im_start|>user") == 1  # the model's chat template
    p = judged_pair(g, scores[0])
    assert (p.chosen, p.rejected, p.score_chosen, p.score_rejected) == (g.responses[1].text, g.responses[2].text, 5.0, 1.0)
    assert judged_pair(g, [4.0, 4.0, None]) is None  # a tie prefers nothing


# ---------------------------------------------------------------------------- controls (use labels)


def candidate(beam, step, rollout, score):
    return {"beam": beam, "step": step, "rollout": rollout, "score": score, "prob": 0.0}


def test_oracle_pairs_take_a_right_positive_and_a_wrong_negative_same_beam_first():
    # k = 1: one empty beam; right: "A:7"; the top-scored right (0) vs the top-scored wrong (2)
    # k = 2: beams "x\n" (value -0.1) and "y\n" (value -0.3). The top right is on beam 1; beam 1's
    # wrong candidate (-0.6) is taken over beam 0's higher-scored wrong one (-0.2).
    t1 = {"k": 1, "beams": [{"prefix": "", "value": 0.0, "finished": False}],
          "candidates": [candidate(0, "3+4=7\n", "A:7", -0.1), candidate(0, "3+4=8\n", "A:8", -0.15),
                         candidate(0, "3+4=9\n", "A:9", -0.05), candidate(0, "3+4=7\n", "A:7", -0.3)],
          "selected": [0, 1], "chosen": 0, "rejected": 1}  # fmt: skip
    t2 = {"k": 2, "beams": [{"prefix": "x\n", "value": -0.1, "finished": False}, {"prefix": "y\n", "value": -0.3, "finished": False}],
          "candidates": [candidate(0, "a\n", "A:1", -0.2), candidate(1, "b\n", "A:7", -0.25), candidate(1, "c\n", "", -0.6)],
          "selected": [], "chosen": None, "rejected": None}  # fmt: skip
    t3 = {"k": 3, "beams": [{"prefix": "", "value": 0.0, "finished": False}],
          "candidates": [candidate(0, "", "A:1", -0.1), candidate(0, "", "A:2", -0.2)], "selected": [], "chosen": None, "rejected": None}  # fmt: skip
    record = SampleRecord("q1", "3+4", (t1, t2, t3), (), None)
    pairs = oracle_pairs([record], {"q1": 7}, "toy")
    assert len(pairs) == 2  # timestamp 3 has no right candidate
    a, b = pairs
    assert (a.timestamp, a.chosen, a.rejected, a.same_beam) == (1, "3+4=7\nA:7", "3+4=9\nA:9", True)
    assert (a.adv_chosen, a.adv_rejected) == (-0.1, -0.05)
    assert (b.timestamp, b.chosen, b.rejected, b.same_beam) == (2, "y\nb\nA:7", "y\nc\n", True)
    assert b.adv_chosen == pytest.approx(0.05) and b.adv_rejected == pytest.approx(-0.3)
    assert b.chosen_complete and not b.rejected_complete  # no answer given: it did not end


def test_oracle_pairs_fall_back_to_another_beam():
    t = {"k": 1, "beams": [{"prefix": "", "value": 0.0, "finished": False}, {"prefix": "", "value": -0.5, "finished": False}],
         "candidates": [candidate(0, "", "A:7", -0.1), candidate(1, "", "A:6", -0.4)], "selected": [], "chosen": None, "rejected": None}  # fmt: skip
    (p,) = oracle_pairs([SampleRecord("q1", "3+4", (t,), (), None)], {"q1": "7"}, "toy")
    assert not p.same_beam and p.adv_rejected == pytest.approx(0.1)


def test_rft_keeps_the_right_responses():
    g = group()
    targets = rft_targets([g], {"q1": 7}, "toy")
    assert [t.response for t in targets] == [g.responses[i].text for i in (0, 1, 3, 6)] and {t.score for t in targets} == {1.0}
    assert rft_targets([group(qid="q2")], {"q2": "5"}, "toy")[1].response == g.responses[7].text


@pytest.mark.parametrize("control", ["oracle", "rft"])
def test_controls_refuse_queries_without_answers(control):
    with pytest.raises(MissingAnswers, match="uses labels: 1 of 2 queries have no answer \\(first: 'q2'\\)"):
        if control == "rft":
            rft_targets([group(qid="q1"), group(qid="q2")], {"q1": 7}, "toy")
        else:
            oracle_pairs([SampleRecord("q1", "", (), (), None), SampleRecord("q2", "", (), (), None)], {"q1": 7, "q2": None}, "toy")


# ---------------------------------------------------------------------------- the shared sampler


class CountingEngine:
    """Returns, for every prompt, n completions whose tokens are drawn from torch's generator."""

    def __init__(self):
        self.cost, self.num_parameters = EngineCost(), 1000

    def generate(self, prompts, *, n, temperature, max_new_tokens, stop=None, then=None):
        self.cost.calls += 1
        self.cost.prefill_tokens += sum(map(len, prompts))
        out = [[Completion(torch.randint(4, 14, (3,)).tolist(), [-1.0, -2.0, -3.0], "eos" if j else "length") for j in range(n)] for _ in prompts]
        self.cost.generated_tokens += 3 * n * len(prompts)
        return out


def test_sample_responses_seeds_each_batch_by_its_first_query_and_reports_its_cost(tiny_toy):
    _, tokenizer = tiny_toy
    queries = [Query(f"q{i}", f"{i}+1") for i in range(5)]
    batches = [queries[:2], queries[2:4], queries[4:]]
    run = list(sample_responses(CountingEngine(), tokenizer, batches, 3, 0.8, 16, seed=0))
    alone = list(sample_responses(CountingEngine(), tokenizer, batches[1:2], 3, 0.8, 16, seed=0))
    assert run[1][0] == alone[0][0]  # batch 1 without batch 0 before it: the same responses
    groups, cost = run[0]
    assert [g.query_id for g in groups] == ["q0", "q1"] and len(groups[0].responses) == 3
    r = groups[0].responses
    assert r[0].mean_logprob == -2.0 and not r[0].complete and r[1].complete
    assert r[0].text == tokenizer.decode(list(r[0].token_ids), skip_special_tokens=True)
    assert cost["generated_tokens"] == 18 and cost["calls"] == 1 and cost["queries"] == 2 and cost["parameters"] == 1000
    assert cost["seconds"] >= 0 and cost["prefill_tokens"] > 0
    other = list(sample_responses(CountingEngine(), tokenizer, batches[1:2], 3, 0.8, 16, seed=1))
    assert other[0][0] != alone[0][0]


def test_whole_response_pair_scores_are_advantages_from_the_empty_prefix():
    g = group(["1", "2"])
    p = whole_response_pair(g, 1, 0, [0.25, 0.75])
    assert (p.score_chosen, p.adv_chosen, p.score_rejected, p.adv_rejected) == (0.75, 0.75, 0.25, 0.25)


# ---------------------------------------------------------------------------- each method through the round's pairs stage


class TextTokenizer:
    """One token per text: enough for a judge whose judgements are scripted (no vocabulary to read a rubric with)."""

    def __init__(self):
        self.texts: list[str] = []

    def __call__(self, text, add_special_tokens=False):
        self.texts.append(text)
        return {"input_ids": [len(self.texts) - 1]}

    def apply_chat_template(self, messages, add_generation_prompt=True):
        return self(messages[0]["content"])

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.texts[i] for i in ids)


def certainty_group() -> ResponseGroup:
    """Three responses of different tokens: different self-certainty, and the judge's three scripted scores."""
    return ResponseGroup("q1", "3+4", tuple(Response(f"r{i}\nA:{i}", ids, True, -0.5) for i, ids in enumerate([(5, 6), (7, 8, 9), (10,)])))


def oracle_record() -> SampleRecord:
    t = {"k": 1, "beams": [{"prefix": "", "value": 0.0, "finished": False}],
         "candidates": [candidate(0, "3+4=7\n", "A:7", -0.1), candidate(0, "3+4=8\n", "A:8", -0.15)],
         "selected": [0, 1], "chosen": 0, "rejected": 1}  # fmt: skip
    return SampleRecord("q1", "3+4", (t,), (whole_response_pair(group(), 0, 5, [0.5] * 8),), None)


# method: (its samples, what its pairs stage writes); every row of the stage table's ROUNDS has a case
ROUND_CASES = {
    "genius": (oracle_record, "pairs", 1),  # the pair its search chose
    "oracle_pairs": (oracle_record, "pairs", 1),  # right A:7 vs wrong A:8
    "self_consistency": (group, "pairs", 1),
    "lmsi": (group, "targets", 4),
    "rft": (group, "targets", 4),  # the four right ones: gold 7
    "self_certainty": (certainty_group, "pairs", 1),
    "self_rewarding": (certainty_group, "pairs", 1),  # judged 3, 5, 1: response 1 vs response 2
}


@pytest.mark.parametrize("name", sorted(ROUND_CASES))
def test_each_method_makes_its_training_data_in_the_pairs_stage(name, tmp_path, monkeypatch, tiny_toy):
    """The wiring from `method.name` to the files: the stage table's row, its `build`, the tools it asks for
    (a scripted judge for self_rewarding: the toy cannot read a rubric), its statistics and cost."""
    from conftest import ROOT

    from genius.algorithm.records import training_pair
    from genius.config import load_params
    from genius.io import write_jsonl
    from genius.layout import RoundPaths
    from genius.stages import rounds, table
    from genius.stages.registry import RoundEntry, write_registry
    from genius.stages.tools import Tools

    offline = {n for n, row in table.ROUNDS.items() if "pairs" in row.stages}
    assert set(ROUND_CASES) == offline, "a method without a case here (an online method: tests/test_grpo_rounds.py)"
    make, kind, count = ROUND_CASES[name]
    (tmp_path / "answers.jsonl").write_text('{"id": "q1", "answer": "7"}\n')
    sets = [f"method.name={name}", f"training.loss={table.ROUNDS[name].losses[0]}", f"method.answers_path={tmp_path / 'answers.jsonl'}",
            f"rounds.runs_dir={tmp_path}", f"rounds.registry={tmp_path / 'rounds.yaml'}"]  # fmt: skip
    params = load_params(ROOT / "params.yaml", sets)
    table.check_method(params)
    write_registry(params.rounds.registry, {1: RoundEntry(1, "the-policy")})
    paths = RoundPaths.of(tmp_path, 1)
    paths.dir.mkdir()
    write_jsonl(paths.samples, [make().to_json()])
    judge = ScriptedJudge(TextTokenizer(), ["3", "5", "1"])
    monkeypatch.setattr(Tools, "engine", lambda self: (judge, judge.tokenizer))
    monkeypatch.setattr(Tools, "model", lambda self: tiny_toy)
    stats = rounds.run_pairs(params, 1, log=lambda _: None)
    assert stats["method"] == name and stats[kind] == count and stats["seconds"] >= 0
    rows = [training_pair(row) for row in read_jsonl(paths.pairs)]  # what the train stage reads
    assert len(rows) == count and (kind == "pairs" or rows[0].rejected == "")
    assert (name in ("self_certainty", "self_rewarding")) == ("tokens" in stats)  # the policy ran again: its cost
    if name == "self_rewarding":
        assert (rows[0].score_chosen, rows[0].score_rejected) == (5.0, 1.0) and stats["judged_fraction"] == 1.0
    assert stats.get("uses_labels", False) == table.ROUNDS[name].labels


# ---------------------------------------------------------------------------- the journey: every method, one round, real stages

# Each method's arm, as configs/replicate.yaml runs it: its loss, whose round-1 samples it chooses among (None:
# its own), what its pairs stage writes. Self-Rewarding runs for its wiring only: the toy cannot read a rubric.
JOURNEY = {
    "genius": ("aco", None, "pairs"),
    "self_consistency": ("scpo", None, "pairs"),
    "lmsi": ("sft", "self_consistency", "targets"),
    "self_certainty": ("dpo", "self_consistency", "pairs"),
    "self_rewarding": ("dpo", "self_consistency", "pairs"),
    "oracle_pairs": ("aco", "genius", "pairs"),  # a control: USES LABELS
    "rft": ("sft", "self_consistency", "targets"),  # a control: USES LABELS
}


@pytest.mark.e2e
def test_every_method_runs_a_round_through_the_stages(tmp_path):
    """The CI journey of the methods: one round of every method and both controls on a tiny toy, each lineage
    run as `make replicate` runs an arm (flows.replicate's prepare and borrow, the round loop of
    genius.stages.lineage, each stage by its `genius` command), samples shared as configs/replicate.yaml
    shares them. The commands run in this process: some thirty interpreter starts would be most of the
    journey's time; tests/test_replicate.py runs them through Prefect and the CLI's processes. Each method writes
    its training records and a metrics.json with its name and cost; the controls are marked as using
    labels in the report and the results table.

    At these sizes (a 30-step toy) the voting methods and the controls may find no data: their choices
    are tested above on hand-made responses; the train stage then keeps the policy."""
    import json

    import yaml
    from conftest import ROOT, TINY

    from flows import replicate as flow
    from genius.stages import cli
    from genius.stages import replicate as rep
    from genius.stages.lineage import run_rounds
    from genius.stages.table import NONE, ROUNDS, start_stages

    offline = {n for n, row in ROUNDS.items() if row.reward is None}  # the online ones: tests/test_grpo_rounds.py
    assert set(JOURNEY) == offline, "a method without an arm here"
    toy = tmp_path / "out" / "toy"
    common = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in TINY)} | {
        "toy.out_dir": str(toy), "model.path": str(toy / "model"), "queries.paths": [str(toy / "queries.jsonl")],
        "eval.test_path": str(toy / "test.jsonl"), "eval.include_path": str(ROOT / "eval"), "eval.diagnostics": False,
        "queries.per_round": 4, "toy.num_test": 8, "sampling.num_rollouts": 2, "method.samples": 2, "method.max_new_tokens": 48,
        "method.judgements": 1, "method.judge_max_new_tokens": 8, "method.answers_path": str(toy / "answers.jsonl"),
        "sampling.threads": 1, "eval.threads": 1,  # a tiny model waits on its second thread, more so beside other tests
    }  # fmt: skip
    arms = {
        name: {"label": name, "set": {"method.name": name, "training.loss": loss}, **({"samples_from": source} if source else {})}
        for name, (loss, source, _) in JOURNEY.items()
    }
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump({"seeds": [0], "out_dir": str(tmp_path / "out"), "params": str(ROOT / "params.yaml"),
                                         "results": str(tmp_path / "RESULTS.md"), "common": common, "arms": arms}))  # fmt: skip
    plan = rep.load_plan(plan_path)

    def genius(outside, stage, r):  # tasks.run_outside, in this process
        if not stage.done(outside.load(), r):
            argv = outside.command(stage, r)[3:]  # after `python -m genius`
            assert cli.main(argv) == 0, f"{outside.label}: genius {' '.join(stage.argv(r))} failed"

    base = flow.lineage(plan, 0, None)
    for stage in start_stages(base.load()):  # the toy, the base model's evaluation
        genius(base, stage, None if stage.rounds == NONE else 0)
    for arm in sorted(plan.arms, key=lambda a: a.source is not None):  # the arms borrowed from first
        outside = flow.lineage(plan, 0, arm)
        params = outside.load()
        flow.prepare(plan, 0, arm, params.model.path)
        if arm.source:
            flow.borrow(plan, 0, arm)
        run_rounds(params, [1], lambda stage, r: genius(outside, stage, r))
    text = rep.write_results(plan, 0, "the methods' journey")
    assert "| base model | – | – | 1 |" in text, text
    seed = tmp_path / "out" / "seed0"
    for name, (_, source, kind) in JOURNEY.items():
        control = name in ("oracle_pairs", "rft")
        assert f"| {name} | {'**yes** (control)' if control else 'no'} | 1 | 1 |" in text, text
        r1 = seed / name / "r1"
        if source:
            assert (r1 / "samples.jsonl").read_bytes() == (seed / source / "r1" / "samples.jsonl").read_bytes()
        metrics = json.loads((r1 / "metrics.json").read_text())
        assert metrics["method"] == {"name": name, "uses_labels": control}
        stats = metrics["pairs"]  # the pairs stage's statistics: what it wrote, as the train stage reads it
        assert stats["method"] == name and stats[kind] == len((r1 / "pairs.jsonl").read_text().splitlines()), stats
        cost = metrics["cost"]
        assert cost["data_tokens"] > 0 and cost["data_seconds"] > 0 and cost["train_seconds"] > 0, cost
        if name in ("self_certainty", "self_rewarding"):  # the policy ran again: its scoring pass, its judgements
            assert stats["tokens"] > 0, stats
        report = (seed / name / "report.md").read_text()
        assert (f"{name} (control: USES LABELS)" in report) == control, report
    assert 0 <= json.loads((seed / "self_rewarding" / "r1" / "metrics.json").read_text())["pairs"]["judged_fraction"] <= 1


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_toy(tmp_path_factory):
    from train_helpers import tiny_model

    from genius.engines.loading import load_model

    return load_model(tiny_model(tmp_path_factory.mktemp("tiny") / "model"), device="cpu")


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)
