"""Experiment tracking with wandb: one run per training round, offline unless configured.

Offline mode needs no key and no network; `wandb sync runs/wandb/wandb/offline-run-*` uploads
later. wandb keeps offline metrics only in its binary files, so every stage also writes its
own JSON (`runs/r<k>/*.json`): wandb is a view, never the record.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from genius.config import TrackingConfig


def resolve_mode(mode: str) -> str:
    """`auto` is online once a key is configured, offline otherwise (no key, no network)."""
    if mode != "auto":
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


@contextmanager
def wandb_run(cfg: TrackingConfig, name: str, config: dict, runs_dir: str | Path) -> Iterator[Callable[[dict, int], None] | None]:
    """Yield a `log(row, step)` function, or None when tracking is disabled."""
    if cfg.wandb_mode == "disabled" or int(os.environ.get("RANK", "0")) != 0:  # one run per job, not per GPU
        yield None
        return
    import wandb  # heavy; only when tracking

    directory = Path(runs_dir) / "wandb"
    directory.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(
        project=cfg.wandb_project,
        name=name,
        group=os.environ.get("GENIUS_RUN_GROUP"),
        mode=resolve_mode(cfg.wandb_mode),
        dir=str(directory),
        config=config,
    )
    try:
        yield lambda row, step: run.log(row, step=step)
    finally:
        run.finish()
