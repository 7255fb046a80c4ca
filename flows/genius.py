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
from genius.stages.pipeline import sync
from genius.stages.registry import RoundEntry, decide_promotion, latest_promoted, read_registry, write_registry
from genius.stages.rounds import round_paths

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
    if overrides:
        write_overrides(PARAMS, overrides)  # so the DVC lineage records what actually ran
    params = load_params(PARAMS)
    for change in sync(params, num_rounds=0):  # dvc.yaml and the lineage follow the params; a switched lineage is refused
        print(change)
    os.environ["GENIUS_RUN_GROUP"] = flow_run.get_name() or "local"  # one wandb group per flow run
    os.environ["GENIUS_FLOW_PID"] = str(os.getpid())  # stage processes die with this one (genius/lifeline.py)
    # DVC runs stages as shell commands: make this environment's `genius` the one they find
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

    # one DVC status over the lineage: finished work it finds intact is not walked again, so a
    # nightly run costs the same after 100 rounds as after 1
    stale = tasks.stale_stages()
    base_metrics = Path(params.rounds.runs_dir) / "base" / "metrics.json"
    walk = bool(stale & {"toy", "evaluate_base"}) or not base_metrics.exists()  # the start changed: walk every stage
    if params.toy.enabled and walk:
        tasks.build_toy()
    base = tasks.evaluate(0, params.rounds.runs_dir) if walk else tasks._json(base_metrics)
    entries = read_registry(params.rounds.registry)
    # `make run` brings the project to rounds.num_rounds; `iterate` adds rounds after the last
    last = len(entries) + new_rounds if new_rounds else max(params.rounds.num_rounds, len(entries))
    intact = 0
    while not walk and intact < last and finished(params, entries, intact + 1, stale):
        intact += 1
    if intact:
        print(f"rounds 1-{intact}: finished and intact (dvc status), not rerun")
    for r in range(intact + 1, last + 1):
        if r in entries and entries[r].retired:  # genius gc took it out of the pipeline: history now
            continue
        register(params, r)
        tasks.ingest(r)
        sample(params, r)
        tasks.build_pairs(r)
        tasks.train(r)
        metrics = tasks.evaluate(r, params.rounds.runs_dir)
        promote(params, r, metrics, base)
    tasks.push()
    if params.rounds.gc:
        tasks.gc(params)
    return publish_report(params)


def sample(params: Params, r: int) -> None:
    """Foresight re-sampling of round r: first in shards at once when configured, then the DVC stage.

    With `orchestration.sampling_shards` > 1 the shards fill the round's batches on the task
    runner (flows/scale_out.py); the stage then only assembles them. Skipped when DVC finds
    the stage up to date.
    """
    if params.orchestration.sampling_shards > 1 and not tasks.up_to_date(f"sample@r{r}"):
        from flows.scale_out import run_shards

        run_shards(params.orchestration, r)
    tasks.sample(r)


def finished(params: Params, entries: dict, r: int, stale: set[str]) -> bool:
    """Round r was evaluated and decided, and DVC finds none of its stages changed."""
    return (
        r in entries
        and entries[r].promoted is not None
        and round_paths(params, r).metrics.exists()
        and not any(stage.endswith(f"@r{r}") for stage in stale)
    )


def register(params: Params, r: int) -> None:
    """Enter round r in the registry, starting from the latest promoted policy.

    A round that already has results keeps its recorded policy: its lineage is history.
    """
    entries = read_registry(params.rounds.registry)
    if r in entries and round_paths(params, r).metrics.exists():
        return
    current = latest_promoted(entries, before=r)
    policy = params.model.path if current is None else str(round_paths(params, current).checkpoint)
    entries[r] = RoundEntry(r, policy)
    write_registry(params.rounds.registry, entries)


def promote(params: Params, r: int, metrics: dict, base: dict) -> None:
    """Record whether round r is promoted: it must not regress beyond the tolerance."""
    entries = read_registry(params.rounds.registry)
    task = params.rounds.promotion_task or params.eval.tasks[0]
    current = latest_promoted(entries, before=r)
    incumbent = base if current is None else tasks._json(round_paths(params, current).metrics)
    promoted, reason = decide_promotion(
        metrics["accuracy"][task], incumbent["accuracy"][task], params.rounds.promotion_tolerance, task
    )
    entries[r].promoted, entries[r].reason = promoted, reason
    write_registry(params.rounds.registry, entries)
    log = get_run_logger()
    if promoted:
        log.info(f"round {r} promoted: {reason}")
    else:
        log.warning(f"round {r} NOT promoted, the previous policy stays current: {reason}")
    create_table_artifact(
        key=f"genius-round-{r}",
        table=[{"round": r, "promoted": promoted, "reason": reason, **{t: a for t, a in metrics["accuracy"].items()}}],
        description=f"Genius round {r}",
    )


def publish_report(params: Params) -> str:
    """The report `genius evaluate` keeps in runs/, as a Prefect markdown artifact."""
    import base64

    runs = Path(params.rounds.runs_dir)
    text = (runs / "report.md").read_text()
    entries = read_registry(params.rounds.registry)
    decisions = "\n".join(f"- round {r}: {'promoted' if e.promoted else 'not promoted'} ({e.reason})" for r, e in entries.items())
    plot = base64.b64encode((runs / "accuracy.png").read_bytes()).decode()
    markdown = text.replace("](accuracy.png)", f"](data:image/png;base64,{plot})") + f"\n## Promotion\n\n{decisions}\n"
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
    from flows.serve import free_port, start_server, stop

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
    print(f"\n{table}\n\nwall time {time.time() - start:.0f} s; report: runs/report.md, plot: runs/accuracy.png")


if __name__ == "__main__":
    main()
