"""A real kill: training runs in a child process that is SIGKILLed mid-epoch; the rerun
resumes at the step of the last saved state and ends with the same weights, bit for bit,
as a run that was never interrupted (CPU, one thread: the arithmetic is deterministic).
"""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import run_until_killed, synthetic_pairs, tiny_model

from genius.config import ModelConfig, TrainingConfig
from genius.training.recipe import train_round

pytestmark = pytest.mark.e2e  # a killed training run, resumed

ROOT = Path(__file__).resolve().parents[1]
# 40 pairs, batch 4: 10 steps per epoch, 20 in all; a state every 3 steps
CFG = TrainingConfig(batch_size=4, epochs=2, learning_rate=1e-3, beta=0.5, save_every=3, threads=1)
KILL_AT = 14  # mid second epoch; the last state is then step 12

CHILD = """
import json, sys, time
sys.path.insert(0, {tests!r})
from genius.config import ModelConfig, TrainingConfig
from genius.algorithm.records import PreferencePair
from genius.training.recipe import train_round

def track(row, step):
    print(f"STEP {{step}}", flush=True)
    time.sleep(0.15)  # leaves the parent time to kill between steps of a seconds-long run

pairs = [PreferencePair.from_json(row) for row in json.load(open({pairs!r}))]
train_round(pairs, {base!r}, {out!r}, TrainingConfig(**{cfg!r}), ModelConfig(device="cpu"), track=track)
"""


def test_killed_run_resumes_at_its_step_and_matches_an_uninterrupted_run(tmp_path):
    base = tiny_model(tmp_path / "base")
    pairs = synthetic_pairs(40, seed=1)
    (tmp_path / "pairs.json").write_text(json.dumps([p.to_json() for p in pairs]))
    killed = tmp_path / "killed"
    code = CHILD.format(
        tests=str(ROOT / "tests"),
        pairs=str(tmp_path / "pairs.json"),
        base=base,
        out=str(killed / "checkpoint"),
        cfg=CFG.__dict__,
    )
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    run_until_killed(code, KILL_AT, env, timeout=60)
    assert not (killed / "checkpoint").exists()
    assert json.loads((killed / "train_state" / "state.json").read_text())["step"] == 12

    logs = []
    resumed = train_round(pairs, base, killed / "checkpoint", CFG, ModelConfig(device="cpu"), log=logs.append)
    assert any(m.startswith("resuming from step 12/20") for m in logs), logs
    assert any(m.startswith("reference log-probs: reused") for m in logs), logs  # not recomputed from trained weights
    assert resumed["resumed_from_step"] == 12 and resumed["steps"] == 20
    steps = [json.loads(line)["step"] for line in (killed / "train_steps.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 21))  # the killed attempt's 12 steps came back with its state
    assert not (killed / "train_state").exists()  # spent once the round is done

    straight = tmp_path / "straight"
    uninterrupted = train_round(pairs, base, straight / "checkpoint", CFG, ModelConfig(device="cpu"))
    for key in (
        "steps",
        "loss_first",
        "loss_last",
        "loss_mean",
        "reward_margin",
        "reward_accuracy",
        "w_mean",
        "lr_peak",
    ):
        assert resumed[key] == uninterrupted[key], key
    a, b = (
        load_file(str(killed / "checkpoint" / "model.safetensors")),
        load_file(str(straight / "checkpoint" / "model.safetensors")),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
