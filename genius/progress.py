"""How far a long stage is, as lines a machine reads back: `progress: 12/64 queries`.

A stage prints these among its other output (sampling per batch of queries, training per
optimizer step, evaluation per task). Whoever runs the stage reads them back with `parse`:
the Prefect tasks turn them into a progress artifact on the run's page (tasks/), a terminal
shows them as they are. `Progress` prints at most one every few seconds, and always the last.
"""

from __future__ import annotations

import re
import time
from typing import Callable

PATTERN = re.compile(r"^progress: (\d+)/(\d+) (\S+)$")


def line(done: int, total: int, unit: str) -> str:
    return f"progress: {done}/{total} {unit}"


def parse(text: str) -> tuple[int, int, str] | None:
    """(done, total, unit) of a progress line; None for any other line."""
    found = PATTERN.match(text.strip())
    return (int(found[1]), int(found[2]), found[3]) if found else None


class Progress:
    """`progress(done)` logs a progress line when `every` seconds passed since the last one, or at the end."""

    def __init__(self, log: Callable[[str], None], total: int, unit: str, every: float = 2.0):
        self.log, self.total, self.unit, self.every = log, total, unit, every
        self.last = float("-inf")

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if done >= self.total or now - self.last >= self.every:
            self.last = now
            self.log(line(done, self.total, self.unit))
