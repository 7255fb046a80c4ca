"""The search options of docs/RESULTS.md's four hypotheses, on numbers derived by hand; each
defaults to the behaviour before it.

The scripted engine answers a step call with the steps "0\\n", "1\\n", "0\\n" (sample i's
tokens at log-prob -(1 + 0.1 i)): the third repeats the first. Each step is rolled out as
"A:<j><eos>" where j counts the rollouts of the call, every token at log-prob -0.1 j. With
the `rollout` score and K = 1, the candidates' scores are exactly f = 0, -0.1, -0.2 and
tau is tiny, so the resampled negative is the runner-up:

  default:            pair (0, 1): "0\\nA:0" over "1\\nA:1"
  negative lowest:    pair (0, 2): "0\\nA:0" over "0\\nA:2", a near-copy (the same step)
  + dedup_steps:      candidate 2 is dropped before F_k, the lowest is 1: "0\\nA:0" over "1\\nA:1"
  min_score_gap 0.05: gap 0.1 >= 0.05, the pair stays; 0.15: no pair (the timestamp still
                      records its chosen and rejected candidates)
"""

import math

import numpy as np
import pytest
import torch

from genius.algorithm.foresight import exploit, first_unique
from genius.algorithm.losses import calibration_weight
from genius.algorithm.sampling import foresight_sample
from genius.config import SamplingConfig
from genius.data.queries import Query
from genius.engines.base import Completion, EngineCost
from genius.toy.tokenizer import build_tokenizer

TOKENIZER = build_tokenizer()
STEPS = ["0", "1", "0"]


class RepeatingEngine:
    def __init__(self):
        self.cost = EngineCost()

    def generate(self, prompts, *, n, temperature, max_new_tokens, stop, then=None):
        out = []
        for p in prompts:
            completions = []
            for i in range(n):
                ids = TOKENIZER(f"{STEPS[i]}\n", add_special_tokens=False)["input_ids"]
                c = Completion(ids, [-(1 + 0.1 * i)] * len(ids), "stop")
                if then:
                    r = TOKENIZER(f"A:{i}", add_special_tokens=False)["input_ids"] + [TOKENIZER.eos_token_id]
                    c.continuation = Completion(r, [-0.1 * i] * len(r), "eos")
                completions.append(c)
            out.append(completions)
        return out


def sample(**kw):
    base = {"step_beam_size": 2, "num_rollouts": 3, "num_foresight_steps": 1, "tau": 1e-6, "foresight_score": "rollout"}
    cfg = SamplingConfig(**(base | kw))
    (record,) = foresight_sample(RepeatingEngine(), TOKENIZER, [Query("a", "1+2")], cfg)
    return record


def test_defaults_are_todays_behaviour():
    cfg = SamplingConfig()
    assert cfg.negative_selection == "resample" and cfg.dedup_steps is False and cfg.min_score_gap == 0.0
    record = sample()
    (t,) = record.timestamps
    assert [c["score"] for c in t["candidates"]] == pytest.approx([0.0, -0.1, -0.2])
    (pair,) = record.pairs
    assert (pair.chosen, pair.rejected) == ("0\nA:0", "1\nA:1")


def test_lowest_negative_can_be_a_near_copy():
    (pair,) = sample(negative_selection="lowest").pairs
    assert (pair.chosen, pair.rejected) == ("0\nA:0", "0\nA:2")
    assert pair.score_chosen - pair.score_rejected == pytest.approx(0.2)


def test_dedup_drops_the_repeated_step_before_F_k():
    record = sample(negative_selection="lowest", dedup_steps=True)
    (t,) = record.timestamps
    assert [c["step"] for c in t["candidates"]] == ["0\n", "1\n"]
    assert sum(c["prob"] for c in t["candidates"]) == pytest.approx(1.0)
    (pair,) = record.pairs
    assert (pair.chosen, pair.rejected) == ("0\nA:0", "1\nA:1")


def test_min_score_gap_keeps_or_drops_the_pair():
    assert len(sample(min_score_gap=0.05).pairs) == 1
    record = sample(min_score_gap=0.15)
    assert record.pairs == ()
    (t,) = record.timestamps
    assert (t["chosen"], t["rejected"]) == (0, 1)


def test_exploit_lowest_and_first_unique_pure():
    rng = np.random.default_rng(0)
    assert exploit([0.1, -0.5, 0.3, -0.2], 0.02, rng, "lowest") == (2, 1)
    assert exploit([0.3, -0.5, -0.5], 0.02, rng, "lowest") == (0, 1)  # ties: the earlier one
    assert exploit([0.3], 0.02, rng, "lowest") is None
    assert first_unique(["a", "b", "a", "c", "b"]) == [0, 1, 3]
    assert first_unique([]) == []


def test_calibration_weight_at_small_alpha():
    # gap = A_l - A_w: 0.01 at alpha 0.01 gives exp(-1); 0.003 at alpha 0.003 too; a negative gap gives 1
    adv_w = torch.tensor([0.0, 0.0, 0.02])
    adv_l = torch.tensor([0.01, 0.003, 0.0])
    w = calibration_weight(adv_w, adv_l, 0.01)
    assert w.tolist() == pytest.approx([math.exp(-1), math.exp(-0.3), 1.0])
    w = calibration_weight(adv_w, adv_l, 0.003)
    assert w.tolist() == pytest.approx([math.exp(-10 / 3), math.exp(-1), 1.0])
