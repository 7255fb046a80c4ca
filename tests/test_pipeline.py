"""The whole pipeline on the seconds-scale toy: through the Prefect flow, through `dvc repro`,
and the CLI's errors. Real Prefect (a temporary local server), real git + DVC, real lm-eval.
"""

import re
import shutil
import sys

import pytest
import yaml
from conftest import ROOT, git_dvc_init, run, tiny_params
from transformers import AutoModelForCausalLM, AutoTokenizer

from genius.registry import read_registry


@pytest.mark.e2e
def test_flow_runs_rounds_and_checkpoint_loads(project):
    tiny_params(project / "params.yaml", ["tracking.wandb_mode=offline"])
    git_dvc_init(project)
    result = run([sys.executable, "-m", "flows.genius"], project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert out.count("Running stage 'ingest@r1'") == 1 and "To enable auto staging" not in out  # each line once, no hints
    again = run([sys.executable, "-m", "flows.genius"], project)  # nothing to do: one dvc status, no stage walked
    said = again.stdout + again.stderr  # the flow's prints are Prefect log lines (stderr)
    assert again.returncode == 0 and "rounds 1-2: finished and intact" in said, said[-3000:]
    assert "up to date, skipped" not in said and "Error logging to API" not in said
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


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_cli_errors_name_the_problem(project):
    bad = run([sys.executable, "-m", "genius", "-S", "sampling.tau=-1", "report"], project)
    assert bad.returncode == 2 and "sampling.tau: must be > 0" in bad.stderr
    missing = run([sys.executable, "-m", "genius", "-S", "queries.paths=[nowhere.jsonl]", "ingest", "--round", "1"], project)
    assert missing.returncode == 2 and "nowhere.jsonl" in missing.stderr and "Traceback" not in missing.stderr
    unregistered = run([sys.executable, "-m", "genius", "sample", "--round", "7"], project)
    assert unregistered.returncode == 2 and "round 7 is not in rounds.yaml" in unregistered.stderr
    after = run([sys.executable, "-m", "genius", "report", "-S", "sampling.tau=-1"], project)  # -S after the subcommand too
    assert after.returncode == 2 and "sampling.tau: must be > 0" in after.stderr
    for r in ("0", "-1"):
        nonround = run([sys.executable, "-m", "genius", "ingest", "--round", r], project)
        assert nonround.returncode == 2 and "expected a round number >= 1" in nonround.stderr
    assert not (project / "runs" / "base").exists() and not (project / "runs" / "r-1").exists()


@pytest.mark.e2e
def test_bad_model_folders_are_one_line_errors(tmp_path):
    from genius.engine import check_model

    only_config = tmp_path / "only-config"
    only_config.mkdir()
    (only_config / "config.json").write_text("{}")
    pickled = tmp_path / "pickled"
    shutil.copytree(only_config, pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
    truncated = tmp_path / "truncated"
    shutil.copytree(only_config, truncated)
    (truncated / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": ")
    (truncated / "tokenizer.json").write_text("{}")
    cases = {
        str(tmp_path / "nowhere"): "does not exist",
        str(only_config): "has no *.safetensors weights",
        str(pickled): "only pytorch_model.bin: pickled weights are never loaded",
        str(truncated): "model.safetensors is corrupt or truncated",
    }
    for path, message in cases.items():
        with pytest.raises(FileNotFoundError, match=re.escape(message)):
            check_model(path)
    # through the CLI: one line and exit 2; --debug shows the traceback instead
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    params = ["-S", "toy.enabled=false", "-S", f"model.path={truncated}", "-S", "rounds.registry=none.yaml"]
    quiet = run([sys.executable, "-m", "genius", *params, "evaluate", "--round", "0"], tmp_path)
    assert quiet.returncode == 2 and quiet.stderr.count("\n") == 1 and "corrupt or truncated" in quiet.stderr, quiet.stderr
    loud = run([sys.executable, "-m", "genius", *params, "evaluate", "--round", "0", "--debug"], tmp_path)
    assert loud.returncode != 0 and "Traceback" in loud.stderr
