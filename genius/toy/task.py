"""The embedded default's reasoning task: add 3-5 numbers, one partial sum per line.

`Q:35+16+8` is answered by adding the numbers in *some* order, one step per line, then the
answer: `35+8=43` / `43+16=59` / `A:59`. Gold solutions use a random order, so the
pre-trained model picks an order almost at random, while some orders are easier than
others (start from the largest number). That gives the model a choice of path whose
consequences only show later: what foresight is for. The single-path chain task of the
first prototype had no headroom for label-free selection at all: best-of-8 by confidence
matched greedy to within 0.5 points (docs/ALGORITHM.md section 4).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from genius.data.answers import toy_answer


@dataclass(frozen=True)
class Problem:
    numbers: tuple[int, ...]

    @property
    def query(self) -> str:
        return "+".join(map(str, self.numbers))

    @property
    def answer(self) -> int:
        return sum(self.numbers)


def sample_problem(rng: random.Random, max_total: int = 99) -> Problem:
    """3-5 numbers, each single-digit with p=0.5 else 10-99, total <= max_total."""
    while True:
        count = rng.randint(3, 5)
        numbers = tuple(rng.randint(1, 9) if rng.random() < 0.5 else rng.randint(10, 99) for _ in range(count))
        if sum(numbers) <= max_total:
            return Problem(numbers)


def solve(problem: Problem, rng: random.Random) -> str:
    """A gold solution: the numbers added in a random order, one partial sum per line."""
    order = list(problem.numbers)
    rng.shuffle(order)
    lines, total = [], order[0]
    for x in order[1:]:
        lines.append(f"{total}+{x}={total + x}")
        total += x
    lines.append(f"A:{total}")
    return "\n".join(lines)


def extract_answer(response: str) -> int | None:
    """The integer after the last `A:` in a response, or None (genius.data.answers reads every task's answers)."""
    return toy_answer(response)


def query_answer(query: str) -> int:
    """The gold answer of a toy query, `35+16+8` -> 59: the sum is in the query itself.

    For measuring and for the label-using controls only: training never sees it.
    """
    return sum(int(x) for x in query.split("+"))


def generate_splits(seed: int, num_queries: int, num_test: int) -> tuple[list[Problem], list[Problem]]:
    """An unlabelled query pool and a labelled test set, disjoint as multisets of numbers.

    Two problems with the same numbers in another order count as the same problem, so no
    test problem is a reordering of a pool query.
    """
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    problems: list[Problem] = []
    while len(problems) < num_queries + num_test:
        p = sample_problem(rng)
        key = tuple(sorted(p.numbers))
        if key not in seen:
            seen.add(key)
            problems.append(p)
    return problems[:num_queries], problems[num_queries:]
