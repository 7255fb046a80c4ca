"""The policy being trained, full or LoRA, and the round's checkpoint.

The policy a round starts from loads through `genius.engines.loading.load_model`: a LoRA
round's chain arrives merged. With LoRA (peft) only the new adapter trains; the policy with
the adapter switched off is the reference, so no second model sits in memory.

Full fine-tuning saves the whole model, an ordinary `save_pretrained` folder. LoRA saves the
new adapter alone (adapter_model.safetensors, adapter_config.json: megabytes, not the model's
gigabytes) and its lineage file naming the policy it was trained on (genius/engines/lineage.py);
every loader rebuilds the policy from the chain.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import torch

from genius.config import ModelConfig, TrainingConfig
from genius.engines.lineage import write_lineage
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


def save_checkpoint(model, tokenizer, out_dir: Path, accelerator, lineage: dict | None = None) -> None:
    """The round's checkpoint via a temp folder and a rename: a crash never leaves half a checkpoint.

    Full fine-tuning: the HF model and tokenizer; under ZeRO-3 or FSDP the full weights are
    gathered first (`get_state_dict`). LoRA: the adapter and `lineage` (`lineage_record` of
    the policy the round started from); the tokenizer stays with the base.
    """
    from accelerate.utils import DistributedType

    sharded = accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
    state_dict = accelerator.get_state_dict(model) if sharded else None  # collective: every process takes part
    if not accelerator.is_main_process:
        return
    unwrapped = accelerator.unwrap_model(model)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(unwrapped, "peft_config"):  # LoRA: the adapter alone, and the chain it extends
        unwrapped.save_pretrained(tmp, safe_serialization=True)
        (tmp / "README.md").unlink(missing_ok=True)  # peft's empty model card
        write_lineage(tmp, lineage)
    else:
        unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)  # a linked output (DVC's cache) is unlinked, never written into
    tmp.rename(out_dir)
