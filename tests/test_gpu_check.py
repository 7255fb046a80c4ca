"""scripts/gpu_check.sh's dry run on a machine without CUDA: every step runs at tiny sizes or
SKIPs saying why, nothing FAILs, and the steps that need CUDA are the ones skipped for it.

The script is what runs on a machine with a GPU; this keeps it working on the machines without
one. `--quick` leaves out the slow CPU-only extras (the paths' own test files, which this
suite runs anyway, and the 8B-shaped bench), so the run stays within a few minutes.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.e2e  # the script's CPU dry run: minutes

ROOT = Path(__file__).resolve().parents[1]
CUDA_ONLY = ("pytest-engine-cuda",)
RUN_FOR_REAL = ("env", "imports", "round-bf16-full", "round-bf16-lora", "kill-resume-bf16", "determinism-bf16", "grpo-bf16", "accelerate-fsdp-1proc")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU dry run: on a GPU run the script itself")
def test_cpu_dry_run_passes_and_skips_only_the_cuda_steps(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "PYTHON": sys.executable,
        "OUT": str(tmp_path / "out"),
        "GPU_CHECK_WHEELS": "0",  # this interpreter has the packages; .whl/ holds Python 3.12 wheels for a device
    }
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--quick"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=2400,  # ~8 min on 2 idle cores, 20+ at load 10
    )  # fmt: skip
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert result.returncode == 0, log[-6000:]
    assert result.stdout == log  # everything printed is in the one log under $OUT
    table = dict(re.findall(r"^\| (\S+)\s+\| (PASS|FAIL|SKIP) ", log, re.M))
    assert "FAIL" not in table.values(), table
    for step in CUDA_ONLY:
        assert table[step] == "SKIP", (step, table)
        assert re.search(rf"^--- \[{step}\] SKIP \(needs CUDA: ", log, re.M), step
    assert table["pytest-gpu-marked"] == "SKIP" and "every -m gpu test skipped cleanly" in log
    # ZeRO-3 needs deepspeed, which the project does not depend on: it runs only where it imports
    assert table["accelerate-zero3-1proc"] in ("PASS", "SKIP")
    for step in RUN_FOR_REAL:
        assert table[step] == "PASS", (step, table)
    assert "resuming from step 2/" in log and "0 step(s) FAILED" in log
    # on a CPU, under the pinned arithmetic, the round twice is byte for byte the same round
    assert re.search(r"^ttrl \{'precision': 'fp32', 'steps': 3,", log, re.M), "the online round's summary line"
    determinism = log.split("=== [determinism-bf16]")[1].split("--- [determinism-bf16]")[0]
    assert "checkpoint/model.safetensors     byte-identical" in determinism and "DIFFERS" not in determinism, determinism
