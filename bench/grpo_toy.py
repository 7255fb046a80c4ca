"""One GRPO round of each label-free reward on the toy, scored like every round; and a round forced into collapse.

    .venv/bin/genius toy                                   # runs/toy (once)
    nice -n 10 .venv/bin/python -m bench.grpo_toy          # ~15 min of CPU on 2 cores

Arms (each from the toy's base, on the same first --queries queries of the toy's pool, G=8
responses per query at T=1.0, 8 queries a step, one epoch; genius.training.grpo):
  majority_vote   TTRL's reward            self_certainty  INTUITOR's reward
  neg_entropy     RENT's reward            gold            a control, NOT label-free: 1 when the
                                                           answer equals the label (is GRPO itself sound?)
  collapse        majority_vote at --collapse-lr, a learning rate far too high
Each checkpoint is scored by lm-eval (genius.evaluation.harness.evaluate): `genius_toy`,
greedy, and `genius_toy_sampled`, T=1.0, on the 500 held-out problems. The table gives the
round's token budget and, over its first and last eighth of steps, what a user watches:
reward, majority agreement, how often the majority is right (measured with the toy's labels,
never trained on, except by the gold control), token entropy, KL to the reference.

Measured with the code of e1475d7 on the shared 2-core CPU (9 min of CPU, 31 min wall), the toy built by
`genius toy` (30.0% greedy, 19.0% at T=1.0); 512 queries, 64 steps, ~108K response tokens a round:

| arm | lr | reward | majority agreement | majority right | token entropy | KL last | greedy | T=1.0 |
|---|---|---|---|---|---|---|---|---|
| majority_vote | 5e-5 | 0.30 -> 0.33 | 0.30 -> 0.33 | 0.38 -> 0.42 | 0.281 -> 0.250 | 0.020 | 27.2% (-2.8) | 18.4% (-0.6) |
| self_certainty | 5e-5 | 5.92 -> 5.96 | 0.29 -> 0.32 | 0.34 -> 0.19 | 0.278 -> 0.249 | 0.068 | 18.2% (-11.8) | 10.0% (-9.0) |
| neg_entropy | 5e-5 | -0.27 -> -0.24 | 0.29 -> 0.32 | 0.31 -> 0.12 | 0.275 -> 0.243 | 0.129 | 14.4% (-15.6) | 6.4% (-12.6) |
| gold (control) | 5e-5 | 0.20 -> 0.25 | 0.30 -> 0.35 | 0.36 -> 0.44 | 0.287 -> 0.246 | 0.012 | 32.4% (+2.4) | 22.6% (+3.6) |
| collapse | 1e-3 | 0.28 -> 0.99 | 0.28 -> 0.99 | 0.09 -> 0.00 | 0.429 -> 0.209 | 2.259 | 0.6% (-29.4) | 0.6% (-18.4) |

One seed; one standard error on 500 problems is ~2 points. The collapsed policy answers
`A:26` to each of the first 40 test queries (greedy): the group agrees, reward ~1, on one
wrong answer (a 256-query run at the same learning rate settled on `A:88`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from genius.config import EvalConfig, GrpoConfig, ModelConfig, QueriesConfig, TrainingConfig
from genius.data.answers import read_answer
from genius.data.queries import Query
from genius.layout import RoundPaths
from genius.training.grpo_rollout import GroupReward

ROOT = Path(__file__).resolve().parents[1]

ARMS = ("majority_vote", "self_certainty", "neg_entropy", "gold", "collapse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--toy", default=str(ROOT / "runs" / "toy"), help="the built toy (genius toy)")
    parser.add_argument("--out", default="/tmp/genius-grpo-toy", help="checkpoints and results")
    parser.add_argument("--queries", type=int, default=512, help="queries of the round (from the toy's pool)")
    parser.add_argument("--lr", type=float, default=GrpoConfig().learning_rate)
    parser.add_argument("--collapse-lr", type=float, default=1e-3)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="score only the first N test problems (a smoke run)")
    args = parser.parse_args()
    toy, out = Path(args.toy), Path(args.out)
    if not (toy / "model").exists():
        sys.exit(f"{toy}/model does not exist: run `genius toy` first")
    pool = Path(QueriesConfig().paths[0])  # the toy's pool, as the params name it: runs/toy/queries.jsonl
    rows = [json.loads(line) for line in open(toy / pool.name)][: args.queries]
    queries = [Query(r["id"], r["query"]) for r in rows]
    labels = {r["id"]: str(sum(map(int, r["query"].split("+")))) for r in rows}
    results = {"base": score(str(toy / "model"), toy, args.limit)}
    print(f"base: {results['base']}", flush=True)
    for arm in args.arms.split(","):
        cfg = GrpoConfig(learning_rate=args.collapse_lr if arm == "collapse" else args.lr)
        started = time.time()
        metrics = train(arm, cfg, TrainingConfig(seed=args.seed), queries, labels, toy, RoundPaths(out / arm))
        results[arm] = {"train": metrics, "lr": cfg.learning_rate, **score(str(RoundPaths(out / arm).checkpoint), toy, args.limit)}
        results[arm]["seconds"] = time.time() - started
        print(f"{arm}: {results[arm]['greedy']:.3f} greedy, {results[arm]['sampled']:.3f} at T=1.0", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    print(table(results, out))


def train(arm: str, cfg: GrpoConfig, training: TrainingConfig, queries, labels, toy: Path, out: RoundPaths) -> dict:
    from accelerate.state import AcceleratorState

    import genius.training.grpo as grpo

    reward_class = grpo.GroupReward
    if arm == "gold":
        grpo.GroupReward = GoldReward
    try:
        reward = "majority_vote" if arm in ("gold", "collapse") else arm
        return grpo.train_grpo_round(
            queries, str(toy / "model"), out.checkpoint, reward, cfg, training, ModelConfig(),
            lambda response: read_answer(response, "toy"), labels, log=lambda line: print(f"  {arm}: {line}", flush=True),
            work_dir=out.dir,
        )  # fmt: skip
    finally:
        grpo.GroupReward = reward_class
        AcceleratorState._reset_state(reset_partial_state=True)  # the next round's Trainer starts afresh


class GoldReward(GroupReward):
    """The control: reward 1 when the answer equals the label; the vote is still measured."""

    def __call__(self, prompts, completions, completion_ids, label=None, log_metric=None, **kwargs):
        super().__call__(prompts, completions, completion_ids, label=label, log_metric=log_metric, **kwargs)
        return [1.0 if self.extract(c[-1]["content"]) == gold else 0.0 for c, gold in zip(completions, label)]


def score(model: str, toy: Path, limit: int | None) -> dict:
    from genius.evaluation.harness import evaluate

    eval_cfg = EvalConfig(diagnostics=False, test_path=str(toy / "test.jsonl"), limit=limit)
    result = evaluate(model, eval_cfg, ModelConfig(), base_dir=ROOT)
    return {"greedy": result["accuracy"]["genius_toy"], "sampled": result["accuracy"]["genius_toy_sampled"]}


def table(results: dict, out: Path) -> str:
    base = results["base"]
    lines = [
        f"| arm | lr | steps | generated tokens | reward | majority agreement | majority right | token entropy | KL last "
        f"| greedy | T=1.0 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| base | | | | | | | | | {base['greedy']:.1%} | {base['sampled']:.1%} |",
    ]
    for arm, r in results.items():
        if arm == "base":
            continue
        steps = [json.loads(line) for line in open(RoundPaths(out / arm).train_steps)]
        k = max(1, len(steps) // 8)
        span = lambda key, fmt: f"{fmt.format(_mean(steps[:k], key))} -> {fmt.format(_mean(steps[-k:], key))}"  # noqa: E731
        lines.append(
            f"| {arm} | {r['lr']:g} | {len(steps)} | {int(r['train']['generated_tokens']):,} | {span('reward', '{:.2f}')} "
            f"| {span('majority_agreement', '{:.2f}')} | {span('majority_correct', '{:.2f}')} | {span('entropy', '{:.3f}')} "
            f"| {steps[-1].get('kl', 0):.3f} | {r['greedy']:.1%} ({r['greedy'] - base['greedy']:+.1%}) "
            f"| {r['sampled']:.1%} ({r['sampled'] - base['sampled']:+.1%}) |"
        )
    return "\n".join(lines)


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else float("nan")


if __name__ == "__main__":
    main()
