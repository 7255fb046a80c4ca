"""The Prefect task bodies, called through `.fn` (no task run): each runs its own DVC stage
and returns what the flow needs. DVC itself is replaced by a recorder here; the flow tests
run the real stages.
"""

import json

import pytest

import tasks


@pytest.fixture
def stages(monkeypatch):
    ran: list[str] = []
    monkeypatch.setattr(tasks, "reproduce", lambda stage: ran.append(stage) or True)
    return ran


def test_each_task_runs_its_stage(stages):
    assert all(tasks.TASKS[name].fn(3) for name in ("ingest", "sample", "pairs", "train"))
    assert stages == ["ingest@r3", "sample@r3", "pairs@r3", "train@r3"]


def test_evaluate_returns_the_rounds_metrics(stages, tmp_path):
    for name, acc in (("base", 0.25), ("r2", 0.5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"accuracy": {"genius_toy": acc}}))
    assert tasks.evaluate.fn(0, str(tmp_path)) == {"accuracy": {"genius_toy": 0.25}}
    assert tasks.evaluate.fn(2, str(tmp_path)) == {"accuracy": {"genius_toy": 0.5}}
    assert stages == ["evaluate_base", "evaluate@r2"]


def test_stage_tasks_retry_and_hold_no_concurrency_tag():
    for task in (*tasks.TASKS.values(), tasks.evaluate):
        assert task.retries >= 1, task.name
        assert not task.tags, f"{task.name}: a tag limit's slot leaks when a flow is killed (the project lock serialises flows)"


def test_a_stage_that_exits_cleanly_ends_with_a_full_bar(monkeypatch):
    """A progress line can be lost in the output (another stream wrote into it before its newline);
    the bar of a stage that exited 0 still reads full, and a failed stage's bar stays where it was."""
    import sys

    from tasks import streams

    bars: dict[str, tuple[float, str]] = {}

    def create(progress, description):
        bars["a"] = (progress, description)
        return "a"

    def update(artifact_id, progress, description):
        bars[artifact_id] = (progress, description)

    monkeypatch.setattr(streams, "create_progress_artifact", create)
    monkeypatch.setattr(streams, "update_progress_artifact", update)
    monkeypatch.setattr(streams, "get_run_logger", lambda: __import__("logging").getLogger("test"))
    # the last progress line garbled: a bar's text came first, without its newline
    lost = "import sys; print('progress: 1/4 queries'); print('bar 100%|#|progress: 4/4 queries')"
    streams.stream([sys.executable, "-c", lost], "sample@r1")
    assert bars["a"] == (100.0, "sample@r1: 4/4 queries")

    bars.clear()
    with pytest.raises(streams.StageFailed):
        streams.stream([sys.executable, "-c", lost + "; sys.exit(3)"], "sample@r1")
    assert bars["a"] == (25.0, "sample@r1: 1/4 queries")


def test_a_bar_redrawn_below_its_place_is_logged_once_as_it_ends(monkeypatch):
    """tqdm at position 1 (vLLM's "Processed prompts" under lm-eval's bar) moves down a line,
    draws, and moves back up, once a redraw: the task's log gets its last state, in order."""
    import logging
    import sys

    from tasks import streams

    logged: list[str] = []
    logger = logging.getLogger("test-redraw")
    monkeypatch.setattr(logger, "info", logged.append)
    monkeypatch.setattr(streams, "get_run_logger", lambda: logger)
    tqdm_like = (
        "import sys; w = sys.stdout.write; w('outer 0/2\\n'); "
        "[w(f'\\n\\rinner {i}/3\\x1b[A') for i in range(4)]; w('\\n\\r   \\x1b[A'); w('\\router 2/2\\n'); "
        "w('\\n\\rinner 0/1\\x1b[A\\n\\rinner 1/1\\x1b[A')"
    )
    lines = streams.stream([sys.executable, "-c", tqdm_like], "evaluate@r1")
    assert logged == ["outer 0/2", "inner 3/3", "outer 2/2", "inner 1/1"]
    assert [line for line in lines if line] == logged  # the lines a failed stage's error repeats
