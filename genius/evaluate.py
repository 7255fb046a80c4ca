"""Score a checkpoint with lm-eval on the tasks named in `EvalConfig`.

The model is loaded once with transformers and handed to lm-eval's `HFLM`, so the same code
scores the embedded toy and an 8B hub model. Task definitions live in `eval_cfg.include_path`
(for the toy: eval/genius_toy/); the labelled test file reaches them as lm-eval task
metadata (`test_path`), so the YAMLs name no path. Prompts go through the tokenizer's chat
template, as the policy saw them during sampling and training. Returns plain numbers and
per-sample records for the caller to save; writes nothing itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from genius.config import EvalConfig, ModelConfig
from genius.engine import load_model


class EvaluationError(RuntimeError):
    """lm-eval ran but did not report what the config asked for."""


def evaluate(model_path: str, eval_cfg: EvalConfig, model_cfg: ModelConfig, base_dir: Path = Path(".")) -> dict:
    """Run `eval_cfg.tasks` on the model at `model_path`; relative config paths resolve in `base_dir`.

    Returns {"accuracy": {task: float}, "stderr": {task: float | None}, "num_samples": {task: int},
    "samples": {task: [record, ...]} (see `sample_records`), "seconds": wall time of the call}.
    """
    # Imported here: lm_eval adds ~1.3 s of imports that callers who only sample or train
    # should not pay for.
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    start = time.perf_counter()
    base_dir = Path(base_dir)
    include_path = (base_dir / eval_cfg.include_path).resolve()
    test_path = (base_dir / eval_cfg.test_path).resolve()
    m = model_cfg
    model, tokenizer = load_model(model_path, m.dtype, m.device, m.trust_remote_code)
    device = str(model.device)
    _stop_at_tokenizer_eos(model, tokenizer)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(eval_cfg.threads)
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=eval_cfg.batch_size, device=device)
        task_manager = TaskManager(
            include_path=str(include_path), include_defaults=False, metadata={"test_path": str(test_path)}
        )
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(eval_cfg.tasks),
            task_manager=task_manager,
            apply_chat_template=tokenizer.chat_template is not None,
            limit=eval_cfg.limit,
            random_seed=eval_cfg.seed,
            numpy_random_seed=eval_cfg.seed,
            torch_random_seed=eval_cfg.seed,
            fewshot_random_seed=eval_cfg.seed,
            log_samples=True,
            # a mean's stderr is closed-form at any value > 0 (0 would drop stderr); the
            # default 100,000 resamples only slows metrics that need a bootstrap
            bootstrap_iters=1000,
        )
    finally:
        torch.set_num_threads(previous_threads)

    out: dict[str, Any] = {"accuracy": {}, "stderr": {}, "num_samples": {}, "samples": {}}
    for task in eval_cfg.tasks:
        task_results = results["results"].get(task, {})
        if eval_cfg.metric not in task_results:
            reported = sorted(k for k in task_results if "," in k)  # metric keys are "name,filter"
            raise EvaluationError(
                f"lm-eval task {task!r} reported no metric {eval_cfg.metric!r} (eval.metric); it reported {reported}"
            )
        name, _, filter_name = eval_cfg.metric.partition(",")
        stderr = task_results.get(f"{name}_stderr,{filter_name}" if filter_name else f"{name}_stderr")
        out["accuracy"][task] = float(task_results[eval_cfg.metric])
        out["stderr"][task] = float(stderr) if isinstance(stderr, (int, float)) else None
        out["num_samples"][task] = int(results["n-samples"][task]["effective"])
        out["samples"][task] = sample_records(results["samples"][task], eval_cfg.metric)
    out["seconds"] = time.perf_counter() - start
    return out


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
