"""Online RL as rounds of the pipeline: one GRPO round of each reward through `dvc repro`, and a round
forced into collapse that the promotion gate refuses.

The rounds' maths and TRL's loop are tested in test_rewards.py and test_grpo.py; here, the
wiring: `method.name` ttrl, intuitor or rent makes a round ingest -> train -> evaluate, whose
files, metrics, cost and report are those of any round, and whose lineage DVC finds whole.
"""

import json
import sys

import pytest
from conftest import ROOT, git_dvc_init, run, tiny_params

pytest.importorskip("trl", reason="GRPO rounds need TRL: pip install -e '.[rl]'")

from genius.stages.table import ROUNDS  # noqa: E402

ONLINE = {name: row.reward for name, row in ROUNDS.items() if row.reward}
# a GRPO round at CI size: the tiny toy's 6 queries of a round, 2 a step, G = 4
GRPO_TINY = [
    "tracking.wandb_mode=disabled",
    "eval.diagnostics=false",
    "rounds.num_rounds=1",
    "grpo.num_generations=4",
    "grpo.batch_queries=2",
    "grpo.max_completion_tokens=32",
]


def lineage(name: str) -> list[str]:
    return [f"method.name={name}", f"rounds.runs_dir=runs/{name}", f"rounds.registry=rounds-{name}.yaml"]


@pytest.mark.e2e
def test_a_grpo_round_of_each_reward_through_dvc(project):
    """README's GRPO lineages by DVC alone: `genius pipeline` + `dvc repro`, then `dvc status` finds nothing to do."""
    assert ONLINE == {"ttrl": "majority_vote", "intuitor": "self_certainty", "rent": "neg_entropy"}  # each row runs below
    tiny_params(project / "params.yaml", GRPO_TINY)
    git_dvc_init(project)
    for name, reward in ONLINE.items():
        sync = run([sys.executable, "-m", "genius", *[x for s in lineage(name) for x in ("-S", s)], "pipeline"], project)
        assert sync.returncode == 0, sync.stderr
        repro = run(["dvc", "repro"], project)
        assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
        assert "Running stage 'train@r1'" in repro.stdout and "sample@r1" not in repro.stdout and "pairs@r1" not in repro.stdout
        status = run(["dvc", "status"], project)
        assert "Data and pipelines are up to date" in status.stdout, (name, status.stdout)

        r1 = project / "runs" / name / "r1"
        assert {p.name for p in r1.iterdir() if not p.name.startswith(".")} == {
            "queries.jsonl", "ingest_report.json", "checkpoint", "train_steps.jsonl", "train.json", "eval_samples.jsonl",
            "diagnostics.json", "metrics.json",
        }  # no samples, pairs or their statistics  # fmt: skip
        metrics = json.loads((r1 / "metrics.json").read_text())
        assert metrics["method"] == {"name": name, "uses_labels": False, "reward": reward}
        assert "sampling" not in metrics and "pairs" not in metrics
        training = metrics["training"]
        assert training["reward"] == reward and training["steps"] == 3 and training["queries"] == 6
        cost = metrics["cost"]  # the rollouts are the round's data; the rest of the stage its training
        assert cost["data_tokens"] == training["generated_tokens"] + training["prefill_tokens"] > 0
        assert cost["train_tokens"] == training["tokens"] > 0 and 0 < cost["train_seconds"] < training["seconds"]
        steps = [json.loads(line) for line in (r1 / "train_steps.jsonl").read_text().splitlines()]
        for row in steps:  # what a user watches; majority_correct from the toy's labels, measurement only
            assert {"reward", "majority_agreement", "majority_correct", "entropy", "response_length", "kl"} <= set(row)
        report = (project / "runs" / name / "report.md").read_text()
        assert "## Online RL: what the rounds watched" in report and f"| r1 | {reward} |" in report
        assert f"| 1 | {name} | 6 | online, 3 steps |" in report


@pytest.mark.e2e  # ~1 min on a quiet core (the pre-trained toy is built once and cached: ~90 s more)
def test_a_round_forced_into_collapse_is_refused_and_the_next_starts_from_the_last_good_policy(
    tmp_path, monkeypatch, pretrained_toy
):
    """TTRL at grpo.learning_rate 1e-3 (20x the default) on a toy with skill to lose: within 16 steps the groups
    agree on answers that are wrong (here reward 0.20 -> 0.94, the majority right 0 -> 0, greedy 18% -> 0%), as
    bench/grpo_toy.py measured over 64 steps. The round loop (genius.stages.lineage, the flow's) scores it,
    refuses it, and registers round 2 from the base: the collapsed checkpoint is never trained on."""
    from genius.config import load_params
    from genius.stages import lineage
    from genius.stages.registry import read_registry
    from genius.stages.rounds import run_evaluate
    from genius.stages.table import resolve

    monkeypatch.chdir(tmp_path)
    toy = pretrained_toy
    params = load_params(ROOT / "params.yaml", [
        "toy.enabled=false", f"model.path={toy / 'model'}", f"queries.paths=[{toy / 'queries.jsonl'}]", "queries.per_round=128",
        f"eval.test_path={toy / 'test.jsonl'}", f"eval.include_path={ROOT / 'eval'}", "eval.tasks=[genius_toy]", "eval.diagnostics=false",
        "method.name=ttrl", f"method.answers_path={toy / 'answers.jsonl'}", "grpo.learning_rate=1e-3", "grpo.max_completion_tokens=64",
        "rounds.runs_dir=runs", "rounds.registry=rounds.yaml", "tracking.wandb_mode=disabled",
    ])  # fmt: skip
    said: list[str] = []
    base = run_evaluate(params, 0, said.append)
    assert base["accuracy"]["genius_toy"] >= 0.1, "the cached toy has no skill to lose"
    lineage.run_rounds(params, [1], lambda stage, r: resolve(stage.function)(params, r, said.append), base)

    training = json.loads((tmp_path / "runs" / "r1" / "train.json").read_text())
    assert training["steps"] == 16 and training["reward_last"] > training["reward_first"]
    assert training["majority_correct_last"] < training["reward_last"]  # the group agrees, on a wrong answer
    round1 = read_registry("rounds.yaml")[1]
    assert round1.promoted is False and round1.reason.startswith("genius_toy fell to "), round1.reason
    round2 = lineage.register(params, 2)  # what the round loop does next
    assert round2.policy == params.model.path and read_registry("rounds.yaml")[2].policy == params.model.path
    report = (tmp_path / "runs" / "report.md").read_text()
    assert "| r1 | majority_vote |" in report
