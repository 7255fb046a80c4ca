"""A Prefect server on loopback, started and stopped by the flows: `make serve`'s, and the temporary
one a bare `python -m flows.genius` reports to (flows/genius.py). It stops when the process that
started it ends, `kill -9` included.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from genius.lifeline import dies_with_this_process

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, ui: bool = True, temporary: bool = False) -> subprocess.Popen:
    """A Prefect server on 127.0.0.1:`port` that stops when this process ends, `kill -9` included.

    `temporary`: the server Prefect itself starts for a flow run outside a server (uvicorn
    in Prefect's ephemeral mode: no UI, only the services a flow run needs, quiet); else
    `prefect server start`, as a user would run it.
    """
    if temporary:
        import prefect

        cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parents[1])]
        cmd += ["--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--log-level", "error", "--lifespan", "on"]
        env = os.environ | {"PREFECT__SERVER_EPHEMERAL": "1", "PREFECT_UI_ENABLED": "0", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    else:
        cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"]
        cmd += [] if ui else ["--no-ui"]
        env = None
    # own session: background processes of a non-interactive shell ignore SIGINT, and we
    # must be able to stop the server and everything it started in one signal
    server = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=dies_with_this_process())
    url = f"http://127.0.0.1:{port}/api/health"
    deadline = time.time() + float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 120))
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {server.returncode}; is port {port} free?")
        try:
            urllib.request.urlopen(url, timeout=2)
            return server
        except OSError:
            time.sleep(0.5)
    stop(server)
    raise RuntimeError(f"prefect server did not answer on {url} in time")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL what is left after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
