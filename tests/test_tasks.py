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
