"""A stage's subprocess, watched from its Prefect task: each output line reaches the task's log as it
comes, and the stage's progress lines (genius/progress.py) move a progress artifact on the run's page.

The subprocess dies with the thread that started it (genius/lifeline.py), `kill -9` of the
flow included. A line redrawn in place is logged once, as it last reads when it ends: a bar
redrawn after `\\r`, and a bar tqdm draws below its place (`position=1`, as vLLM's "Processed
prompts" under lm-eval), which ends each redraw with a cursor-up and would otherwise be logged
once a redraw, hundreds of lines an evaluation.
"""

from __future__ import annotations

import os
import subprocess
from collections import deque
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from genius import progress
from genius.lifeline import dies_with_this_process

TAIL = 20  # lines of a failed stage's output its error repeats
CURSOR_UP = "\x1b[A"  # tqdm's: the bar just drawn a line below its place is redrawn there next


class StageFailed(RuntimeError):
    """A stage's process exited non-zero; the message ends with its last lines."""


class ProgressBar:
    """One progress artifact, created at the stage's first progress line and updated at each next one."""

    def __init__(self, name: str):
        self.name, self.id, self.last = name, None, None

    def __call__(self, done: int, total: int, unit: str) -> None:
        percent, description = 100.0 * done / max(total, 1), f"{self.name}: {done}/{total} {unit}"
        if self.id is None:
            self.id = create_progress_artifact(progress=percent, description=description)
        else:
            update_progress_artifact(artifact_id=self.id, progress=percent, description=description)
        self.last = (done, total, unit)

    def finish(self) -> None:
        """The stage exited cleanly: its bar reads full, even if its last progress line was lost
        in the output (a line another stream wrote into before its newline is not parsed)."""
        if self.last and self.last[0] < self.last[1]:
            self(self.last[1], self.last[1], self.last[2])


def stream(cmd: list[str], name: str, cwd: str | Path | None = None, log_file: Path | None = None) -> list[str]:
    """Run `cmd`, its output lines into the task's log (and `log_file`); its lines, or StageFailed with the last ones."""
    log, bar, lines = get_run_logger(), ProgressBar(name), []
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=dies_with_this_process()
    )
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_file, "a") if log_file else None
    if out:
        out.write(f"\n==== {name}\n")

    def take(line: str) -> None:
        lines.append(line)
        if out:
            out.write(line + "\n")
            out.flush()
        reported = progress.parse(line)
        if reported:
            bar(*reported)
        elif line:
            log.info(line)

    redrawn = None  # the text of a bar being redrawn below its place, taken when it stops
    try:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip().rsplit("\r", 1)[-1]
            if CURSOR_UP in line:
                redrawn = line.replace(CURSOR_UP, "").rstrip() or redrawn  # a bar that clears itself keeps its last text
                continue
            if redrawn is not None:
                if not line:
                    continue  # the newline tqdm moves down with before each redraw
                take(redrawn)
                redrawn = None
            take(line)
        if redrawn is not None:
            take(redrawn)
    finally:
        if out:
            out.close()
    if proc.wait():
        tail = "\n".join(deque(lines, maxlen=TAIL))
        raise StageFailed(f"{name} failed (exit {proc.returncode}); its output ends:\n{tail}")
    bar.finish()
    return lines
