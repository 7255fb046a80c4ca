"""Training on many GPUs and nodes: the `accelerate launch` command that `genius train` runs.

With `training.launch: accelerate`, `genius train --round R` does not train in its own
process: it runs

    accelerate launch [--config_file C] --num_machines N --num_processes P --machine_rank K
        [--main_process_ip IP] --main_process_port PORT -m genius --params ... train --round R

and returns its exit code. Each of the P processes (P / N per node, one per GPU) runs the
trainer (`genius.training.recipe`), which takes the world size from accelerate; `training.batch_size`
stays the global batch whatever P. Node 0 is where the flow, or DVC, runs `genius train`;
on node k > 0 run `genius train --round R --machine-rank k` with the same params and the
same `runs/` (a shared filesystem: every process reads the pairs and rank 0 writes the
checkpoint). The launched processes see GENIUS_LAUNCHED=1 and train instead of launching.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import torch

from genius.config import ConfigError, ModelConfig, TrainingConfig

LAUNCHED = "GENIUS_LAUNCHED"  # set in the launched processes' environment


def launched() -> bool:
    """True inside a process that `accelerate launch` started for us."""
    return os.environ.get(LAUNCHED) == "1"


def accelerate_command(
    cfg: TrainingConfig, params_path: str, overrides: list[str], r: int, machine_rank: int = 0
) -> list[str]:
    """The `accelerate launch` command line for round r's training on machine `machine_rank`."""
    if not 0 <= machine_rank < cfg.num_machines:
        raise ConfigError(
            f"--machine-rank {machine_rank}: expected 0 <= rank < training.num_machines ({cfg.num_machines})"
        )
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if cfg.accelerate_config:
        cmd += ["--config_file", cfg.accelerate_config]  # its distributed type (ZeRO-3, FSDP) and precision
    elif cfg.num_processes > 1:
        cmd += ["--multi_gpu"]  # DDP; on a machine without GPUs torch.distributed falls back to gloo on CPU
    # the flags override the config file's values: params decide the world size
    cmd += ["--num_machines", str(cfg.num_machines), "--num_processes", str(cfg.num_processes)]
    cmd += ["--machine_rank", str(machine_rank)]
    if cfg.num_machines > 1:
        cmd += ["--main_process_ip", cfg.main_process_ip]
    cmd += ["--main_process_port", str(cfg.main_process_port)]
    cmd += ["-m", "genius", "--params", params_path]
    for item in overrides:
        cmd += ["-S", item]
    return cmd + ["train", "--round", str(r)]


def run_accelerate(cfg: TrainingConfig, params_path: str, overrides: list[str], r: int, machine_rank: int = 0) -> int:
    """Run round r's training under `accelerate launch`; returns its exit code."""
    cmd = accelerate_command(cfg, params_path, overrides, r, machine_rank)
    print(f"launching {cfg.num_processes} training process(es) on {cfg.num_machines} machine(s): {shlex.join(cmd)}")
    return subprocess.run(cmd, env=os.environ | {LAUNCHED: "1"}).returncode


def make_accelerator(cfg: TrainingConfig, model_cfg: ModelConfig):
    """The round's `Accelerator`: this process alone, or one of those `accelerate launch` started."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    precision = cfg.mixed_precision
    if precision == "auto":
        on_gpu = model_cfg.device != "cpu" and torch.cuda.is_available()
        # under `accelerate launch` the launch config decides; alone, bf16 autocast where the GPU has it
        precision = (
            None
            if "ACCELERATE_MIXED_PRECISION" in os.environ
            else ("bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no")
        )
    accelerator = Accelerator(
        cpu=model_cfg.device == "cpu",
        mixed_precision=precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
    )
    sharded = accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
    if sharded and (cfg.finetune == "lora" or cfg.save_every):
        # unsupported: merging sharded adapters, and sharded optimizer state without pickle
        raise ValueError(
            "training.finetune: lora and training.save_every > 0 are not supported under DeepSpeed/FSDP; "
            "use training.finetune: full and training.save_every: 0"
        )
    return accelerator
