"""The trainer, lm-eval and the diagnostics on CUDA (`pytest -m gpu`; scripts/gpu_check.sh runs them).

Without CUDA every test here skips. On a GPU: bf16 autocast training, LoRA with the reference
as the base with adapters off, a killed run resumed, lm-eval's HF model and the diagnostics,
all on the 2-layer model of tests/train_helpers.py. GPU kernels are not bit-reproducible the
way one CPU thread is, so comparisons take tolerances where test_train*.py take equalities.
"""

import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import run_until_killed, synthetic_pairs, tiny_model

from genius.config import EvalConfig, ModelConfig, SamplingConfig, TrainingConfig
from genius.training.recipe import train_round

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False)"),
]

ROOT = Path(__file__).resolve().parents[1]
CUDA = ModelConfig(device="cuda")
CPU = ModelConfig(device="cpu")
CFG = TrainingConfig(batch_size=8, epochs=2, learning_rate=1e-3, beta=0.5, threads=1)  # mixed_precision: auto


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("base") / "model")


@pytest.fixture(scope="module")
def pairs():
    return synthetic_pairs(20)


def weights(folder) -> dict:
    return load_file(str(Path(folder) / "model.safetensors"))


def fresh_accelerator_state() -> None:
    """accelerate keeps one device and precision per process; a stage trains once per process, this
    test switches between GPU and CPU, so it starts accelerate's state afresh at each switch."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_autocast_training_on_cuda(pairs, base, tmp_path):
    logs = []
    gpu = train_round(pairs, base, tmp_path / "gpu" / "checkpoint", CFG, CUDA, log=logs.append)
    assert gpu["precision"] == "bf16", logs  # auto: bf16 autocast on a GPU that has it
    assert gpu["steps"] == 6 and all(math.isfinite(gpu[k]) for k in ("loss_first", "loss_last"))
    assert any(not torch.equal(weights(tmp_path / "gpu" / "checkpoint")[k], v) for k, v in weights(base).items())
    fresh_accelerator_state()
    cpu = train_round(pairs, base, tmp_path / "cpu" / "checkpoint", CFG, CPU)
    # step 1's loss is the same maths: bf16 matmuls agree with fp32 to a few parts in a thousand
    assert gpu["loss_first"] == pytest.approx(cpu["loss_first"], rel=2e-2)
    # bf16 weights (model.dtype: bfloat16) train too, in bf16 throughout
    fresh_accelerator_state()
    half = train_round(pairs, base, tmp_path / "bf16" / "checkpoint", CFG, CUDA.model_copy(update={"dtype": "bfloat16"}))
    assert half["steps"] == 6 and math.isfinite(half["loss_last"])


def test_lora_on_cuda_reference_is_the_base_with_adapters_off(pairs, base, tmp_path):
    train_round(pairs, base, tmp_path / "full" / "checkpoint", CFG, CUDA)
    lora = CFG.model_copy(update={"finetune": "lora", "lora_r": 4, "lora_alpha": 8, "learning_rate": 1e-2})
    metrics = train_round(pairs, base, tmp_path / "lora" / "checkpoint", lora, CUDA)
    full_ref = load_file(str(tmp_path / "full" / "reference_logps.safetensors"))["logps"]
    lora_ref = load_file(str(tmp_path / "lora" / "reference_logps.safetensors"))["logps"]
    # same GPU, same precision: the adapters-off forward is the base's own forward
    torch.testing.assert_close(lora_ref, full_ref, rtol=0, atol=1e-3)
    merged = weights(tmp_path / "lora" / "checkpoint")
    assert set(merged) == set(weights(base)) and not any("lora" in k for k in merged)
    assert any(not torch.equal(merged[k], v) for k, v in weights(base).items())
    assert metrics["finetune"] == "lora" and metrics["precision"] == "bf16" and metrics["steps"] == 6


RESUME_CFG = TrainingConfig(batch_size=4, epochs=2, learning_rate=1e-3, beta=0.5, save_every=3, threads=1)
KILL_AT = 14  # 40 pairs, batch 4: 20 steps; the last state before the kill is step 12
CHILD = """
import json, sys, time
sys.path.insert(0, {tests!r})
from genius.config import ModelConfig, TrainingConfig
from genius.algorithm.records import PreferencePair
from genius.training.recipe import train_round

def track(row, step):
    print(f"STEP {{step}}", flush=True)
    time.sleep(0.3)

pairs = [PreferencePair.from_json(row) for row in json.load(open({pairs!r}))]
train_round(pairs, {base!r}, {out!r}, TrainingConfig(**{cfg!r}), ModelConfig(device="cuda"), track=track)
"""


def test_killed_run_resumes_on_cuda(tmp_path):
    base = tiny_model(tmp_path / "base")
    pairs = synthetic_pairs(40, seed=1)
    (tmp_path / "pairs.json").write_text(json.dumps([p.to_json() for p in pairs]))
    killed = tmp_path / "killed"
    code = CHILD.format(
        tests=str(ROOT / "tests"), pairs=str(tmp_path / "pairs.json"), base=base,
        out=str(killed / "checkpoint"), cfg=RESUME_CFG.__dict__,
    )  # fmt: skip
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # gpu_check.sh's wheels stay on it
    run_until_killed(code, KILL_AT, os.environ | {"PYTHONPATH": path}, timeout=120)
    assert json.loads((killed / "train_state" / "state.json").read_text())["step"] == 12

    logs = []
    resumed = train_round(pairs, base, killed / "checkpoint", RESUME_CFG, CUDA, log=logs.append)
    assert any(m.startswith("resuming from step 12/20") for m in logs), logs
    assert any(m.startswith("reference log-probs: reused") for m in logs), logs
    assert resumed["resumed_from_step"] == 12 and resumed["steps"] == 20 and resumed["precision"] == "bf16"
    steps = [json.loads(line)["step"] for line in (killed / "train_steps.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 21)) and not (killed / "train_state").exists()
    straight = train_round(pairs, base, tmp_path / "straight" / "checkpoint", RESUME_CFG, CUDA)
    assert resumed["loss_last"] == pytest.approx(straight["loss_last"], rel=2e-2, abs=1e-3)
    a, b = weights(killed / "checkpoint"), weights(tmp_path / "straight" / "checkpoint")
    for k in a:  # Adam moments, schedule and data order restored: the same run to GPU rounding
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-3)


def probe(pairs, path: Path, n: int) -> Path:
    from genius.toy import task

    answers = [str(task.extract_answer(p.chosen)) for p in pairs[:n]]
    rows = [{"id": str(i), "query": p.query, "answer": a} for i, (p, a) in enumerate(zip(pairs, answers))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_lm_eval_hf_model_on_cuda(pairs, base, tmp_path):
    from genius.evaluation.harness import evaluate

    train_round(pairs, base, tmp_path / "checkpoint", CFG.model_copy(update={"epochs": 1}), CUDA)
    test = probe(pairs, tmp_path / "test.jsonl", 8)
    tasks = ["genius_toy", "genius_toy_sampled"]
    cfg = EvalConfig(include_path=str(ROOT / "eval"), tasks=tasks, test_path=str(test), batch_size=4)
    for model_cfg in (CUDA, CUDA.model_copy(update={"dtype": "bfloat16"})):
        result = evaluate(str(tmp_path / "checkpoint"), cfg, model_cfg)
        assert result["num_samples"] == {"genius_toy": 8, "genius_toy_sampled": 8}
        assert all(0 <= a <= 1 for a in result["accuracy"].values())
    # greedy on the GPU in fp32 reads the same answers as on the CPU, to the odd near-tie
    cpu = evaluate(str(tmp_path / "checkpoint"), cfg.model_copy(update={"tasks": ["genius_toy"]}), CPU)
    gpu = evaluate(str(tmp_path / "checkpoint"), cfg.model_copy(update={"tasks": ["genius_toy"]}), CUDA)
    pairs_of_answers = zip(cpu["samples"]["genius_toy"], gpu["samples"]["genius_toy"])
    same = sum(a["answer"] == b["answer"] for a, b in pairs_of_answers)
    assert same >= 6, (cpu["samples"], gpu["samples"])


def test_diagnostics_on_cuda(pairs, base, tmp_path):
    from genius.evaluation.diagnostics import diagnose_checkpoint

    path = probe(pairs, tmp_path / "probe.jsonl", 8)
    cfg = EvalConfig(diagnostics_path=str(path), diagnostics_problems=8, diagnostics_samples=4)
    small = SamplingConfig(num_foresight_steps=3, max_rollout_tokens=48, batch_queries=8)
    for model_cfg in (CUDA, CUDA.model_copy(update={"dtype": "bfloat16"})):
        out = diagnose_checkpoint(base, cfg, model_cfg, small)
        s = out["summary"]
        assert s["problems"] == 8 and s["samples_per_problem"] == 4 and len(out["problems"]) == 8
        assert s["random_sample"] <= s["pass_at_n"] and s["best_of_n"] <= s["pass_at_n"]
        assert s["step_candidates"] > 8 * 4
        assert all(-30 < x <= 0 for p in out["problems"] for x in p["scores"])


def test_lora_chain_on_cuda_in_bf16(pairs, base, tmp_path):
    """Two LoRA rounds trained on CUDA (bf16 autocast), the second on the first merged; round 2's
    policy loaded in bf16 on CUDA keeps its adapters (tests/test_lora_chain.py, where the CPU's
    numbers are: chain 4.5e-4, base 3.8e-4, effect 9.2e-2 nats per token)."""
    from test_lora_chain import bf16_gaps

    from genius.toy.tokenizer import build_tokenizer

    lora = CFG.model_copy(update={"finetune": "lora", "lora_r": 4, "lora_alpha": 8, "learning_rate": 1e-2})
    fresh_accelerator_state()
    r1, r2 = str(tmp_path / "r1" / "checkpoint"), str(tmp_path / "r2" / "checkpoint")
    assert train_round(pairs, base, r1, lora, CUDA)["precision"] == "bf16"
    fresh_accelerator_state()
    train_round(pairs, r1, r2, lora.model_copy(update={"lora_r": 2, "lora_alpha": 4}), CUDA)
    tokenizer = build_tokenizer()
    ids = [tokenizer(f"Q:{p.query}\n{p.chosen}").input_ids for p in synthetic_pairs(6, seed=1)]
    sequences = [i[: min(map(len, ids))] for i in ids]
    gaps = bf16_gaps(base, r2, sequences, "cuda")
    print(f"bf16 chain on CUDA: {gaps}")
    assert gaps["chain"] < 3 * gaps["base"] and gaps["chain"] < gaps["effect"] / 20, gaps
