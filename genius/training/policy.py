"""The policy being trained, full or LoRA, and the round's checkpoint in plain HF format.

With LoRA (peft) only the adapters train; the frozen base with the adapters switched off is
the reference, so no second model sits in memory. The checkpoint is always a merged,
ordinary `save_pretrained` folder: vLLM, lm-eval and the next round load it like any model.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import torch

from genius.config import ModelConfig, TrainingConfig
from genius.engines.loading import load_model


def load_policy(path: str, model_cfg: ModelConfig, cfg: TrainingConfig):
    """(model, tokenizer) on the CPU (accelerate places it), dropout off, LoRA adapters added when asked.

    Dropout is switched off as TRL does: with it, the policy's log-probs at step 0 would not
    equal the reference's, and DPO-style losses start off their minimum's neighbourhood.
    LoRA's own dropout (`lora_dropout`) is kept: it is a choice, not a default.
    """
    model, tokenizer = load_model(path, model_cfg.dtype, "cpu", model_cfg.trust_remote_code)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    if cfg.finetune == "lora":
        from peft import LoraConfig, get_peft_model

        targets = cfg.lora_target_modules
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=targets[0] if targets == ["all-linear"] else targets,  # peft's shorthand is a plain string
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    model.train()
    return model, tokenizer


def adapters_off(model):
    """Context in which a LoRA model computes its base (the reference); a no-op for full fine-tuning."""
    return model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()


def save_checkpoint(model, tokenizer, out_dir: Path, accelerator) -> None:
    """Merged HF checkpoint via a temp folder and a rename: a crash never leaves half a checkpoint.

    Under ZeRO-3 or FSDP the full weights are gathered first (`get_state_dict`).
    """
    from accelerate.utils import DistributedType

    sharded = accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
    state_dict = accelerator.get_state_dict(model) if sharded else None  # collective: every process takes part
    if not accelerator.is_main_process:
        return
    unwrapped = accelerator.unwrap_model(model)
    if hasattr(unwrapped, "merge_and_unload"):
        unwrapped, state_dict = unwrapped.merge_and_unload(), None  # LoRA: fold W + BA into W
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
