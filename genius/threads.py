"""Torch's CPU thread count for one phase of work, restored afterwards.

The best count differs by phase on small CPUs: tiny models train 4-20x faster on 1 thread
than on 2, while generation is fine on 2 (measured on 2-core machines), so each stage sets its own.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
