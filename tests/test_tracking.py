"""wandb mode resolution: offline unless a key is configured."""

from genius.tracking import resolve_mode


def test_wandb_auto_mode_goes_online_only_with_a_key(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_mode("auto") == "online" and resolve_mode("offline") == "offline"
