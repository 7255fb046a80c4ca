"""What a lineage keeps on disk (`rounds.keep`), and `genius gc`, which removes the rest.

A round stays whole (every file, its stages in dvc.yaml) when it is the latest promoted
round (the next round starts from it), one of the last `rounds.keep.last` rounds, pinned in
`rounds.keep.pinned`, or without results yet (registered ahead, running, stopped half-way).
Every other round is
retired: its stages leave the pipeline (the registry lists it under `retired:`, outside the
`round_list` that dvc.yaml's stages iterate) and its files leave the workspace and DVC's
cache, but for

- its metrics.json, the round's record (the report, the flow's bookkeeping read it), and
- its checkpoint when a kept round's policy is made of it: a LoRA round needs every adapter
  of its chain, a full fine-tuned round the checkpoint it started from. That checkpoint stays
  where it is, one copy, outside the pipeline as the base model is (a LoRA link's integrity is
  its lineage hashes, genius/engines/lineage.py).

A pipeline stage can neither lose an output nor a dependency and stay clean in `dvc status`,
which is why a retired round leaves the pipeline whole rather than in part. With a default
DVC remote, `dvc push` runs first and nothing is removed if it fails: nothing leaves the cache
unpushed. The cache objects removed are exactly those of the retired rounds' outputs that no
other entry of dvc.lock names (other lineages' files are left alone).

Each step can be rerun after a crash: registry first, then the workspace, then the cache
objects named by the retired rounds' dvc.lock entries, then those entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from genius.config import Params
from genius.config.sections import KeepConfig
from genius.io import write_atomic
from genius.layout import RoundPaths, round_name
from genius.stages.registry import RoundEntry, latest_promoted, read_registry, write_registry

LOCK = ".genius-flow.lock"  # the flow's lock (flows/genius.py): gc never runs beside a flow


class GcError(RuntimeError):
    """gc stopped before removing anything; the message is one line."""


@dataclass(frozen=True)
class Plan:
    kept: tuple[int, ...]  # rounds that stay whole
    retire: tuple[int, ...]  # rounds leaving the pipeline now
    anchors: tuple[int, ...]  # retired rounds (now or before) whose checkpoint a kept round needs


def plan_retention(
    entries: dict[int, RoundEntry],
    keep: KeepConfig,
    needs: Callable[[str], list[str]],
    checkpoint: Callable[[int], str],
    finished: set[int],
) -> Plan:
    """Which rounds stay, go, or leave only their checkpoint behind.

    `needs(policy)`: the folders a policy is read from (`genius.engines.lineage.chain_paths`);
    `checkpoint(r)`: round r's checkpoint folder; `finished`: the rounds with results (metrics.json).
    A round without results is work to do (registered ahead by `genius pipeline`, running, or
    stopped half-way) and stays, and so does the round its policy will come from.
    """
    live = [r for r in sorted(entries) if not entries[r].retired]
    newest = max(entries, default=0)
    current = latest_promoted(entries, before=newest + 1)
    kept = {r for r in live if r > newest - keep.last or r in keep.pinned or r == current or r not in finished}
    needed = {os.path.normpath(p) for r in kept for p in [entries[r].policy, *needs(entries[r].policy)]}
    anchors = {r for r in entries if r not in kept and os.path.normpath(checkpoint(r)) in needed}
    return Plan(tuple(sorted(kept)), tuple(r for r in live if r not in kept), tuple(sorted(anchors)))


def collect(params: Params, log: Callable[[str], None] = print, dry_run: bool = False, hold_lock: bool = True) -> Plan:
    """Apply `rounds.keep` to the lineage: retire what it does not keep, and free its disk.

    `hold_lock`: take the flow's lock (False when the flow, which holds it, calls).
    """
    with _flow_lock() if hold_lock and not dry_run else contextlib.nullcontext():  # the registry is read, then written
        return _collect(params, log, dry_run)


def _collect(params: Params, log: Callable[[str], None], dry_run: bool) -> Plan:
    from genius.engines.lineage import chain_paths

    paths = lambda r: RoundPaths.of(params.rounds.runs_dir, r)  # noqa: E731
    entries = read_registry(params.rounds.registry)
    finished = {r for r in entries if paths(r).metrics.exists()}
    plan = plan_retention(entries, params.rounds.keep, chain_paths, lambda r: str(paths(r).checkpoint), finished)
    gone = [r for r in entries if entries[r].retired or r in plan.retire]
    doomed = [p for r in gone for p in _round_files(paths(r), r in plan.anchors)]
    for r in params.rounds.keep.pinned:
        if entries.get(r) and entries[r].retired:
            log(f"gc: round {r} is pinned, but an earlier gc retired it: only its {paths(r).metrics.name} is left")
    summary = f"keeps round(s) {_span(plan.kept)}" + (f" and the checkpoint(s) of {_span(plan.anchors)}" if plan.anchors else "")
    if not (plan.retire or doomed or _lock_entries(gone)):
        log(f"gc: {summary}; nothing to remove")
        return plan
    log(f"gc: {summary}; retires {_span(plan.retire) or 'none'}; removes {len(doomed)} path(s)")
    if dry_run:
        for path in doomed:
            log(f"  would remove {path}")
        return plan
    dvc = Path(".dvc").is_dir()
    if dvc and plan.retire and _dvc("remote", "default").returncode == 0:  # retired outputs leave the pipeline: push them first
        pushed = _dvc("push", "-q")
        if pushed.returncode:
            raise GcError(f"dvc push failed, so nothing was removed: {_last_line(pushed)}")
    for r in plan.retire:
        entries[r].retired = True
    write_registry(params.rounds.registry, entries)
    for path in doomed:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
    if dvc:
        log(f"gc: {_drop_cache(gone)} object(s) removed from DVC's cache")
    return plan


def _round_files(paths: RoundPaths, anchor: bool) -> list[Path]:
    """A retired round's files but its record, metrics.json (and its checkpoint, when a kept round needs it)."""
    spared = {paths.metrics} | ({paths.checkpoint} if anchor else set())
    return sorted(p for p in paths.dir.iterdir() if p not in spared) if paths.dir.is_dir() else []


def _lock_entries(rounds: list[int], lock_path: Path = Path("dvc.lock")) -> list[str]:
    """The dvc.lock entries of these rounds' stages (`<stage>@r<k>`)."""
    stages = ((yaml.safe_load(lock_path.read_text()) or {}).get("stages") or {}) if lock_path.exists() else {}
    return [name for name in stages if name.endswith(tuple(f"@{round_name(r)}" for r in rounds))] if rounds else []


def _drop_cache(rounds: list[int], lock_path: Path = Path("dvc.lock")) -> int:
    """Remove the cache objects of these rounds' dvc.lock entries that no other entry names; drop the entries."""
    doomed = _lock_entries(rounds, lock_path)
    if not doomed:
        return 0
    from ruamel.yaml import YAML  # DVC's own YAML (1.2): PyYAML would write the string '1e-3' bare, a float to DVC

    yaml_rt = YAML()
    lock = yaml_rt.load(lock_path.read_text())
    stages = lock["stages"]
    cache = Path(_dvc("cache", "dir").stdout.strip() or ".dvc/cache") / "files" / "md5"
    objects = lambda names: {o for n in names for out in stages[n].get("outs", []) for o in _objects(out, cache)}  # noqa: E731
    unused = objects(doomed) - objects([n for n in stages if n not in doomed])
    for oid in sorted(unused, key=lambda o: o.endswith(".dir")):  # listings last: a rerun after a crash still finds their files
        (cache / oid[:2] / oid[2:]).unlink(missing_ok=True)
    for name in doomed:
        del stages[name]
    text = io.StringIO()
    yaml_rt.dump(lock, text)
    write_atomic(lock_path, text.getvalue())
    return len(unused)


def _objects(out: dict, cache: Path) -> set[str]:
    """The cache object ids of one dvc.lock output: a file's md5, or a folder's `.dir` listing and its files."""
    oid = out.get("md5")
    if not oid:
        return set()
    listing = cache / oid[:2] / oid[2:]
    if not oid.endswith(".dir") or not listing.exists():
        return {oid}
    return {oid} | {entry["md5"] for entry in json.loads(listing.read_text())}


def _dvc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def _span(rounds) -> str:
    return ", ".join(map(str, rounds))


@contextlib.contextmanager
def _flow_lock():
    """The flow's lock (flows/genius.py), held while gc changes the registry and the files."""
    with open(LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise GcError(f"a genius flow is running in this project ({f.read().strip()}): run gc after it") from None
        yield
