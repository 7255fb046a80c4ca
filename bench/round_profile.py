"""Where a round's time goes: each stage of one real round against its ceiling, measured in the same run.

    python -m bench.round_profile --model models/smollm2-135m-instruct --engine transformers
    python -m bench.round_profile --model DIR --engine vllm --queries 16 --limit 64 --probe 16

Round 1 of `--params` (default configs/smollm2-rg.yaml) with `model.path` = --model, written into
a temporary runs folder, through the stage functions themselves: `run_ingest`, `run_sample`,
`run_pairs`, `run_train` (its reference log-probs and its training timed apart: train.json's
`reference_seconds`), lm-eval through `genius.evaluation.harness.evaluate` (every task in one call
and one model load, as `genius evaluate` runs them: the first task's seconds include the load),
and the diagnostics (`genius.evaluation.diagnostics`: the probe, `open_engine`, `diagnose`).
Sizes are the preset's unless --queries, --limit (test problems) or --probe (probe problems) say.

Right after each stage its ceiling is measured, on the engine kind the stage ran on and with the
stage's own thread count:
  generation (sampling, lm-eval, diagnostics)   plain batched decode of the stage's own prompts,
      whole responses with the stage's length limit, temperature and samples per prompt, in one call
      of `build_engine`'s engine (transformers or vLLM), built once on the base model before the
      round starts (its start-up is not in any stage);
  reference log-probs / training   plain forward / forward+backward passes (no optimizer) over as
      many tokens as the stage ran, random ids without padding, as many rows a pass as the stage's.
Tokens are generated tokens for generation stages (prompts not counted) and, for the others, the
unpadded tokens their forwards compute: a pair's row, its prompt once (genius/training/batches.py).
Steps are the batched forward passes a generation stage and its ceiling ran (vLLM: engine steps;
`EngineCost.steps`; lm-eval's own vLLM model does not count them): on a CPU each step reads every
weight, so a stage whose calls depend on each other (foresight's timestamps) runs more, emptier
steps than its ceiling's single call.
ingest and pairs run no model: seconds only. Seconds are wall seconds: on a shared machine read
the ratios, each measured next to its stage, and the load printed before and after.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import genius  # noqa: F401  first: sets torch's CPU environment before torch loads (genius/numerics.py, genius/openmp.py)
import torch

from genius.algorithm.records import PreferencePair
from genius.algorithm.sampling import prompt_ids
from genius.config import Params, load_params
from genius.data.queries import read_queries
from genius.engines import build_engine
from genius.evaluation.diagnostics import diagnose, labelled_problems
from genius.evaluation.scoring import open_engine
from genius.io import read_jsonl
from genius.stages import rounds
from genius.stages.registry import RoundEntry, write_registry
from genius.threads import torch_threads
from genius.training.batches import pair_width, sequence_tokens, tokenize_pairs
from genius.training.policy import load_policy
from genius.training.recipe import LENGTH_BUCKETS

HEADER = "| stage | seconds | tokens | tokens/s | ceiling tokens/s | ratio | steps | ceiling steps |\n|---|--:|--:|--:|--:|--:|--:|--:|"


@dataclass
class Row:
    stage: str
    seconds: float
    tokens: int | None = None  # None: the stage runs no model
    ceiling: float | None = None  # tokens/s of its ceiling
    steps: int | None = None  # batched forward passes (generation stages)
    ceiling_steps: int | None = None

    def line(self) -> str:
        rate = self.tokens / self.seconds if self.tokens else None
        ratio = rate / self.ceiling if rate and self.ceiling else None
        cells = (f"{self.seconds:.2f}", _fmt(self.tokens, ","), _fmt(rate, ",.1f"), _fmt(self.ceiling, ",.1f"), _fmt(ratio, ".2f"))
        cells += (_fmt(self.steps, ","), _fmt(self.ceiling_steps, ","))
        return f"| {self.stage} | " + " | ".join(cells) + " |"


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    return fn(*args, **kwargs), time.perf_counter() - start


def decode_rate(engine, prompts: list[list[int]], threads: int, *, n: int, temperature: float, max_new_tokens: int):
    """(generated tokens/s, engine steps) of one plain engine call: whole responses, no steps, no decisions."""
    torch.manual_seed(0)
    with torch_threads(threads):
        before, steps, start = engine.cost.generated_tokens, engine.cost.steps, time.perf_counter()
        engine.generate(prompts, n=n, temperature=temperature, max_new_tokens=max_new_tokens, stop=None)
        rate = (engine.cost.generated_tokens - before) / (time.perf_counter() - start)
        return rate, engine.cost.steps - steps


def forward_rate(model, tokens: int, width: int, rows: int, threads: int, backward: bool) -> float:
    """Tokens/s of plain forward (and backward) passes of `rows` x `width` random ids, over >= `tokens` tokens."""
    passes = max(1, math.ceil(tokens / (rows * width)))
    ids = torch.randint(0, model.config.vocab_size, (rows, width), generator=torch.Generator().manual_seed(0))
    with torch_threads(threads), torch.set_grad_enabled(backward):
        start = time.perf_counter()
        for _ in range(passes):
            logits = model(input_ids=ids, use_cache=False).logits
            if backward:
                torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten()).backward()
                model.zero_grad(set_to_none=True)
        return passes * rows * width / (time.perf_counter() - start)


def task_generation(eval_cfg, name: str) -> tuple[float, int]:
    """(temperature, max_gen_toks) of an lm-eval generation task, as its YAML (or eval.max_gen_toks) sets them."""
    from genius.evaluation.tasks import make_task_manager, read_task_yaml

    manager = make_task_manager(Path(eval_cfg.include_path).resolve(), [name], {})
    kwargs = read_task_yaml(manager.task_index[name].yaml_path).get("generation_kwargs") or {}
    temperature = float(kwargs.get("temperature", 1.0)) if kwargs.get("do_sample") else 0.0
    return temperature, eval_cfg.max_gen_toks or int(kwargs.get("max_gen_toks", 256))  # lm-eval's default: 256


def sampling_stage(params: Params, engine, tokenizer, log) -> Row:
    s = params.sampling
    stats, seconds = timed(rounds.run_sample, params, 1, log)
    prompts = [prompt_ids(tokenizer, q.text) for q in read_queries(rounds.round_paths(params, 1).queries)]
    limit = s.max_step_tokens + s.max_rollout_tokens  # a whole response: its steps and the rollout's rest
    ceiling, steps = decode_rate(engine, prompts, s.threads, n=s.step_beam_size * s.num_rollouts, temperature=s.temperature, max_new_tokens=limit)
    return Row("sampling", seconds, stats["generated_tokens"], ceiling, stats["engine_steps"], steps)


def evaluation_stages(params: Params, engine, tokenizer) -> list[Row]:
    """lm-eval (a row per task: the first includes the model's load) and the diagnostics, each with its decode ceiling."""
    from genius.evaluation.harness import evaluate  # lm-eval costs seconds to import

    s, e, pool = params.sampling, params.eval, params.queries.paths
    checkpoint = str(rounds.round_paths(params, 1).checkpoint)
    marks = [time.perf_counter()]
    result = evaluate(checkpoint, e, params.model, Path("."), pool, done=lambda k: marks.append(time.perf_counter()))
    test = [prompt_ids(tokenizer, p["query"]) for p in labelled_problems(e.test_path, e.limit or 10**9, Path("."), pool)]
    rows = []
    for k, name in enumerate(e.tasks):
        temperature, max_tokens = task_generation(e, name)
        tokens = sum(len(tokenizer(r["response"], add_special_tokens=False)["input_ids"]) for r in result["samples"][name])
        ceiling, steps = decode_rate(engine, test, e.threads, n=1, temperature=temperature, max_new_tokens=max_tokens)
        kind = "sampled" if temperature else "greedy"
        rows.append(Row(f"lm-eval {kind} ({name})", marks[k + 1] - marks[k], tokens, ceiling, ceiling_steps=steps))
    if e.diagnostics:
        start = time.perf_counter()  # what diagnose_checkpoint runs, apart so that its engine's cost can be read
        probe = labelled_problems(e.diagnostics_path or e.test_path, e.diagnostics_problems, Path("."), pool)
        with torch_threads(e.threads):
            diag_engine, diag_tokenizer = open_engine(checkpoint, e, params.model, s)
            diagnose(diag_engine, diag_tokenizer, probe, s, e.diagnostics_samples, e.diagnostics_answer, e.seed)
        seconds, tokens, diag_steps = time.perf_counter() - start, diag_engine.cost.generated_tokens, diag_engine.cost.steps
        del diag_engine
        gc.collect()
        prompts = [prompt_ids(tokenizer, p["query"]) for p in probe]
        limit = s.max_rollout_tokens  # the diagnostics' response limit
        ceiling, steps = decode_rate(engine, prompts, e.threads, n=e.diagnostics_samples, temperature=s.temperature, max_new_tokens=limit)
        rows.append(Row("diagnostics", seconds, tokens, ceiling, diag_steps, steps))
    return rows


def training_stages(params: Params, tokenizer, log) -> list[Row]:
    """Reference log-probs and training (one `run_train`), each with its forward(-backward) ceiling.

    Their tokens are the tokens their forwards compute: a pair's packed row, its prompt once
    (`pair_width`), not its two sequences (`sequence_tokens`, train.json's unit, printed apart).
    """
    t, paths = params.training, rounds.round_paths(params, 1)
    metrics, seconds = timed(rounds.run_train, params, 1, log)
    examples = tokenize_pairs(tokenizer, [PreferencePair.from_json(row) for row in read_jsonl(paths.pairs)])
    widths = [pair_width(e) for e in examples]
    ref = Row("reference log-probs", metrics["reference_seconds"], sum(widths))
    train = Row("training", seconds - metrics["reference_seconds"], t.epochs * sum(widths))
    log(f"pairs' rows {sum(widths):,} tokens, their sequences {sequence_tokens(examples):,} (each with its prompt)")
    if widths:
        model, _ = load_policy(params.model.path, params.model, t)
        width, micro = round(sum(widths) / len(widths)), max(1, math.ceil(t.batch_size / LENGTH_BUCKETS))
        ref.ceiling = forward_rate(model, ref.tokens, width, t.batch_size, t.threads, backward=False)
        train.ceiling = forward_rate(model, train.tokens, width, micro, t.threads, backward=True)
    return [ref, train]


def profile(params: Params, log=print) -> list[Row]:
    """Round 1 of `params`, stage by stage; the rows in the round's order."""
    engine, tokenizer = build_engine(params.model.path, params.sampling, params.model)  # the decode ceilings' engine
    rows = [Row("ingest", timed(rounds.run_ingest, params, 1, log)[1])]
    rows.append(sampling_stage(params, engine, tokenizer, log))
    rows.append(Row("pairs", timed(rounds.run_pairs, params, 1, log)[1]))
    rows += training_stages(params, tokenizer, log)
    gc.collect()
    return rows + evaluation_stages(params, engine, tokenizer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the policy: an HF model folder")
    parser.add_argument("--engine", choices=("transformers", "vllm"), default="transformers", help="sampling, lm-eval and diagnostics")
    parser.add_argument("--params", default="configs/smollm2-rg.yaml", help="the round's settings (default: the SmolLM2 preset)")
    parser.add_argument("--queries", type=int, help="queries of the round (default: the preset's queries.per_round)")
    parser.add_argument("--limit", type=int, help="test problems per lm-eval task (default: the preset's eval.limit)")
    parser.add_argument("--probe", type=int, help="diagnostics probe problems (default: the preset's eval.diagnostics_problems)")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="any other param")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="round-profile-"))
    sizes = {"queries.per_round": args.queries, "eval.limit": args.limit, "eval.diagnostics_problems": args.probe}
    overrides = [f"model.path={args.model}", f"sampling.engine={args.engine}", f"eval.engine={'hf' if args.engine == 'transformers' else 'vllm'}"]
    overrides += [f"{k}={v}" for k, v in sizes.items() if v is not None]
    overrides += [f"rounds.runs_dir={work / 'runs'}", f"rounds.registry={work / 'rounds.yaml'}", *args.set]
    params = load_params(args.params, overrides)
    write_registry(params.rounds.registry, {1: RoundEntry(1, params.model.path)})
    s, e = params.sampling, params.eval
    setting = (
        f"{args.model} on {args.engine}; {params.queries.per_round} queries (M={s.step_beam_size} N={s.num_rollouts} "
        f"K={s.num_foresight_steps}), {e.limit or 'all'} test problems x {len(e.tasks)} tasks, probe {e.diagnostics_problems}"
        f" x {e.diagnostics_samples}; threads: sampling {s.threads}, training {params.training.threads}, eval {e.threads}"
    )
    load_before, start = os.getloadavg(), time.perf_counter()
    try:
        rows = profile(params)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - start
    print(f"\n{setting}\nload average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} (1 min)\n{HEADER}")
    for row in rows:
        print(row.line())
    print(f"| round (stages) | {sum(r.seconds for r in rows):.1f} | | | | | | |\n\nwall time with the ceilings: {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
