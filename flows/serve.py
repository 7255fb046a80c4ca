"""Serve the deployment `genius/iterate` on a local Prefect server, with a nightly schedule.

    python -m flows.serve [--port 4200]        # what `make serve` does

Starts `prefect server start` on 127.0.0.1 (its own process group), waits until it is
healthy, and serves the flow `genius` as deployment `iterate` with the cron of params.yaml (rounds.cron, rounds.timezone). Each run
adds `rounds.new_rounds` rounds after the last one. Then, from any shell:

    prefect deployment run genius/iterate [-p new_rounds=2] [-p 'overrides=["training.beta=0.3"]']

Ctrl-C (or SIGTERM) stops serving and the server: no process is left behind. While nothing
serves it, the schedule does not fire (Prefect pauses a served deployment's schedules).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from flows.server import start_server, stop
from genius.config import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--no-ui", action="store_true", help="serve the API only")
    args = parser.parse_args()
    params = load_params("params.yaml")  # fail on a bad params file before starting anything
    server = start_server(args.port, ui=not args.no_ui)
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{args.port}/api"  # before prefect reads its settings
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the finally below on SIGTERM too
    try:
        from prefect.schedules import Cron

        from flows.genius import genius  # not before PREFECT_API_URL is set: Prefect reads its settings when imported

        print(f"Prefect UI and API on http://127.0.0.1:{args.port}; trigger with `prefect deployment run genius/iterate`")
        genius.serve(
            name="iterate",
            schedules=[Cron(params.rounds.cron, timezone=params.rounds.timezone)],
            parameters={"new_rounds": params.rounds.new_rounds},
            description="One more Genius self-training round from the latest promoted checkpoint.",
        )
    finally:
        stop(server)


if __name__ == "__main__":
    main()
