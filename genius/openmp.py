"""OpenMP threads that sleep, not spin, while they wait: set before torch loads.

torch's CPU kernels run on libgomp's threads. A thread that reaches the end of a parallel
region first spins, by libgomp's default 300,000 rounds, waiting for the others. Where other
processes share the cores (the 2-core machines this project is measured on, and any machine
running its stages beside each other), the thread it waits for is often not running, and the
spinning one burns its own time slice to no end. Measured with SmolLM2 on 2 shared cores at
load 6-9 (bench/omp_wait.py, each setting in its own process, interleaved): 2 threads decoded
3.0-7.7 tokens/s with libgomp's default against 28.7-32.1 with one thread, and 27.5-30.6 with
OMP_WAIT_POLICY=PASSIVE. So importing `genius` sets OMP_WAIT_POLICY=PASSIVE unless the user set
OMP_WAIT_POLICY or GOMP_SPINCOUNT. libgomp reads it once, when torch loads, so this runs from
`genius/__init__.py`, as genius/numerics.py does; the processes a stage starts inherit it. It
changes no number, only who waits how.
"""

from __future__ import annotations

import os

WAIT = {"OMP_WAIT_POLICY": "PASSIVE"}


def calm(environ=os.environ) -> dict[str, str]:
    """Set OMP_WAIT_POLICY=PASSIVE unless the user chose a wait policy; return what it set."""
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return {}
    environ.update(WAIT)
    return dict(WAIT)
