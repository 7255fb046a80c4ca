"""The whole pipeline on the seconds-scale toy: through the Prefect flow, through `dvc repro`,
and the CLI's errors. Real Prefect (a temporary local server), real git + DVC, real lm-eval.
"""

import sys

import yaml
from conftest import ROOT, git_dvc_init, run, tiny_params
from transformers import AutoModelForCausalLM, AutoTokenizer

from genius.registry import read_registry


def test_flow_runs_rounds_and_checkpoint_loads(project):
    tiny_params(project / "params.yaml", ["tracking.wandb_mode=offline"])
    git_dvc_init(project)
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
    # wandb offline: a run per training round and per evaluation (base included), named so
    records = [f.read_bytes() for f in (project / "runs" / "wandb").glob("wandb/offline-run-*/run-*.wandb")]
    for name in (b"round-1", b"round-2", b"base-eval", b"round-1-eval", b"round-2-eval"):
        assert any(name in r for r in records), f"no wandb run named {name.decode()}"
    # every round judged; the lineage is whole: DVC has nothing left to do
    assert all(e.promoted is not None for e in read_registry(project / "rounds.yaml").values())
    status = run(["dvc", "status"], project)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout


def test_dvc_repro_runs_pipeline_then_nothing(project):
    tiny_params(project / "params.yaml", ["tracking.wandb_mode=disabled"])
    git_dvc_init(project)
    first = run(["dvc", "repro"], project)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in ("toy", "evaluate_base", "sample@r1", "train@r2", "evaluate@r2"):
        assert f"Running stage '{stage}'" in first.stdout
    assert AutoModelForCausalLM.from_pretrained(project / "runs" / "r2" / "checkpoint")
    assert "| 2 |" in (project / "runs" / "report.md").read_text()

    second = run(["dvc", "repro"], project)
    assert second.returncode == 0 and "Running stage" not in second.stdout, second.stdout
    metrics = run(["dvc", "metrics", "show"], project)
    assert "runs/r2/metrics.json" in metrics.stdout


def test_shipped_registry_matches_num_rounds():
    registry = read_registry(ROOT / "rounds.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert list(registry) == list(range(1, params["rounds"]["num_rounds"] + 1))
    assert registry[1].policy == params["model"]["path"]


def test_cli_errors_name_the_problem(project):
    bad = run([sys.executable, "-m", "genius", "-S", "sampling.tau=-1", "report"], project)
    assert bad.returncode == 2 and "sampling.tau: must be > 0" in bad.stderr
    missing = run([sys.executable, "-m", "genius", "-S", "queries.paths=[nowhere.jsonl]", "ingest", "--round", "1"], project)
    assert missing.returncode == 2 and "nowhere.jsonl" in missing.stderr and "Traceback" not in missing.stderr
    unregistered = run([sys.executable, "-m", "genius", "sample", "--round", "7"], project)
    assert unregistered.returncode == 2 and "round 7 is not in rounds.yaml" in unregistered.stderr
