"""Files the stages write and read: atomic writes, JSON Lines, stable hashes, and a lock on a round.

Every write goes to a temp file beside its target, then one rename: a reader, a resumed run
or a crash sees the old file or the whole new one, never half of it. The temp name is unique
(`.<name>.<random>.tmp`), so two processes (shards, a retried task) writing the same file never share one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator


def write_atomic(path: str | Path, data: str | bytes | Callable[[Path], None]) -> Path:
    """Write `data` (text, bytes, or a function that writes the temp path it is given) to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        if callable(data):
            data(tmp)
        elif isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    return write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows atomically, one JSON object per line; returns the row count."""
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in rows]
    write_atomic(path, "".join(lines))
    return len(lines)


def stable_hash(data: Any, length: int | None = None) -> str:
    """sha256 of `data`'s canonical JSON (keys sorted): equal data, equal hash, on any machine."""
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return digest[:length] if length else digest


class Busy(RuntimeError):
    """Another process holds the lock; the message names it."""


@contextmanager
def hold(path: str | Path, holder: str, shared: bool = False) -> Iterator[None]:
    """Hold the OS lock (flock) on `path` while the block runs; refuse at once, naming the holder, if
    another process holds it. `shared`: several shared holders may hold it at once (sampling shards).

    The kernel drops the lock when its holder ends, `kill -9` included: no stale lock is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            other = f.read().strip().splitlines()
            who = other[-1] if other else "another process"
            raise Busy(f"{path.parent} is held by {who}: wait for it to end, or stop it, then run again") from None
        if not shared:
            f.truncate(0)
        f.write(f"pid {os.getpid()} ({holder}) since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        yield
