"""Our trainer's ACO with alpha -> infinity against TRL's DPOTrainer (sigmoid loss): on the
same model, reference and batch, the loss and every parameter's gradient agree to 1e-6.

Both sides run their own code end to end from token ids: our collate_pairs + pair_logps (a
pair's prompt computed once) + aco_loss, TRL's DataCollatorForPreference +
DPOTrainer.compute_loss (its fused LM head, its reference forward). The policy is the
reference plus noise, so the rewards are not zero.
"""

import math

import pytest
import torch
from train_helpers import synthetic_pairs, tiny_model

trl = pytest.importorskip("trl", reason="TRL is not installed: `pip install -e '.[dev]'` brings it")

from genius.algorithm.losses import aco_loss  # noqa: E402
from genius.engines.loading import load_model  # noqa: E402
from genius.training.batches import collate_pairs, pair_logps, tokenize_pairs  # noqa: E402

pytestmark = pytest.mark.e2e  # TRL trainer against ours

BETA = 0.1


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """TRL's Trainer sets accelerate's process-wide state (its own mixed precision); clear it
    so later tests in this process can start their own Accelerator."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize("alpha", [math.inf, 1e12])
def test_aco_at_infinite_alpha_equals_trl_dpo(tmp_path, alpha):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    torch.set_num_threads(1)
    path = tiny_model(tmp_path / "model")
    policy, tokenizer = load_model(path, device="cpu")
    reference, _ = load_model(path, device="cpu")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.02 * torch.randn_like(p))
    pairs = synthetic_pairs(6)
    examples = tokenize_pairs(tokenizer, pairs)
    pad = tokenizer.pad_token_id

    args = DPOConfig(
        output_dir=str(tmp_path / "trl"), beta=BETA, loss_type=["sigmoid"], report_to=[], use_cpu=True,
        max_length=None, disable_dropout=True, save_strategy="no", logging_strategy="no", bf16=False,
    )  # fmt: skip
    dataset = Dataset.from_list(
        [{"prompt": "Q:1+2\n", "chosen": "1+2=3\nA:3", "rejected": "A:4"}]
    )  # unused: we pass batches
    trainer = DPOTrainer(
        model=policy, ref_model=reference, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    batch = DataCollatorForPreference(pad_token_id=pad)(
        [{"prompt_ids": p, "chosen_ids": c, "rejected_ids": r} for p, c, r in examples]
    )
    policy.train()
    trl_loss = trainer.compute_loss(trainer.model, batch)
    trl_loss.backward()
    trl_grads = {n: p.grad.clone() for n, p in policy.named_parameters()}
    policy.zero_grad()

    batch = collate_pairs(examples, pad, "cpu")
    with torch.no_grad():
        ref_w, ref_l, _, _ = pair_logps(reference, batch)
    chosen, rejected, _, _ = pair_logps(policy, batch)
    adv = torch.tensor([[p.adv_chosen, p.adv_rejected] for p in pairs])
    assert (adv[:, 1] > adv[:, 0]).any()  # calibration-region pairs: w would be < 1 at a finite alpha
    losses, *_ = aco_loss(chosen, rejected, ref_w, ref_l, adv[:, 0], adv[:, 1], BETA, alpha)
    losses.mean().backward()

    assert abs(losses.mean().item() - trl_loss.item()) < 1e-6
    for name, p in policy.named_parameters():
        torch.testing.assert_close(p.grad, trl_grads[name], rtol=0, atol=1e-6, msg=name)
    assert max(g.abs().max().item() for g in trl_grads.values()) > 1e-3  # the comparison is not of zeros
    calibrated, *_ = aco_loss(chosen, rejected, ref_w, ref_l, adv[:, 0], adv[:, 1], BETA, 1.0)
    assert abs(calibrated.mean().item() - trl_loss.item()) > 1e-4  # and at alpha = 1 ACO is not DPO here
