"""wandb mode resolution: offline unless a key is configured; what an evaluation logs."""

from genius.stages.rounds import eval_row
from genius.tracking import resolve_mode


def test_wandb_auto_mode_goes_online_only_with_a_key(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_mode("auto") == "online" and resolve_mode("offline") == "offline"


def test_eval_row_is_flat_numbers_only():
    metrics = {
        "accuracy": {"genius_toy": 0.4, "genius_toy_sampled": 0.2},
        "diagnostics": {"problems": 64, "response_auroc": None, "best_of_n": 0.5, "enabled": True},
    }
    assert eval_row(metrics) == {
        "eval/genius_toy": 0.4,
        "eval/genius_toy_sampled": 0.2,
        "diagnostics/problems": 64,
        "diagnostics/best_of_n": 0.5,
    }
    assert eval_row({"accuracy": {"t": 1.0}}) == {"eval/t": 1.0}
