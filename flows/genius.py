"""The Genius self-training loop as a Prefect flow: the paper's method, round after round.

Each round: take unseen unlabelled queries, explore and score reasoning steps by foresight
re-sampling with the current policy, turn the selections into preference pairs with
advantages, train with ACO, and score the new policy with lm-eval. The next round samples
with the policy this one trained.

    python -m flows.genius [-S key=value ...]      # what `make run` does
"""

from __future__ import annotations

import argparse
import time

from prefect import flow

import tasks
from genius.config import load_params


@flow(name="genius", log_prints=True)
def genius(params_path: str = "params.yaml", overrides: list[str] | None = None) -> str:
    params = load_params(params_path, overrides)
    if params.toy.enabled:
        tasks.build_toy(params)
    tasks.evaluate(params, 0)  # the base policy, for comparison
    for r in range(1, params.rounds.num_rounds + 1):
        tasks.ingest(params, r)
        tasks.sample(params, r)
        tasks.build_pairs(params, r)
        tasks.train(params, r)
        tasks.evaluate(params, r)
    return tasks.report(params)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Genius flow locally.")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    start = time.time()
    table = genius(args.params, args.set)
    print(f"\n{table}\n\nwall time {time.time() - start:.0f} s; plot: runs/accuracy.png, report: runs/report.md")


if __name__ == "__main__":
    main()
