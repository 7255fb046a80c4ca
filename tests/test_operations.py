"""Operations with real parts: a Prefect server on loopback serving `genius/iterate`, retries,
one flow per project, and DVC lineage with a remote. A flow killed mid-round: tests/test_chaos.py.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, git_dvc_init, run, tiny_params

import tasks
from genius.stages.registry import read_registry

EMPTY_REGISTRY = "round_list: {}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def gone(pgid: int, within: float = 15.0) -> bool:
    """True once no process of the group is left (helpers such as multiprocessing's
    resource tracker exit a moment after their parent)."""
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def api_post(api: str, path: str, body: dict) -> list[dict]:
    import httpx

    reply = httpx.post(f"{api}/{path}", json=body, timeout=30)
    reply.raise_for_status()
    return reply.json()


def every_log_message(api: str) -> list[str]:
    """Every log line the server holds, oldest first (the API serves at most 200 a page)."""
    messages: list[str] = []
    while page := api_post(api, "logs/filter", {"limit": 200, "offset": len(messages), "sort": "TIMESTAMP_ASC"}):
        messages += [row["message"] for row in page]
    return messages


def popen(cmd, cwd, **env):
    env = os.environ | {"PATH": f"{sys.executable.rsplit('/', 1)[0]}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)} | env
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.e2e
def test_served_deployment_runs_a_round_and_stops_cleanly(project, tmp_path_factory):
    tiny_params(project / "params.yaml", ["tracking.wandb_mode=disabled", "queries.per_round=4", "eval.diagnostics=false", "toy.num_test=8"])
    git_dvc_init(project, registry=EMPTY_REGISTRY)
    remote = tmp_path_factory.mktemp("dvc-remote")
    assert run(["dvc", "remote", "add", "-d", "store", str(remote)], project).returncode == 0

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    # a server of its own (its own database): the test worker's other flows, killed ones included, are not on it
    home = tmp_path_factory.mktemp("prefect-home")
    serve = popen(
        [sys.executable, "-m", "flows.serve", "--port", str(port), "--no-ui"],
        project,
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        PREFECT_HOME=str(home),
    )
    try:
        deadline = time.time() + 180
        while True:  # the deployment exists once `serve` has registered it
            ls = run(["prefect", "deployment", "ls"], project, timeout=60, env_extra={"PREFECT_API_URL": api})
            if "genius/iterate" in ls.stdout:
                break
            assert serve.poll() is None and time.time() < deadline, serve.stdout.read() if serve.poll() is not None else ls.stdout
            time.sleep(2)
        triggered = run(
            ["prefect", "deployment", "run", "genius/iterate", "--watch", "--watch-timeout", "600"],
            project,
            env_extra={"PREFECT_API_URL": api},
        )
        assert triggered.returncode == 0 and "Completed" in triggered.stdout, triggered.stdout[-3000:] + triggered.stderr[-3000:]
        artifacts = run(["prefect", "artifact", "ls"], project, timeout=60, env_extra={"PREFECT_API_URL": api, "COLUMNS": "250"})
        assert "genius-round-1" in artifacts.stdout and "genius-report" in artifacts.stdout, artifacts.stdout
        # what a stage prints reaches its task's log, and its progress lines move a progress artifact
        logs = every_log_message(api)
        assert any("genius sampling 4 of 4 queries" in m for m in logs), logs[-20:]
        assert any(m.startswith("round 1: genius_toy ") for m in logs), logs[-20:]
        bars = api_post(api, "artifacts/filter", {"artifacts": {"type": {"any_": ["progress"]}}})  # every stage that ran ends full
        assert bars and all(bar["data"] == 100.0 for bar in bars), [(b["description"], b["data"]) for b in bars]
        assert {bar["description"].split(":")[0] for bar in bars} >= {"sample@r1", "train@r1"}, bars
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
    # nothing left behind: the serve process group (flow-run children included) and the server
    assert gone(serve.pid), subprocess.run(["ps", "-o", "pid,pgid,cmd", "-g", str(serve.pid)], capture_output=True, text=True).stdout
    assert not port_open(port)

    registry = read_registry(project / "rounds.yaml")
    assert list(registry) == [1] and registry[1].promoted is not None
    assert (project / "runs" / "r1" / "checkpoint" / "model.safetensors").exists()
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project).stdout
    assert any(p.is_file() for p in remote.rglob("*")), "round outputs pushed to the DVC remote"


@pytest.mark.e2e  # a Prefect server starts (the session harness)
def test_task_that_fails_once_succeeds_on_retry(monkeypatch, prefect_harness):
    from prefect import flow

    calls = []

    def flaky(stage):
        calls.append(stage)
        if len(calls) == 1:
            raise OSError("transient: the query share was briefly unreachable")
        return True

    monkeypatch.setattr(tasks, "reproduce", flaky)

    @flow
    def one_stage():
        return tasks.TASKS["ingest"].with_options(retry_delay_seconds=0)(1)

    assert one_stage() is True
    assert calls == ["ingest@r1", "ingest@r1"]


@pytest.mark.e2e
def test_second_flow_is_refused_while_one_holds_the_project_and_kill_frees_it(tmp_path):
    from flows.genius import FlowBusy, project_lock

    lock = tmp_path / "flow.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from flows.genius import project_lock\nwith project_lock({str(lock)!r}):\n    print('held', flush=True)\n    input()"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FlowBusy, match=rf"another genius flow is running in this project \(pid {holder.pid} since .*\)"):
            with project_lock(str(lock)):
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the OS drops the lock
        holder.wait()
    with project_lock(str(lock)):
        assert lock.read_text().startswith(f"pid {os.getpid()} ")
