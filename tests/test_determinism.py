"""Reproducible to the digit (issue 21): the same inputs give the same bytes, and DVC sees a new environment.

- The toy built twice, in two processes, has byte-identical weights: under the pinned arithmetic,
  under an AVX2 machine's (`ATEN_CPU_CAPABILITY=avx2`, what the pin gives an AVX-512 machine
  too) and under a lower ISA's (`default`: torch's plain C++ kernels). The pinned build is the
  AVX2 build, and the lower ISA's is another: the setting is live, so this test would see the
  pin stop working.
- One round, run twice, writes identical samples, pairs, weights and metrics (timings aside).
- Editing the lock file shows every stage as changed in `dvc status`.
Tiny sizes throughout: the default toy's hashes are in README and the note of issue 21.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, copy_project, git_dvc_init, run, tiny_params

from genius import numerics

BUILD = """
import hashlib, sys
import genius  # pins the arithmetic, unless the environment chose
from genius.config import ToyConfig
from genius.toy.build import build_toy

cfg = ToyConfig(seed=3, num_queries=40, num_test=16, num_dev=24, pretrain_steps=24, dev_target=1.0, dev_every=8,
                batch_size=16, hidden_size=32, num_layers=2)  # dev_target 1.0: every dev check runs, none stops it
out = build_toy(cfg, sys.argv[1], log=lambda m: None)
print(hashlib.sha256((out / "model" / "model.safetensors").read_bytes()).hexdigest())
"""


@pytest.mark.e2e  # five processes, ~10 s of imports each
@pytest.mark.skipif(not {"avx2", "fma"} <= numerics.cpu_flags(), reason="simulating an AVX2 machine needs an AVX2 CPU")
def test_the_toy_is_byte_identical_across_processes_and_pinned_to_avx2(tmp_path):
    base = {k: v for k, v in os.environ.items() if k not in numerics.PINNED} | {"PYTHONPATH": str(ROOT)}
    settings = {
        "pinned-1": {},
        "pinned-2": {},
        "avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
        "default-1": {"ATEN_CPU_CAPABILITY": "default"},
        "default-2": {"ATEN_CPU_CAPABILITY": "default"},
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", BUILD, str(tmp_path / name)], env=base | extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, extra in settings.items()
    }
    sha = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {err[-2000:]}"
        sha[name] = out.split()[-1]
    assert sha["pinned-1"] == sha["pinned-2"] == sha["avx2"]
    assert sha["default-1"] == sha["default-2"]
    assert sha["default-1"] != sha["avx2"]  # a lower ISA rounds otherwise: the capability decides the bytes


def _stable(record):
    """A stage's JSON without what legitimately differs between two runs: timings, speeds, memory,
    and durations written into text ("computed in 12.3s, saved to ...")."""
    if isinstance(record, dict):
        volatile = ("second", "per_s", "memory", "rss", "wall")
        return {k: _stable(v) for k, v in record.items() if not any(w in k for w in volatile)}
    if isinstance(record, str):
        return re.sub(r"\b\d+(\.\d+)?s\b", "<duration>", record)
    return [_stable(v) for v in record] if isinstance(record, list) else record


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.e2e
def test_one_round_twice_gives_identical_metrics(tmp_path, monkeypatch):
    from genius.config import load_params
    from genius.stages import rounds

    results = []
    for name in ("first", "second"):
        project = copy_project(tmp_path / name)
        tiny_params(project / "params.yaml", ["tracking.wandb_mode=disabled", "eval.diagnostics_problems=8"])
        monkeypatch.chdir(project)
        params = load_params("params.yaml")
        rounds.run_toy(params, log=lambda m: None)
        rounds.run_evaluate(params, 0, log=lambda m: None)
        for stage in (rounds.run_ingest, rounds.run_sample, rounds.run_pairs, rounds.run_train, rounds.run_evaluate):
            stage(params, 1, log=lambda m: None)
        runs = project / "runs"
        results.append(
            {
                "toy": _digest(runs / "toy" / "model" / "model.safetensors"),
                "samples": _digest(runs / "r1" / "samples.jsonl"),
                "pairs": _digest(runs / "r1" / "pairs.jsonl"),
                "checkpoint": _digest(runs / "r1" / "checkpoint" / "model.safetensors"),
                "base": _stable(json.loads((runs / "base" / "metrics.json").read_text())),
                "r1": _stable(json.loads((runs / "r1" / "metrics.json").read_text())),
            }
        )
    first, second = results
    assert first["r1"]["pairs"]["pairs"] > 0 and first["r1"]["environment"]["lock"]["hash"]
    assert first == second


def test_every_stage_depends_on_the_lock_and_the_pinned_arithmetic():
    from genius.config import load_params
    from genius.stages.pipeline import file_keys, stages

    table = stages(load_params(ROOT / "params.yaml"), file_keys(ROOT / "params.yaml"))
    for name, stage in table.items():
        deps = stage.get("do", stage)["deps"]
        assert "requirements/lock.txt" in deps and "genius/numerics.py" in deps, name


@pytest.mark.e2e
def test_a_new_lock_shows_the_stage_as_changed(project):
    tiny_params(project / "params.yaml", ["tracking.wandb_mode=disabled"])
    git_dvc_init(project)
    toy = run(["dvc", "repro", "toy"], project)
    assert toy.returncode == 0, toy.stdout[-2000:] + toy.stderr[-2000:]
    assert json.loads(run(["dvc", "status", "--json", "toy"], project).stdout) == {}  # up to date
    lock = project / "requirements" / "lock.txt"
    lock.write_text(lock.read_text().replace("torch==2.13.0+cpu", "torch==2.13.1+cpu"))
    changed = json.loads(run(["dvc", "status", "--json", "toy"], project).stdout)
    assert changed == {"toy": [{"changed deps": {"requirements/lock.txt": "modified"}}]}
