"""A GRPO round (genius.training.grpo) on a seconds-scale model: what it writes, what it measures, how it resumes.

The rewards' maths is tested by hand in test_rewards.py; here, how TRL's GRPOTrainer calls
them: groups found by query whatever the order, the logit rewards equal to the definition
on each response alone, and the round's files and resume.
"""

import json
from types import SimpleNamespace

import pytest
import torch
from train_helpers import tiny_model

pytest.importorskip("trl", reason="GRPO rounds need TRL: pip install -e '.[rl]'")

from genius.algorithm.rewards import self_certainty  # noqa: E402
from genius.algorithm.sampling import prompt_ids  # noqa: E402
from genius.config import GrpoConfig, ModelConfig, TrainingConfig  # noqa: E402
from genius.data.queries import Query  # noqa: E402
from genius.engines.loading import load_model  # noqa: E402
from genius.data.answers import read_answer  # noqa: E402
from genius.training.grpo import GroupReward, train_grpo_round  # noqa: E402

QUERIES = [Query(f"q{i}", q) for i, q in enumerate(["1+2+3", "4+5+6", "7+8+9", "2+2+2"])]
LABELS = {q.id: str(sum(map(int, q.text.split("+")))) for q in QUERIES}
SMALL = dict(num_generations=4, batch_queries=2, max_completion_tokens=12, learning_rate=1e-3)


def toy_answer(response: str) -> str | None:
    return read_answer(response, "toy")


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """TRL's Trainer sets accelerate's process-wide state; clear it for the next test."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def chat(text):
    return [{"role": "user", "content": text}]


def test_majority_vote_groups_responses_by_query_whatever_their_order():
    reward = GroupReward("majority_vote", tokenizer=None, extract=toy_answer)
    logged = {}
    prompts = [chat("a"), chat("b"), chat("a"), chat("b"), chat("a")]
    completions = [[{"role": "assistant", "content": c}] for c in ["A:1", "A:2", "A:1", "A:3", "A:4"]]
    rewards = reward(prompts, completions, [[]] * 5, label=["1", "9", "1", "9", "1"], log_metric=logged.__setitem__)
    # a: answers 1, 1, 4 -> majority 1 (2/3); b: 2, 3 -> a tie, the first (2) wins (1/2)
    assert rewards == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert logged["majority_agreement"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert logged["majority_correct"] == 0.5  # a's majority is right, b's is not
    assert logged["answered"] == 1.0


def test_logit_rewards_equal_the_definition_on_each_response_alone(tmp_path):
    """Responses of different lengths are scored in one padded batch; each equals its own unpadded forward."""
    torch.manual_seed(0)
    path = tiny_model(tmp_path / "model")
    model, tokenizer = load_model(path, device="cpu")
    reward = GroupReward("self_certainty", tokenizer, toy_answer)
    reward.trainer = SimpleNamespace(model=model, accelerator=SimpleNamespace(unwrap_model=lambda m: m))
    completions = [tokenizer("1+2=3\nA:3", add_special_tokens=False)["input_ids"], [tokenizer.eos_token_id]]
    got = reward.logit_reward(["1+2", "4+5+6"], completions)
    for query, completion, value in zip(["1+2", "4+5+6"], completions, got):
        prompt = prompt_ids(tokenizer, query)
        ids = torch.tensor([prompt + completion])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[:, len(prompt) - 1 : -1]  # the positions predicting the response
        assert value == pytest.approx(self_certainty(logits, torch.ones(1, len(completion))).item(), rel=1e-5)


@pytest.mark.e2e  # a GRPO round on a tiny model (~10 s)
# Self-certainty gives each response its own reward; majority vote rewards a response only when
# some of its group answer, which this random model does in 1 of the 16 responses of TRL's seeded draws here.
@pytest.mark.parametrize("reward,engine", [("self_certainty", "genius"), ("majority_vote", "trl")])
def test_a_round_writes_checkpoint_steps_and_summary(tmp_path, reward, engine):
    path = tiny_model(tmp_path / "model")
    tracked = []
    cfg = GrpoConfig(engine=engine, **SMALL)
    metrics = train_grpo_round(
        QUERIES, path, tmp_path / "r1" / "checkpoint", reward, cfg, TrainingConfig(), ModelConfig(device="cpu"),
        toy_answer, LABELS, log=lambda _: None, track=lambda row, step: tracked.append((step, row)),
    )  # fmt: skip
    steps = [json.loads(line) for line in (tmp_path / "r1" / "train_steps.jsonl").read_text().splitlines()]
    assert len(steps) == metrics["steps"] == 2  # 4 queries / 2 per step, one epoch
    for row in steps:
        for key in ("reward", "majority_agreement", "majority_correct", "entropy", "response_length", "kl", "loss", "lr"):
            assert row[key] is not None and row[key] == row[key], key  # present and not NaN
        assert 0 <= row["majority_agreement"] <= 1 and row["generated_tokens"] > 0 and row["generation_seconds"] > 0
    assert [s for s, _ in tracked] == [1, 2] and tracked[-1][1]["reward"] == steps[-1]["reward"]
    assert metrics["reward"] == reward and metrics["engine"] == engine and metrics["generated_tokens"] > 0
    assert metrics["generated_tokens"] == sum(row["generated_tokens"] for row in steps)
    # prompt tokens: the project's engine prefills each query's prompt once for its G rows, TRL's generate each row
    prompts = sum(row["tokens"] for row in steps) - metrics["generated_tokens"]
    assert metrics["prefill_tokens"] == (prompts // SMALL["num_generations"] if engine == "genius" else prompts) > 0
    after, _ = load_model(str(tmp_path / "r1" / "checkpoint"), device="cpu")  # an ordinary HF folder
    before, _ = load_model(path, device="cpu")
    assert any(row["reward_std"] > 0 for row in steps), "every group's rewards were equal: no signal to learn from"
    assert not torch.equal(after.model.embed_tokens.weight, before.model.embed_tokens.weight)
    assert not (tmp_path / "r1" / "train_state").exists()


@pytest.mark.e2e  # a GRPO round on a tiny model (~10 s)
def test_a_killed_round_resumes_from_its_last_state(tmp_path):
    """Killed after step 3 of 4 (its state after step 2 on disk): the rerun resumes there and ends
    where an uninterrupted round ends (TRL's checkpoint restores weights, optimizer, schedule and RNG)."""
    path = tiny_model(tmp_path / "model")
    cfg, training = GrpoConfig(**SMALL, epochs=2), TrainingConfig(save_every=2)  # 4 steps, a state after step 2
    quiet = dict(log=lambda _: None)

    def run(name, **kw):
        args = (QUERIES, path, tmp_path / name / "checkpoint", "majority_vote", cfg, training, ModelConfig(device="cpu"), toy_answer, LABELS)
        return train_grpo_round(*args, **(quiet | kw))

    def killed_at_step_3(row, step):
        if step == 3:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        run("r1", track=killed_at_step_3)
    assert (tmp_path / "r1" / "train_state" / "checkpoint-2").exists()
    lines = []
    metrics = run("r1", log=lines.append)
    assert any("resuming from checkpoint-2" in line for line in lines)
    assert metrics["resumed_from_step"] == 2 and metrics["steps"] == 4  # the first steps' rows come from the state
    assert not (tmp_path / "r1" / "train_state").exists()
    whole = run("whole")
    assert metrics["reward_last"] == whole["reward_last"]
    resumed, _ = load_model(str(tmp_path / "r1" / "checkpoint"), device="cpu")
    uninterrupted, _ = load_model(str(tmp_path / "whole" / "checkpoint"), device="cpu")
    for a, b in zip(resumed.parameters(), uninterrupted.parameters()):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max().item()


@pytest.mark.e2e  # a GRPO round on a tiny model (~10 s)
def test_another_rounds_state_is_not_resumed(tmp_path):
    path = tiny_model(tmp_path / "model")
    state = tmp_path / "r1" / "train_state"
    (state / "checkpoint-1").mkdir(parents=True)
    (state / "run_key").write_text("another round")
    lines = []
    cfg = GrpoConfig(**SMALL)
    metrics = train_grpo_round(
        QUERIES[:2], path, tmp_path / "r1" / "checkpoint", "majority_vote", cfg, TrainingConfig(save_every=1), ModelConfig(device="cpu"),
        toy_answer, log=lines.append,
    )  # fmt: skip
    assert metrics["resumed_from_step"] == 0 and not any("resuming" in line for line in lines)


def test_groups_must_not_be_split_between_processes(tmp_path):
    path = tiny_model(tmp_path / "model")
    bad = GrpoConfig(**SMALL | {"num_generations": 3, "batch_queries": 1})
    with pytest.raises(ValueError, match=r"grpo.batch_queries \(1\) must .* training.gradient_accumulation_steps \(2\)"):
        train_grpo_round(
            QUERIES, path, tmp_path / "c", "majority_vote", bad, TrainingConfig(gradient_accumulation_steps=2), ModelConfig(device="cpu"),
            toy_answer, log=lambda _: None,
        )  # fmt: skip
