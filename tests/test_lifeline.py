"""Processes that die with the process that started them, when it is killed with SIGKILL."""

import os
import signal
import subprocess
import sys
import time

from conftest import ROOT

from genius.lifeline import alive

PY = [sys.executable, "-c"]


def wait_gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_follower_exits_when_the_followed_process_is_killed():
    flow = subprocess.Popen(["sleep", "60"])
    stage = subprocess.Popen(
        PY + [f"from genius.lifeline import follow\nfollow({flow.pid}, poll_s=0.2)\nimport time\ntime.sleep(60)"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    assert stage.poll() is None, "the follower ran off while the flow lived"
    flow.kill()
    flow.wait()
    assert stage.wait(10) == -signal.SIGKILL
    assert f"process {flow.pid} that started this one is gone" in stage.stderr.read()


def test_child_started_with_the_preexec_dies_with_its_killed_parent():
    parent = subprocess.Popen(
        PY
        + [
            "import subprocess\nfrom genius.lifeline import dies_with_this_process\n"
            "child = subprocess.Popen(['sleep', '60'], preexec_fn=dies_with_this_process())\n"
            "print(child.pid, flush=True)\nimport time\ntime.sleep(60)"
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())
    assert alive(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    assert wait_gone(child), "the child outlived its parent"
