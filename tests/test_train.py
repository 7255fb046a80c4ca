"""The trainer on a seconds-scale model: checkpoints, the reference cache, LoRA, gradient
accumulation, every loss of Table 4, resumable state, and the 8B preset.

The model is a randomly initialised 2-layer Llama (tests/train_helpers.py); runs are on CPU
with one thread, where training is deterministic, so equalities below are exact where the
arithmetic is the same and to float32 rounding where it is regrouped (accumulation).
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from train_helpers import greedy_responses, memorized_model, synthetic_pairs, tiny_model
from transformers import AutoModelForCausalLM

from genius.config import EvalConfig, ModelConfig, TrainingConfig, load_params
from genius.training.recipe import linear_warmup_decay, train_round

ROOT = Path(__file__).resolve().parents[1]
CPU = ModelConfig(device="cpu")
CFG = TrainingConfig(batch_size=8, epochs=2, learning_rate=1e-3, beta=0.5, threads=1)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("base") / "model")


@pytest.fixture(scope="module")
def pairs():
    return synthetic_pairs(20)


def weights(folder) -> dict:
    return load_file(str(Path(folder) / "model.safetensors"))


def run(pairs, base, folder, cfg=CFG, logs=None, **kw):
    log = logs.append if logs is not None else (lambda m: None)
    return train_round(pairs, base, Path(folder) / "checkpoint", cfg, CPU, log=log, **kw)


def files_digest(folder) -> dict:
    import hashlib

    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(Path(folder).iterdir()) if f.is_file()}


def pair_logps(model_path, pairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(chosen, rejected) summed response log-probs and chosen lengths of every pair, in one forward."""
    from genius.engines.loading import load_model
    from genius.training.batches import collate_pairs, pair_logps, tokenize_pairs

    model, tokenizer = load_model(str(model_path), device="cpu")
    examples = tokenize_pairs(tokenizer, pairs)
    with torch.no_grad():
        chosen, rejected, lengths, _ = pair_logps(model, collate_pairs(examples, tokenizer.pad_token_id, "cpu"))
    return chosen, rejected, lengths


def objective(policy, reference, pairs, cfg=CFG) -> tuple[float, float]:
    """(mean ACO loss, mean ACO + sft_weight * SFT loss) over all pairs, from the pure loss functions."""
    from genius.algorithm.losses import aco_loss, sft_loss

    chosen, rejected, lengths = pair_logps(policy, pairs)
    ref_chosen, ref_rejected, _ = pair_logps(reference, pairs)
    adv = torch.tensor([[p.adv_chosen, p.adv_rejected] for p in pairs])
    aco, *_ = aco_loss(chosen, rejected, ref_chosen, ref_rejected, adv[:, 0], adv[:, 1], cfg.beta, cfg.alpha)
    return aco.mean().item(), (aco + cfg.sft_weight * sft_loss(chosen, lengths)).mean().item()


def test_full_run_writes_checkpoint_metrics_and_caches_reference(pairs, base, tmp_path):
    import math

    logs, rows = [], []
    base_files = files_digest(base)
    metrics = run(pairs, base, tmp_path, logs=logs, track=lambda row, step: rows.append((step, row)))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoint")  # plain HF format
    assert model.config.num_hidden_layers == 2
    # full fine-tuning moves every weight tensor; the reference (the base folder) is untouched
    trained, initial = weights(tmp_path / "checkpoint"), weights(base)
    assert trained.keys() == initial.keys()
    assert [k for k, v in initial.items() if torch.equal(trained[k], v)] == []
    assert files_digest(base) == base_files
    # the loss falls: over all 20 pairs, against the base as reference, recomputed here from the
    # pure loss functions. Before training policy == reference, so every ACO loss is log 2.
    aco_before, total_before = objective(base, base, pairs)
    aco_after, total_after = objective(tmp_path / "checkpoint", base, pairs)
    assert aco_before == pytest.approx(math.log(2), abs=1e-6)
    assert aco_after < aco_before - 0.05 and total_after < total_before - 0.1, (aco_after, total_after, total_before)
    # 20 pairs, batch 8: steps of 8, 8, 4 per epoch
    assert metrics["steps"] == 6 and [s for s, _ in rows] == [1, 2, 3, 4, 5, 6]
    steps = [json.loads(line) for line in (tmp_path / "train_steps.jsonl").read_text().splitlines()]
    # policy == reference: the margin is 0 up to fp32 rounding, which depends on the rows a
    # forward holds (the reference pass and the step batch pairs differently)
    assert [s["tokens"] > 0 for s in steps] == [True] * 6 and steps[0]["reward_margin"] == pytest.approx(0.0, abs=1e-5)
    # each epoch sees every pair once: the logged loss, averaged per pair, falls from epoch 1 to 2
    epoch_mean = lambda rows: sum(r["loss"] * n for r, n in zip(rows, (8, 8, 4))) / 20  # noqa: E731
    assert epoch_mean(steps[3:]) < epoch_mean(steps[:3]) - 0.05
    assert steps[0]["loss"] == pytest.approx(metrics["loss_first"]) and steps[-1]["loss"] == metrics["loss_last"]
    for key in (
        "loss",
        "reward_chosen",
        "reward_rejected",
        "reward_margin",
        "reward_accuracy",
        "w_mean",
        "w_below_one",
        "lr",
        "tokens_per_second",
    ):
        assert key in steps[0], key
    assert steps[0]["lr"] == pytest.approx(1e-3 * linear_warmup_decay(0, 0, 6))
    w = metrics["w"]  # the advantages are drawn so that some pairs are in the calibration region
    assert 0 < w["below_one"] < 1 and w["min"] <= w["p10"] <= w["p50"] <= w["p90"] <= w["max"] == 1.0
    assert metrics["tokens_per_second"] > 0 and metrics["reference"].startswith("computed")

    cache = tmp_path / "reference_logps.safetensors"
    with safe_open(str(cache), framework="pt") as f:
        ref, key = f.get_tensor("logps"), f.metadata()["key"]
    assert ref.shape == (20, 2) and (ref < 0).all()
    # the cached reference log-probs are the base's, not the trained policy's
    base_chosen, base_rejected, _ = pair_logps(base, pairs)
    torch.testing.assert_close(ref, torch.stack([base_chosen, base_rejected], 1), rtol=0, atol=1e-4)
    trained_chosen, _, _ = pair_logps(tmp_path / "checkpoint", pairs)
    assert (ref[:, 0] - trained_chosen).abs().max() > 0.1
    # same pairs, model and tokenization: reused, and the result is identical
    again = run(pairs, base, tmp_path)
    assert again["reference"].startswith("reused") and again["loss_last"] == metrics["loss_last"]
    # other pairs: the key no longer matches, so it is recomputed and replaced
    changed = run(pairs[:-1] + [pairs[0]], base, tmp_path)
    assert changed["reference"].startswith("computed")
    with safe_open(str(cache), framework="pt") as f:
        assert f.metadata()["key"] != key


def test_micro_batches_hold_pairs_of_similar_length():
    from genius.training.batches import micro_batches, pair_width

    examples = [([1] * 3, [2] * n, [3] * (10 - n)) for n in range(10)]  # widths 3 + max(n, 10 - n)
    batch = list(range(10))
    parts = micro_batches(batch, examples, 1, 0, 4)
    assert [len(p) for p in parts] == [3, 3, 2, 2] and sorted(sum(parts, [])) == batch
    widths = [[pair_width(examples[i]) for i in p] for p in parts]
    assert all(max(a) <= min(b) for a, b in zip(widths, widths[1:]))  # sorted: the short pairs pad together
    # two processes take alternate pairs; a share smaller than the count leaves empty micro-batches
    assert sorted(sum(micro_batches(batch, examples, 2, 1, 2), [])) == [1, 3, 5, 7, 9]
    assert [len(p) for p in micro_batches([4, 5], examples, 1, 0, 4)] == [1, 1, 0, 0]


def test_collate_pairs_packs_a_pair_per_row():
    """Hand-derived: [prompt | chosen | rejected | padding]; the rejected response restarts its
    positions after the prompt, sees the prompt and itself only, and its first token is
    predicted from the prompt's last position; padding sees itself only."""
    from genius.training.batches import collate_pairs

    batch = collate_pairs([([1, 2], [3], [4, 5]), ([6], [7, 8], [])], pad_id=0, device="cpu")
    assert batch.ids.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 0, 0]]
    assert batch.positions.tolist() == [[0, 1, 2, 2, 3], [0, 1, 2, 0, 0]]
    assert batch.source.tolist() == [[-1, 0, 1, 1, 3], [-1, 0, 1, 2, 3]]
    assert batch.chosen.tolist() == [[0, 0, 1, 0, 0], [0, 1, 1, 0, 0]]
    assert batch.rejected.tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]
    assert batch.allowed.shape == (2, 1, 5, 5)
    assert batch.allowed[0, 0].int().tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],  # chosen: the prompt and itself
        [1, 1, 0, 1, 0],  # rejected: the prompt and itself, not the chosen token
        [1, 1, 0, 1, 1],
    ]
    assert batch.allowed[1, 0].int().tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 1, 0],  # padding
        [0, 0, 0, 0, 1],
    ]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_pairs_give_each_response_the_log_probs_of_its_own_sequence(pairs, base, attention):
    """A pair's row computes its prompt once, yet each response's log-prob and its gradient are
    those of (prompt + response) alone, by hand: one unpadded forward per sequence, a
    log_softmax at every position, the response tokens' entries summed. Logits are computed
    from the last token of the shortest prompt on (`logits_to_keep`). Prompts of different
    lengths, and an empty rejected response (an SFT target's pair), are among the pairs."""
    from genius.engines.loading import load_model
    from genius.training.batches import collate_pairs, pair_logps, tokenize_pairs

    model, tokenizer = load_model(base, device="cpu")
    model.set_attn_implementation(attention)
    examples = tokenize_pairs(tokenizer, pairs[:4])
    examples[3] = (examples[3][0][:-2], examples[3][1], [])  # a shorter prompt, no rejected tokens
    batch = collate_pairs(examples, tokenizer.pad_token_id, "cpu")
    first = min(len(p) for p, _, _ in examples) - 1
    widths = []  # of the logits the forward returns
    hook = model.register_forward_hook(lambda module, args, output: widths.append(output.logits.shape[1]))
    chosen, rejected, len_w, len_l = pair_logps(model, batch)
    hook.remove()
    assert widths == [batch.ids.shape[1] - first]
    assert len_w.tolist() == [len(c) for _, c, _ in examples] and len_l.tolist() == [len(r) for _, _, r in examples]
    embeddings = model.model.embed_tokens.weight
    grads = torch.autograd.grad(chosen.sum() + 2 * rejected.sum(), embeddings)[0]

    def alone(prompt, response) -> torch.Tensor:
        ids = torch.tensor([prompt + response])
        logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        return logps[len(prompt) - 1 :].gather(-1, ids[0, len(prompt) :, None]).sum()

    by_hand = torch.stack([torch.stack([alone(p, c), alone(p, r)]) for p, c, r in examples])
    torch.testing.assert_close(torch.stack([chosen, rejected], 1), by_hand, rtol=1e-6, atol=1e-5)
    assert by_hand[3, 1] == 0 and by_hand[:3, 1].abs().min() > 1  # the empty response, and real ones
    expected = torch.autograd.grad(by_hand[:, 0].sum() + 2 * by_hand[:, 1].sum(), embeddings)[0]
    assert expected.abs().max() > 1e-2  # not a comparison of zeros; fp32 sums in another order differ by ~1e-6
    torch.testing.assert_close(grads, expected, rtol=1e-4, atol=1e-5)


def test_reference_model_identity_is_in_the_key(pairs, base, tmp_path):
    other = tiny_model(tmp_path / "other", seed=1)  # same architecture and tokenizer, other weights
    shutil.copytree(tmp_path / "other", tmp_path / "copy")
    run(pairs, other, tmp_path / "a")
    shutil.copy(tmp_path / "a" / "reference_logps.safetensors", tmp_path / "reference_logps.safetensors")
    assert run(pairs, str(tmp_path / "copy"), tmp_path)["reference"].startswith("reused")  # same bytes, other folder
    assert run(pairs, base, tmp_path)["reference"].startswith("computed")


def test_lora_reference_is_the_base_and_checkpoint_is_the_adapter(pairs, base, tmp_path):
    from genius.engines.loading import load_model

    run(pairs, base, tmp_path / "full")
    lora = CFG.model_copy(update={"finetune": "lora", "lora_r": 4, "lora_alpha": 8, "learning_rate": 1e-2})
    metrics = run(pairs, base, tmp_path / "lora", lora)
    # the adapters-off forward of the LoRA model gives the base's own log-probs
    full_ref = load_file(str(tmp_path / "full" / "reference_logps.safetensors"))["logps"]
    lora_ref = load_file(str(tmp_path / "lora" / "reference_logps.safetensors"))["logps"]
    torch.testing.assert_close(lora_ref, full_ref, rtol=0, atol=1e-6)
    # the checkpoint is the adapter and its lineage (tests/test_lora_chain.py); loaded, the base with it merged
    checkpoint = tmp_path / "lora" / "checkpoint"
    assert not (checkpoint / "model.safetensors").exists() and (checkpoint / "adapter_model.safetensors").is_file()
    merged = load_model(str(checkpoint), device="cpu")[0].state_dict()
    assert set(weights(base)) <= set(merged) and not any("lora" in k for k in merged)  # plain HF keys
    assert any(not torch.equal(merged[k], v) for k, v in weights(base).items())
    assert metrics["finetune"] == "lora" and metrics["steps"] == 6


@pytest.mark.e2e
def test_lora_checkpoint_loads_in_lm_eval(pairs, tmp_path):
    """The LoRA checkpoint, evaluated by lm-eval, answers as plain HF greedy generation of its
    export (`genius export`: merged) does, and the accuracy is the count of those answers that are right.

    The base has learned the first 8 pairs' chosen solutions by heart, so on a test set of
    those and 4 others the accuracy is strictly between 0 and 1; the adapter's update changes
    some responses, so evaluating the base instead of the checkpoint would show."""
    from genius.evaluation.harness import evaluate
    from genius.toy import task

    base = memorized_model(tmp_path / "base", pairs[:8])
    from genius.engines.loading import export_model

    run(pairs, base, tmp_path, CFG.model_copy(update={"finetune": "lora", "lora_r": 4, "epochs": 1}))
    checkpoint = tmp_path / "checkpoint"
    export_model(str(checkpoint), str(tmp_path / "merged"), CPU, log=lambda _: None)  # for plain HF generation below
    test_pairs = pairs[:12]
    gold = [task.extract_answer(p.chosen) for p in test_pairs]
    test = tmp_path / "test.jsonl"
    test.write_text(
        "".join(
            json.dumps({"id": str(i), "query": p.query, "answer": str(a)}) + "\n"
            for i, (p, a) in enumerate(zip(test_pairs, gold))
        )
    )
    eval_cfg = EvalConfig(
        include_path=str(ROOT / "eval"), tasks=["genius_toy"], test_path=str(test), batch_size=4, threads=1
    )
    result = evaluate(str(checkpoint), eval_cfg, CPU)
    records = result["samples"]["genius_toy"]
    assert result["num_samples"]["genius_toy"] == 12 and [r["id"] for r in records] == [str(i) for i in range(12)]

    queries = [p.query for p in test_pairs]
    expected = [task.extract_answer(r) for r in greedy_responses(tmp_path / "merged", queries)]
    assert [r["answer"] for r in records] == [str(a) if a is not None else "[invalid]" for a in expected]
    correct = [a == g for a, g in zip(expected, gold)]
    assert [r["correct"] for r in records] == correct
    assert result["accuracy"]["genius_toy"] == sum(correct) / len(correct)
    assert 0 < sum(correct) < len(correct), expected
    assert expected != [task.extract_answer(r) for r in greedy_responses(base, queries)]


def test_gradient_accumulation_matches_one_batch(pairs, base, tmp_path):
    """Batches of 8 pairs run as 4 micro-batches of 2; with 3 or 5 accumulation steps as 9 or 10
    micro-batches of 1 pair or none (empty ones run with weight 0), and the epoch's last batch
    of 4 pairs leaves more of them empty. Every split gives the same update to float32
    rounding: Adam divides by sqrt(v), so 6 steps of lr 1e-3 (moving weights by up to 6e-3)
    differ by ~3e-6."""
    cfg = CFG.model_copy(update={"loss": "dpo", "sft_weight": 0.5})
    run(pairs, base, tmp_path / "one", cfg)
    one = weights(tmp_path / "one" / "checkpoint")
    for accumulation in (3, 5):
        run(pairs, base, tmp_path / f"acc{accumulation}", cfg.model_copy(update={"gradient_accumulation_steps": accumulation}))
        for k, v in weights(tmp_path / f"acc{accumulation}" / "checkpoint").items():
            torch.testing.assert_close(v, one[k], rtol=0, atol=1e-5)


@pytest.mark.parametrize("accumulation", [1, 3])
def test_first_step_gradient_is_the_batch_mean_gradient(pairs, base, tmp_path, accumulation):
    """The logged gradient norm of step 1 (before clipping) is that of the mean loss over the
    step's 8 pairs, computed here in one plain forward: the micro-batch scaling is exact."""
    from genius.algorithm.losses import dpo_loss, sft_loss
    from genius.engines.loading import load_model
    from genius.training.batches import collate_pairs, pair_logps, step_batches, tokenize_pairs

    cfg = CFG.model_copy(update={"loss": "dpo", "sft_weight": 0.5, "max_grad_norm": 1e9, "gradient_accumulation_steps": accumulation})
    run(pairs, base, tmp_path, cfg)
    logged = json.loads((tmp_path / "train_steps.jsonl").read_text().splitlines()[0])
    model, tokenizer = load_model(base, device="cpu")
    examples = tokenize_pairs(tokenizer, [pairs[i] for i in step_batches(len(pairs), 8, 2, CFG.seed)[0]])
    chosen, rejected, lengths, _ = pair_logps(model, collate_pairs(examples, tokenizer.pad_token_id, "cpu"))
    losses, *_ = dpo_loss(chosen, rejected, chosen.detach(), rejected.detach(), CFG.beta)  # step 0: policy = reference
    (losses + 0.5 * sft_loss(chosen, lengths)).mean().backward()
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()
    assert logged["grad_norm"] == pytest.approx(norm, rel=1e-5)
    assert logged["loss"] == pytest.approx((losses + 0.5 * sft_loss(chosen, lengths)).mean().item(), rel=1e-6)


@pytest.mark.parametrize("loss", ["dpo", "ipo", "simpo", "ropo", "sft"])
def test_every_table4_loss_trains(pairs, base, tmp_path, loss):
    metrics = run(pairs, base, tmp_path, CFG.model_copy(update={"loss": loss, "epochs": 1}))
    assert (
        metrics["loss"] == loss
        and metrics["steps"] == 3
        and all(abs(metrics[k]) < 1e6 for k in ("loss_first", "loss_last"))
    )
    assert metrics["reference"].startswith("not needed" if loss in ("simpo", "sft") else "computed")


def test_lora_state_round_trip(base, tmp_path):
    """save_state/load_state restore adapter weights, AdamW moments, schedule and RNG."""
    from genius.training.policy import load_policy
    from genius.training.state import find_state, load_state, save_state

    def setup():
        model, _ = load_policy(base, CPU, CFG.model_copy(update={"finetune": "lora", "lora_r": 4}))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
        return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (s + 1))

    model, opt, sched = setup()
    ids = torch.tensor([[1, 5, 6, 7, 2]])
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step(), sched.step(), opt.zero_grad()
    torch.manual_seed(123)
    save_state(tmp_path / "state", 2, "fp", model, opt, sched)
    expected_rand = torch.rand(3)
    assert find_state(tmp_path / "state", "other run") is None
    fresh, fresh_opt, fresh_sched = setup()
    assert load_state(find_state(tmp_path / "state", "fp"), fresh, fresh_opt, fresh_sched) == 2
    for (name, p), (_, q) in zip(model.named_parameters(), fresh.named_parameters()):
        assert torch.equal(p, q), name
    saved, loaded = opt.state_dict(), fresh_opt.state_dict()
    assert saved["param_groups"] == loaded["param_groups"] and saved["state"].keys() == loaded["state"].keys()
    for i, values in saved["state"].items():
        assert all(torch.equal(values[k], loaded["state"][i][k]) for k in ("exp_avg", "exp_avg_sq", "step")), i
    assert fresh_sched.get_last_lr() == sched.get_last_lr() and torch.equal(torch.rand(3), expected_rand)


def test_paper_preset_has_the_papers_settings():
    params = load_params(ROOT / "configs" / "paper-8b.yaml")
    t = params.training
    assert (t.loss, t.alpha, t.beta, t.learning_rate, t.warmup_ratio, t.epochs, t.batch_size, t.sft_weight) == (
        "aco",
        1.0,
        0.1,
        5e-7,
        0.1,
        1,
        128,
        0.0,
    )
    assert params.toy.enabled is False and params.model.dtype == "bfloat16"
    assert [linear_warmup_decay(s, 10, 100) for s in (0, 9, 10, 55, 100)] == [0.1, 1.0, 1.0, 0.5, 0.0]


def test_non_finite_training_stops_and_saves_nothing(pairs, base, tmp_path):
    from genius.training.recipe import TrainingDiverged

    # a finite but absurd learning rate: the first step blows the weights up, the second is NaN
    with pytest.raises(TrainingDiverged, match="non-finite .* no checkpoint saved"):
        run(pairs, base, tmp_path, CFG.model_copy(update={"learning_rate": 1e30, "max_grad_norm": 1e30, "warmup_ratio": 0.0}))
    assert not (tmp_path / "checkpoint").exists()


@pytest.mark.parametrize("accumulation", [1, 3])
def test_term_gradient_norms_split_the_first_step(pairs, base, tmp_path, accumulation):
    """train_round(term_grad_norms=True) logs the gradient norm of the preference term and of
    the SFT term apart: each is that of its own mean over step 1's pairs, in one plain forward."""
    from genius.algorithm.losses import dpo_loss, sft_loss
    from genius.engines.loading import load_model
    from genius.training.batches import collate_pairs, pair_logps, step_batches, tokenize_pairs

    cfg = CFG.model_copy(update={"loss": "dpo", "sft_weight": 0.5, "max_grad_norm": 1e9, "gradient_accumulation_steps": accumulation})
    run(pairs, base, tmp_path, cfg, term_grad_norms=True)
    logged = json.loads((tmp_path / "train_steps.jsonl").read_text().splitlines()[0])
    model, tokenizer = load_model(base, device="cpu")
    examples = tokenize_pairs(tokenizer, [pairs[i] for i in step_batches(len(pairs), 8, 2, CFG.seed)[0]])

    def norm_of(term) -> float:
        model.zero_grad()
        chosen, rejected, lengths, _ = pair_logps(model, collate_pairs(examples, tokenizer.pad_token_id, "cpu"))
        losses, *_ = dpo_loss(chosen, rejected, chosen.detach(), rejected.detach(), CFG.beta)  # step 0: policy = reference
        (losses if term == "preference" else 0.5 * sft_loss(chosen, lengths)).mean().backward()
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()

    assert logged["grad_norm_preference"] == pytest.approx(norm_of("preference"), rel=1e-4)
    assert logged["grad_norm_sft"] == pytest.approx(norm_of("sft"), rel=1e-4)
    assert logged["pull_preference"] == pytest.approx(CFG.beta * 0.5, rel=1e-6)  # z = 0 at step 0: beta sigmoid(0)


def test_sft_targets_train_through_the_same_trainer(pairs, base, tmp_path):
    """An SftTarget's pair (an empty negative) trains with loss sft exactly as a pair with the same positive."""
    from dataclasses import replace

    from genius.algorithm.records import SftTarget

    targets = [SftTarget(p.query_id, p.query, p.chosen, p.chosen_complete, 1.0) for p in pairs]
    cfg = CFG.model_copy(update={"loss": "sft", "epochs": 1})
    metrics = run([t.as_pair() for t in targets], base, tmp_path / "targets", cfg)
    same = [replace(p, rejected=p.chosen) for p in pairs]  # another negative, which sft never reads
    run(same, base, tmp_path / "pairs", cfg)
    assert metrics["steps"] == 3 and metrics["reward_rejected"] == 0.0
    assert "grad_norm_sft" not in json.loads((tmp_path / "targets" / "train_steps.jsonl").read_text().splitlines()[0])  # opt-in
    for k, v in weights(tmp_path / "pairs" / "checkpoint").items():
        torch.testing.assert_close(weights(tmp_path / "targets" / "checkpoint")[k], v, rtol=0, atol=1e-6)
