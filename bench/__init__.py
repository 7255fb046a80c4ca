"""Benchmarks and explorations behind README's and docs/RESULTS.md's numbers.

Each is a module run from the project's root, `python -m bench.<name> --help`; they call the
library (and `flows.replicate` for a plan's lineages) and print what they measured.
"""
