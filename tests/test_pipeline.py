"""The whole pipeline on the seconds-scale toy through `dvc repro`, and the CLI's errors (the
Prefect flow's journey: tests/test_chaos.py). Real git + DVC, real lm-eval.
"""

import re
import shutil
import sys

import pytest
import yaml
from conftest import ROOT, git_dvc_init, run, tiny_params
from transformers import AutoModelForCausalLM

from genius.stages.registry import read_registry


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
    # DVC's views read in a terminal: the headline (rounds.metrics.json) is the metric, a round's
    # metrics.json a plain output; README's `dvc exp show` keeps a few columns
    metrics = run(["dvc", "metrics", "show"], project)
    assert "rounds.metrics.json" in metrics.stdout and "runs/r2/metrics.json" not in metrics.stdout, metrics.stdout
    assert len(metrics.stdout.splitlines()[0].split()) == 1 + 1 + 3 * 2  # Path, round, (base, change, latest) x 2 tasks
    shown = run([*readme_exp_show(), "--csv"], project)
    header = shown.stdout.splitlines()[0].split(",")
    assert shown.returncode == 0 and len(header) == 14, header  # Experiment, Created, round, 6 headline, 5 params
    assert "genius_toy.change" in header and "training.beta" in header


def test_shipped_registry_matches_num_rounds():
    registry = read_registry(ROOT / "rounds.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert list(registry) == list(range(1, params["rounds"]["num_rounds"] + 1))
    assert registry[1].policy == params["model"]["path"]


def readme_exp_show() -> list[str]:
    """README's `dvc exp show` command, as a user copies it."""
    import shlex

    line = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("dvc exp show "))
    return shlex.split(line.split("  #")[0])


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
    from genius.engines.loading import check_model

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
