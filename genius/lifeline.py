"""Processes that die with the process that started them, `kill -9` included.

A stage process (`genius sample ...`, started by DVC for a flow) follows the flow's pid with
`follow`; a server the flow starts gets `dies_with_this_process()` as its `preexec_fn`. Linux only
(prctl, /proc); elsewhere `follow` polls with signal 0 and the `preexec_fn` does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, killed and not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def follow(pid: int, poll_s: float = 1.0) -> threading.Thread:
    """SIGKILL this process within `poll_s` of process `pid` ending."""

    def watch() -> None:
        while alive(pid):
            time.sleep(poll_s)
        print(f"genius: process {pid} that started this one is gone; exiting", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name=f"lifeline-{pid}", daemon=True)
    thread.start()
    return thread


def dies_with_this_process(sig: int = signal.SIGTERM):
    """A Popen `preexec_fn`: the child gets `sig` when the calling thread ends (call from the main thread)."""
    parent = os.getpid()

    def preexec() -> None:
        if sys.platform != "linux":
            return
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec
