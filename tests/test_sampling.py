"""Foresight re-sampling end to end over a scripted engine, on numbers derived by hand.

The fake engine answers every step call with the steps "0\\n", "1\\n", ... (one per sample;
step i's tokens have log-prob -(1 + 0.1 * i)) and rolls each out (the call's `then`) with
"A:5<eos>", whose tokens all have log-prob
    -(0.1 * d + 0.01 * s)
where d is the last step's digit and s the sum of the earlier steps' digits. With the
`rollout` score, a candidate's f is exactly that number. tau is tiny, so exploration keeps
the top-M and the negative is the runner-up.

M = 2, N = 3, K = 2:
  k=1: one empty beam (Q=0); candidates "0","1","2" -> f = 0, -0.1, -0.2.
       beams "0" (Q=0) and "1" (Q=-0.1); pair: w = "0" (A_w = 0), l = "1" (A_l = -0.1).
  k=2: beam "0": f = 0, -0.1, -0.2; beam "1": f = -0.01, -0.11, -0.21.
       pair: w = "0,0" (A_w = 0 - 0 = 0), l = "1,0" (A_l = -0.01 - (-0.1) = 0.09):
       a cross-beam pair in ACO's calibration region.
"""

import pytest

from genius.config import SamplingConfig
from genius.engine import Completion, EngineCost
from genius.pairs import pair_stats
from genius.queries import Query
from genius.sampling import foresight_sample, prompt_ids
from genius.toy.tokenizer import build_tokenizer

TOKENIZER = build_tokenizer()


class FakeEngine:
    def __init__(self, step_ends_response=False):
        self.calls, self.step_ends_response, self.cost = [], step_ends_response, EngineCost()

    def generate(self, prompts, *, n, temperature, max_new_tokens, stop, then=None):
        self.calls.append((len(prompts), n, stop, then is not None))
        out = [[self._complete(p, i, stop) for i in range(n)] for p in prompts]
        for p, completions in zip(prompts, out):
            for c in completions:
                if then and c.finish_reason != "eos":  # the rollout goes on from the step
                    c.continuation = self._complete(p + c.token_ids, 0, None)
        return out

    def _complete(self, prompt, i, stop):
        text = TOKENIZER.decode(prompt, skip_special_tokens=True)
        response = text.split("\n", 1)[1]  # what follows the "Q:..." line
        if stop is not None:
            if self.step_ends_response:
                ids = TOKENIZER(f"A:{i}", add_special_tokens=False)["input_ids"] + [TOKENIZER.eos_token_id]
                return Completion(ids, [-0.1 * i] * len(ids), "eos")
            ids = TOKENIZER(f"{i}\n", add_special_tokens=False)["input_ids"]
            return Completion(ids, [-(1 + 0.1 * i)] * len(ids), "stop")
        digits = [int(line) for line in response.split("\n") if line]
        lp = -(0.1 * digits[-1] + 0.01 * sum(digits[:-1]))
        ids = TOKENIZER("A:5", add_special_tokens=False)["input_ids"] + [TOKENIZER.eos_token_id]
        return Completion(ids, [lp] * len(ids), "eos")


def config(**kw):
    base = dict(
        step_beam_size=2, num_rollouts=3, num_foresight_steps=2, tau=1e-6, foresight_score="rollout", batch_queries=8
    )
    return SamplingConfig(**(base | kw))


def test_exploration_exploitation_and_advantages_on_fixed_numbers():
    queries = [Query("a", "1+2+3"), Query("b", "4+5+6")]
    engine = FakeEngine()
    records = list(foresight_sample(engine, TOKENIZER, queries, config()))

    # one engine call per timestamp for the whole batch: every live beam's steps, each rolled out
    assert engine.calls == [(2, 3, "\n", True), (4, 3, "\n", True)]
    assert [r["query_id"] for r in records] == ["a", "b"]
    for r in records:
        k1, k2 = r["timestamps"]
        assert [c["score"] for c in k1["candidates"]] == pytest.approx([0.0, -0.1, -0.2])
        assert k1["selected"] == [0, 1] and (k1["chosen"], k1["rejected"]) == (0, 1)
        assert [b["value"] for b in k2["beams"]] == pytest.approx([0.0, -0.1])
        assert [c["score"] for c in k2["candidates"]] == pytest.approx([0.0, -0.1, -0.2, -0.01, -0.11, -0.21])
        assert (k2["chosen"], k2["rejected"]) == (0, 3)

        p1, p2 = r["pairs"]
        assert (p1["chosen"], p1["rejected"]) == ("0\nA:5", "1\nA:5")
        assert p1["adv_chosen"] == pytest.approx(0.0) and p1["adv_rejected"] == pytest.approx(-0.1)
        assert p1["same_beam"]
        assert (p2["chosen"], p2["rejected"]) == ("0\n0\nA:5", "1\n0\nA:5")
        assert p2["adv_chosen"] == pytest.approx(0.0) and p2["adv_rejected"] == pytest.approx(0.09)
        assert not p2["same_beam"] and p2["chosen_complete"]
        assert r["final_response"]["response"] == "0\n0\nA:5"

    stats = pair_stats([p for r in records for p in r["pairs"]], len(records))
    assert stats["pairs"] == 4 and stats["calibration_region_fraction"] == 0.5 and stats["same_beam_fraction"] == 0.5


def test_beams_that_end_the_response_stop_early():
    engine = FakeEngine(step_ends_response=True)
    cfg = config(foresight_score="rollout", num_foresight_steps=4)
    (record,) = foresight_sample(engine, TOKENIZER, [Query("a", "1+2")], cfg)
    # every candidate step ended the response: nothing rolled out, no second timestamp
    assert engine.calls == [(1, 3, "\n", True)]
    assert len(record["timestamps"]) == 1
    (pair,) = record["pairs"]
    # with no rollout the score is the step's own mean log-prob, -0.1 * i
    assert (pair["chosen"], pair["rejected"]) == ("A:0", "A:1")


def test_uniform_negative_and_full_score_options_run():
    records = list(
        foresight_sample(
            FakeEngine(), TOKENIZER, [Query("a", "1+2")], config(negative_selection="uniform", foresight_score="full")
        )
    )
    assert all(p["score_chosen"] >= p["score_rejected"] for p in records[0]["pairs"])


def test_no_foresight_scores_the_step_and_rolls_nothing_out():
    # `step` score, the paper's "w/o foresight": f = the step's own mean log-prob, -(1 + 0.1 i)
    engine = FakeEngine()
    (record,) = foresight_sample(engine, TOKENIZER, [Query("a", "1+2")], config(foresight_score="step"))
    assert engine.calls == [(1, 3, "\n", False), (2, 3, "\n", False)]  # no rollouts asked for
    k1, k2 = record["timestamps"]
    assert [c["score"] for c in k1["candidates"]] == pytest.approx([-1.0, -1.1, -1.2])
    assert all(c["rollout"] == "" for c in k1["candidates"] + k2["candidates"])
    # k=2: both beams' candidates score -1.0, -1.1, -1.2; the positive is the first -1.0 (beam
    # "0"), the near-greedy negative the other -1.0 (beam "1", Q = -1.1): A_l = -1.0 + 1.1 = 0.1
    assert [c["score"] for c in k2["candidates"]] == pytest.approx([-1.0, -1.1, -1.2] * 2)
    p1, p2 = record["pairs"]
    assert (p1["chosen"], p1["rejected"]) == ("0\n", "1\n")  # prefix + step: no look-ahead
    assert p1["adv_chosen"] == pytest.approx(-1.0) and p1["adv_rejected"] == pytest.approx(-1.1)
    assert (p2["chosen"], p2["rejected"]) == ("0\n0\n", "1\n0\n")
    assert p2["adv_chosen"] == pytest.approx(0.0) and p2["adv_rejected"] == pytest.approx(0.1)
    assert not p2["chosen_complete"]


def test_greedy_selection_takes_top_m_and_the_lowest_negative():
    # `selection: greedy`, the paper's "w/o sampling": a huge tau would make F_k near uniform,
    # yet the beams are the top-M and the negative the lowest-scored, every time
    for seed in range(3):
        (record,) = foresight_sample(
            FakeEngine(), TOKENIZER, [Query("a", "1+2")], config(selection="greedy", tau=100.0, seed=seed)
        )
        k1, k2 = record["timestamps"]
        assert k1["selected"] == [0, 1] and (k1["chosen"], k1["rejected"]) == (0, 2)
        # k=2 scores [0, -0.1, -0.2, -0.01, -0.11, -0.21]: top-2 are 0 and 3, lowest is 5
        assert k2["selected"] == [0, 3] and (k2["chosen"], k2["rejected"]) == (0, 5)
        p2 = record["pairs"][1]
        assert (p2["chosen"], p2["rejected"]) == ("0\n0\nA:5", "1\n2\nA:5")
        assert p2["adv_rejected"] == pytest.approx(-0.21 - (-0.1))


def test_prompt_is_the_chat_template():
    assert TOKENIZER.decode(prompt_ids(TOKENIZER, "1+2")) == "<bos>Q:1+2\n"
