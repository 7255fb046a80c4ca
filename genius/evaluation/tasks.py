"""The lm-eval tasks that `genius.evaluation.harness` scores a checkpoint on: finding them,
handing them their test set, running them with an lm-eval model and reading back the results.

Task definitions live in `eval_cfg.include_path` (eval/: the toy tasks, the paper's seven
benchmarks `genius_reasoning[_greedy]`, the forgetting check `genius_sanity`, reasoning-gym
`genius_rg[_sampled]`) and in lm-eval's built-in tasks, which are indexed only when a
requested name needs them (~6 s). The test set reaches our tasks as lm-eval task metadata
(`task_metadata`): the toy's labelled file (`test_path`), or a `reasoning_gym:` spec with the
query pool's own specs (`pool`), which the genius_rg tasks leave out of the test set. Each name in
`eval.tasks` runs as its own lm-eval call, because the sampled and greedy suites share task
names, which lm-eval refuses within one call.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from genius.config import EvalConfig
from genius.data import reasoning_gym


class EvaluationError(RuntimeError):
    """lm-eval ran but did not report what the config asked for, or the engine cannot run."""


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


def run_tasks(lm, eval_cfg: EvalConfig, task_manager, apply_chat_template: bool, done: Callable[[int], None] | None = None) -> dict:
    """Run each name in `eval_cfg.tasks` through lm-eval with `lm`; the numbers as `evaluate` returns them.

    `done(k)` is called once the first k names are scored.
    """
    import lm_eval  # ~1.3 s of imports that callers who only sample or train should not pay for

    out: dict[str, Any] = {"accuracy": {}, "stderr": {}, "num_samples": {}, "samples": {}}
    for k, name in enumerate(eval_cfg.tasks, 1):
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
        if done:
            done(k)
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
