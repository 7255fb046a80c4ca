"""Genius: label-free self-training for LLM reasoning (foresight re-sampling + ACO).

Importing the package pins torch's and MKL's CPU arithmetic before any module imports torch,
so every stage computes the same numbers on every x86 machine with AVX2 (genius/numerics.py),
and tells OpenMP's idle threads to sleep rather than spin (genius/openmp.py).
"""

from genius.numerics import pin
from genius.openmp import calm

pin()
calm()
