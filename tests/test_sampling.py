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

from genius.algorithm.pairs import pair_stats
from genius.algorithm.sampling import foresight_sample, prompt_ids
from genius.config import SamplingConfig
from genius.data.queries import Query
from genius.engines.base import Completion, EngineCost
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
    assert [r.query_id for r in records] == ["a", "b"]
    for r in records:
        k1, k2 = r.timestamps
        assert [c["score"] for c in k1["candidates"]] == pytest.approx([0.0, -0.1, -0.2])
        assert k1["selected"] == [0, 1] and (k1["chosen"], k1["rejected"]) == (0, 1)
        assert [b["value"] for b in k2["beams"]] == pytest.approx([0.0, -0.1])
        assert [c["score"] for c in k2["candidates"]] == pytest.approx([0.0, -0.1, -0.2, -0.01, -0.11, -0.21])
        assert (k2["chosen"], k2["rejected"]) == (0, 3)

        p1, p2 = r.pairs
        assert (p1.chosen, p1.rejected) == ("0\nA:5", "1\nA:5")
        assert p1.adv_chosen == pytest.approx(0.0) and p1.adv_rejected == pytest.approx(-0.1)
        assert p1.same_beam
        assert (p2.chosen, p2.rejected) == ("0\n0\nA:5", "1\n0\nA:5")
        assert p2.adv_chosen == pytest.approx(0.0) and p2.adv_rejected == pytest.approx(0.09)
        assert not p2.same_beam and p2.chosen_complete
        assert r.final_response["response"] == "0\n0\nA:5"

    stats = pair_stats([p for r in records for p in r.pairs], len(records))
    assert stats["pairs"] == 4 and stats["calibration_region_fraction"] == 0.5 and stats["same_beam_fraction"] == 0.5


def test_beams_that_end_the_response_stop_early():
    engine = FakeEngine(step_ends_response=True)
    cfg = config(foresight_score="rollout", num_foresight_steps=4)
    (record,) = foresight_sample(engine, TOKENIZER, [Query("a", "1+2")], cfg)
    # every candidate step ended the response: nothing rolled out, no second timestamp
    assert engine.calls == [(1, 3, "\n", True)]
    assert len(record.timestamps) == 1
    (pair,) = record.pairs
    # with no rollout the score is the step's own mean log-prob, -0.1 * i
    assert (pair.chosen, pair.rejected) == ("A:0", "A:1")


def test_full_score_and_uniform_negative_on_hand_derived_numbers():
    # `full` scores prefix + step + rollout: "i\n" is 2 tokens at -(1 + 0.1 i), "A:5<eos>" 4 tokens.
    #   k=1: f_i = (2 * -(1 + 0.1 i) + 4 * -0.1 i) / 6 = -1/3 - 0.1 i.
    #   k=2, beam "0" (prefix lp -1.0, d=0), beam "1" (prefix lp -1.1, d=1), step j:
    #        f = (2 * prefix + 2 * -(1 + 0.1 j) + 4 * -(0.1 j + 0.01 d)) / 8
    #          = -0.5 - 0.075 j (beam "0"), -0.53 - 0.075 j (beam "1").
    # tau is tiny, so the beams are the top-2 every time; the negative is uniform among the
    # non-best: over many seeds every other candidate is drawn, about equally often.
    k1_scores = [-1 / 3, -1 / 3 - 0.1, -1 / 3 - 0.2]
    k2_scores = [-0.5, -0.575, -0.65, -0.53, -0.605, -0.68]
    q = [k1_scores[0], k1_scores[1]]  # the values of beams "0" and "1" at k=2
    drawn = {1: [], 2: []}
    seeds = 400
    for seed in range(seeds):
        cfg = config(negative_selection="uniform", foresight_score="full", seed=seed)
        (record,) = foresight_sample(FakeEngine(), TOKENIZER, [Query("a", "1+2")], cfg)
        k1, k2 = record.timestamps
        assert [c["score"] for c in k1["candidates"]] == pytest.approx(k1_scores)
        assert [c["score"] for c in k2["candidates"]] == pytest.approx(k2_scores)
        assert k1["selected"] == [0, 1] and k2["selected"] == [0, 3]
        assert k1["chosen"] == 0 and k2["chosen"] == 0
        p1, p2 = record.pairs
        l1, l2 = k1["rejected"], k2["rejected"]
        drawn[1].append(l1), drawn[2].append(l2)
        # the pair holds the drawn negative's trajectory, score and advantage A = f - Q(its beam)
        assert (p1.chosen, p1.rejected) == ("0\nA:5", f"{l1}\nA:5")
        assert (p1.score_chosen, p1.score_rejected) == pytest.approx((k1_scores[0], k1_scores[l1]))
        assert (p1.adv_chosen, p1.adv_rejected) == pytest.approx((k1_scores[0], k1_scores[l1]))  # Q_0 = 0
        beam, step = divmod(l2, 3)
        assert (p2.chosen, p2.rejected) == ("0\n0\nA:5", f"{beam}\n{step}\nA:5")
        assert (p2.score_chosen, p2.score_rejected) == pytest.approx((k2_scores[0], k2_scores[l2]))
        assert p2.adv_chosen == pytest.approx(k2_scores[0] - q[0])
        assert p2.adv_rejected == pytest.approx(k2_scores[l2] - q[beam])
        assert p2.same_beam == (beam == 0)
        assert record.final_response == {"response": "0\n0\nA:5", "score": pytest.approx(-0.5), "complete": True}
    # uniform: each non-best candidate about 1/2 (k=1) and 1/5 (k=2) of the time; a near-greedy
    # draw at this tau would always give 1 and 3
    for k, rest in ((1, [1, 2]), (2, [1, 2, 3, 4, 5])):
        assert sorted(set(drawn[k])) == rest
        for i in rest:
            assert drawn[k].count(i) / seeds == pytest.approx(1 / len(rest), abs=0.08), (k, i)


def test_tau_resampling_draws_beams_and_negative_from_F_k():
    # tau = 0.1 on the k=1 rollout scores 0, -0.1, -0.2: F_1 = softmax(0, -1, -2). The first
    # beam is a draw from F_1; the negative a draw from F_1 without the best, renormalised:
    # P(l = 1) = e^-1 / (e^-1 + e^-2) = 0.731. Tiny tau would give 0 and 1 every time,
    # uniform draws 1/3 and 1/2.
    import math

    f = [math.exp(-i) for i in range(3)]
    expected_f = [x / sum(f) for x in f]
    first, rejected = [], []
    seeds = 1000
    for seed in range(seeds):
        cfg = config(tau=0.1, num_foresight_steps=1, seed=seed)
        (record,) = foresight_sample(FakeEngine(), TOKENIZER, [Query("a", "1+2")], cfg)
        (k1,) = record.timestamps
        assert [c["prob"] for c in k1["candidates"]] == pytest.approx(expected_f)
        assert len(set(k1["selected"])) == 2 and k1["chosen"] == 0
        first.append(k1["selected"][0]), rejected.append(k1["rejected"])
    for i in range(3):
        assert first.count(i) / seeds == pytest.approx(expected_f[i], abs=0.05), i
    assert rejected.count(0) == 0
    assert rejected.count(1) / seeds == pytest.approx(f[1] / (f[1] + f[2]), abs=0.05)


def test_no_foresight_scores_the_step_and_rolls_nothing_out():
    # `step` score, the paper's "w/o foresight": f = the step's own mean log-prob, -(1 + 0.1 i)
    engine = FakeEngine()
    (record,) = foresight_sample(engine, TOKENIZER, [Query("a", "1+2")], config(foresight_score="step"))
    assert engine.calls == [(1, 3, "\n", False), (2, 3, "\n", False)]  # no rollouts asked for
    k1, k2 = record.timestamps
    assert [c["score"] for c in k1["candidates"]] == pytest.approx([-1.0, -1.1, -1.2])
    assert all(c["rollout"] == "" for c in k1["candidates"] + k2["candidates"])
    # k=2: both beams' candidates score -1.0, -1.1, -1.2; the positive is the first -1.0 (beam
    # "0"), the near-greedy negative the other -1.0 (beam "1", Q = -1.1): A_l = -1.0 + 1.1 = 0.1
    assert [c["score"] for c in k2["candidates"]] == pytest.approx([-1.0, -1.1, -1.2] * 2)
    p1, p2 = record.pairs
    assert (p1.chosen, p1.rejected) == ("0\n", "1\n")  # prefix + step: no look-ahead
    assert p1.adv_chosen == pytest.approx(-1.0) and p1.adv_rejected == pytest.approx(-1.1)
    assert (p2.chosen, p2.rejected) == ("0\n0\n", "1\n0\n")
    assert p2.adv_chosen == pytest.approx(0.0) and p2.adv_rejected == pytest.approx(0.1)
    assert not p2.chosen_complete


def test_greedy_selection_takes_top_m_and_the_lowest_negative():
    # `selection: greedy`, the paper's "w/o sampling": a huge tau would make F_k near uniform,
    # yet the beams are the top-M and the negative the lowest-scored, every time
    for seed in range(3):
        (record,) = foresight_sample(
            FakeEngine(), TOKENIZER, [Query("a", "1+2")], config(selection="greedy", tau=100.0, seed=seed)
        )
        k1, k2 = record.timestamps
        assert k1["selected"] == [0, 1] and (k1["chosen"], k1["rejected"]) == (0, 2)
        # k=2 scores [0, -0.1, -0.2, -0.01, -0.11, -0.21]: top-2 are 0 and 3, lowest is 5
        assert k2["selected"] == [0, 3] and (k2["chosen"], k2["rejected"]) == (0, 5)
        p2 = record.pairs[1]
        assert (p2.chosen, p2.rejected) == ("0\n0\nA:5", "1\n2\nA:5")
        assert p2.adv_rejected == pytest.approx(-0.21 - (-0.1))


def test_prompt_is_the_chat_template():
    assert TOKENIZER.decode(prompt_ids(TOKENIZER, "1+2")) == "<bos>Q:1+2\n"
