"""The Genius self-training loop as a Prefect flow: the paper's method, round after round.

Each round: take unseen unlabelled queries, explore and score reasoning steps by foresight
re-sampling with the current policy, turn the selections into preference pairs with
advantages, train with ACO, and score the new policy with lm-eval. A round is promoted
unless it made the model worse; the next round starts from the latest promoted checkpoint.

    python -m flows.genius                 # what `make run` does: rounds 1..rounds.num_rounds
    python -m flows.genius --new-rounds 1  # one more round after the last, as `iterate` does
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

import tasks
from genius.config import ConfigError, Params, load_params, write_overrides
from genius.layout import RoundPaths, RunsPaths
from genius.stages import lineage
from genius.stages.lineage import read_metrics
from genius.stages.pipeline import sync
from genius.stages.registry import RoundEntry, read_registry
from genius.stages.table import Stage, round_stages, start_stages

PARAMS = "params.yaml"  # DVC stages read this file: overrides are written into it
LOCK = ".genius-flow.lock"  # held by the running flow: one flow at a time per project


class FlowBusy(RuntimeError):
    """Another flow runs in this project."""


@contextmanager
def project_lock(path: str = LOCK):
    """Hold the project's flow lock; refuse at once if another flow holds it.

    An OS lock (flock): it is released when the holder ends, `kill -9` included, so a crash
    never leaves a stale lock behind.
    """
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise FlowBusy(
                f"another genius flow is running in this project ({f.read().strip() or 'holder unknown'}, lock {path}): "
                "wait for it to finish, or stop it, then run again (its finished stages are kept)"
            ) from None
        f.truncate(0)
        f.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        yield


@flow(name="genius", log_prints=True)
def genius(new_rounds: int = 0, overrides: list[str] | None = None) -> str:
    """Run rounds 1..rounds.num_rounds, or, with `new_rounds`, that many after the last registered.

    Finished rounds that one `dvc status` finds intact are not walked again; any other stage
    is run through DVC, which skips it when it is up to date (a rerun after a crash).
    """
    with project_lock():
        return run_rounds(new_rounds, overrides)


def run_rounds(new_rounds: int, overrides: list[str] | None) -> str:
    params = prepare(overrides)
    # one DVC status over the lineage: finished work it finds intact is not walked again, so a
    # nightly run costs the same after 100 rounds as after 1
    stale = tasks.stale_stages()
    start = start_stages(params)  # the toy (when enabled), the base model's evaluation
    walk = bool(stale & {s.id() for s in start}) or not RoundPaths.of(params.rounds.runs_dir, 0).metrics.exists()
    for stage in start if walk else []:  # the start changed: walk every stage
        tasks.TASKS[stage.name](0)
    base = read_metrics(params.rounds.runs_dir, 0)
    entries = read_registry(params.rounds.registry)
    # `make run` brings the project to rounds.num_rounds; `iterate` adds rounds after the last
    last = len(entries) + new_rounds if new_rounds else max(params.rounds.num_rounds, len(entries))
    intact = 0
    while not walk and intact < last and finished(params, entries, intact + 1, stale):
        intact += 1
    if intact:
        print(f"rounds 1-{intact}: finished and intact (dvc status), not rerun")
    # the rounds, each judged against the latest promoted one: genius/stages/lineage.py
    lineage.run_rounds(params, range(intact + 1, last + 1), lambda stage, r: run_stage(params, stage, r), base, judged)
    tasks.push()
    return publish_report(params)


def prepare(overrides: list[str] | None) -> Params:
    """The params (overrides written into params.yaml), dvc.yaml and the lineage in line, the stages' environment."""
    if overrides:
        write_overrides(PARAMS, overrides)  # so the DVC lineage records what actually ran
    params = load_params(PARAMS)
    for change in sync(params, num_rounds=0):  # dvc.yaml and the lineage follow the params; a switched lineage is refused
        print(change)
    os.environ["GENIUS_RUN_GROUP"] = flow_run.get_name() or "local"  # one wandb group per flow run
    os.environ["GENIUS_FLOW_PID"] = str(os.getpid())  # stage processes die with this one (genius/lifeline.py)
    # DVC runs stages as shell commands: make this environment's `genius` the one they find
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return params


def run_stage(params: Params, stage: Stage, r: int) -> None:
    """One stage of round r through its DVC stage; a stage that shards (sampling) first fills its
    batches in `orchestration.sampling_shards` shards at once on the task runner (flows/scale_out.py),
    unless DVC finds it up to date."""
    if stage.shards and params.orchestration.sampling_shards > 1 and not tasks.up_to_date(stage.id(r)):
        from flows.scale_out import run_shards

        run_shards(params.orchestration, r)
    tasks.TASKS[stage.name](r)


def finished(params: Params, entries: dict, r: int, stale: set[str]) -> bool:
    """Round r was evaluated and decided, and DVC finds none of its stages changed."""
    return (
        r in entries
        and entries[r].promoted is not None
        and RoundPaths.of(params.rounds.runs_dir, r).metrics.exists()
        and not stale & {stage.id(r) for stage in round_stages(params)}
    )


def judged(r: int, metrics: dict, entry: RoundEntry) -> None:
    """Round r's promotion decision, in the run's log and as a table artifact."""
    log = get_run_logger()
    if entry.promoted:
        log.info(f"round {r} promoted: {entry.reason}")
    else:
        log.warning(f"round {r} NOT promoted, the previous policy stays current: {entry.reason}")
    create_table_artifact(
        key=f"genius-round-{r}",
        table=[{"round": r, "promoted": entry.promoted, "reason": entry.reason, **{t: a for t, a in metrics["accuracy"].items()}}],
        description=f"Genius round {r}",
    )


def publish_report(params: Params) -> str:
    """The report `genius evaluate` keeps in runs/, as a Prefect markdown artifact."""
    import base64

    runs = RunsPaths(Path(params.rounds.runs_dir))
    text = runs.report.read_text()
    entries = read_registry(params.rounds.registry)
    decisions = "\n".join(f"- round {r}: {'promoted' if e.promoted else 'not promoted'} ({e.reason})" for r, e in entries.items())
    plot = base64.b64encode(runs.accuracy_png.read_bytes()).decode()
    markdown = text.replace(f"]({runs.accuracy_png.name})", f"](data:image/png;base64,{plot})") + f"\n## Promotion\n\n{decisions}\n"
    create_markdown_artifact(key="genius-report", markdown=markdown, description="Genius rounds")
    return text.split("\n\n")[1] + f"\n\n{decisions}"


@contextmanager
def prefect_api():
    """The Prefect API this run reports to: PREFECT_API_URL's, or a temporary server of its own.

    Prefect would start the same temporary server by itself, but one that outlives a killed
    flow; this one dies with the flow's process, `kill -9` included (flows/serve.py).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from flows.server import free_port, start_server, stop

    port = free_port()
    server = start_server(port, temporary=True)
    try:
        with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
            try:
                yield
            finally:  # what Prefect still holds (logs, events) goes out while the server listens
                from prefect.events.worker import EventsWorker
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=5)
                EventsWorker.drain_all(timeout=5)
    finally:
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Genius flow locally (a temporary Prefect server starts).")
    parser.add_argument("--new-rounds", type=int, default=0, help="rounds to add after the last registered one")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="override a param (written to params.yaml)")
    args = parser.parse_args()
    start = time.time()
    try:
        with project_lock():  # refuse at once, before a server starts (the flow takes the lock itself)
            pass
        with prefect_api():
            table = genius(args.new_rounds, args.set or None)
    except (ConfigError, FlowBusy) as e:  # bad params, a missing input, a switched lineage, a flow running: one line, nothing lost
        sys.exit(f"genius flow: error: {e}")
    runs = RunsPaths(Path(load_params(PARAMS).rounds.runs_dir))
    print(f"\n{table}\n\nwall time {time.time() - start:.0f} s; report: {runs.report}, plot: {runs.accuracy_png}")


if __name__ == "__main__":
    main()
