"""genius/openmp.py: idle OpenMP threads sleep unless the user chose how they wait."""

import os
import subprocess
import sys

from genius.openmp import calm
from conftest import ROOT


def test_passive_unless_a_wait_policy_was_chosen():
    environ = {}
    assert calm(environ) == {"OMP_WAIT_POLICY": "PASSIVE"} and environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}):
        environ = dict(chosen)
        assert calm(environ) == {} and environ == chosen


def test_importing_genius_sets_it_before_torch_loads():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | {"PYTHONPATH": str(ROOT)}
    code = "import sys, os, genius; print('torch' in sys.modules, os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "PASSIVE"]
