"""The whole pipeline on the seconds-scale toy: through the Prefect flow, through `dvc repro`,
and the CLI's errors. Real Prefect (a temporary local server), real git + DVC, real lm-eval.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT, TINY
from transformers import AutoModelForCausalLM, AutoTokenizer

BIN = Path(sys.executable).parent


def run(cmd, cwd, **kw):
    env = os.environ | {"PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, **kw)


def tiny_params(path: Path, extra=()):
    """Rewrite params.yaml in place with the TINY overrides (and `extra`)."""
    data = yaml.safe_load(path.read_text())
    for item in [*TINY, *extra]:
        key, value = item.split("=", 1)
        section, leaf = key.split(".")
        data[section][leaf] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(data))


def test_flow_runs_rounds_and_checkpoint_loads(project):
    tiny_params(project / "params.yaml", ["tracking.wandb_mode=offline"])
    result = run([sys.executable, "-m", "flows.genius"], project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # the closing table: base and two rounds, with the queries each round took
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines] == ["round", "base", "1", "2"]
    assert all(line.split("|")[2].strip() == "6" for line in lines[2:])
    assert (project / "runs" / "accuracy.png").stat().st_size > 1000
    model = AutoModelForCausalLM.from_pretrained(project / "runs" / "r2" / "checkpoint")
    tokenizer = AutoTokenizer.from_pretrained(project / "runs" / "r2" / "checkpoint")
    assert model.config.vocab_size == len(tokenizer)
    assert list((project / "runs" / "wandb").glob("wandb/offline-run-*")), "wandb offline runs expected"


def test_dvc_repro_runs_pipeline_then_nothing(project):
    tiny_params(project / "params.yaml", ["tracking.wandb_mode=disabled"])
    for name in ("genius",):  # dvc.yaml lists the library's files as deps
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".gitignore").write_text("/runs/\n")
    assert run(["git", "init", "-q"], project).returncode == 0
    assert run(["dvc", "init", "-q"], project).returncode == 0
    run(["dvc", "config", "core.analytics", "false"], project)
    run(["git", "add", "-A"], project)
    assert run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], project).returncode == 0

    first = run(["dvc", "repro"], project)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in ("toy", "evaluate_base", "sample@r1", "train@r2", "evaluate@r2", "report"):
        assert f"Running stage '{stage}'" in first.stdout
    assert AutoModelForCausalLM.from_pretrained(project / "runs" / "r2" / "checkpoint")

    second = run(["dvc", "repro"], project)
    assert second.returncode == 0 and "Running stage" not in second.stdout, second.stdout
    metrics = run(["dvc", "metrics", "show"], project)
    assert "runs/r2/metrics.json" in metrics.stdout


def test_dvc_rounds_match_params():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    rounds = dvc["vars"][0]["round_list"]
    assert [v["round"] for v in rounds.values()] == list(range(1, params["rounds"]["num_rounds"] + 1))


def test_cli_errors_name_the_problem(project):
    bad = run([sys.executable, "-m", "genius", "-S", "sampling.tau=-1", "report"], project)
    assert bad.returncode == 2 and "sampling.tau: must be > 0" in bad.stderr
    missing = run([sys.executable, "-m", "genius", "-S", "queries.paths=[nowhere.jsonl]", "ingest", "--round", "1"], project)
    assert missing.returncode == 2 and "nowhere.jsonl" in missing.stderr and "Traceback" not in missing.stderr
