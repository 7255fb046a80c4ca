"""Screen the label-free baselines and the positive controls against the base and Genius: one round each.

    nice -n 10 python bench/methods.py --out runs/methods --seed 0

On the embedded toy as params.yaml builds it (`genius toy`: runs/toy), with round 1's queries
(`queries.per_round` of the pool, shuffled as ingest shuffles it), every arm is one round of
the library's own calls, no stage plumbing:

  genius            foresight re-sampling (the `sampling` section) + ACO (the `training` section)
  genius_sft        SFT on Genius's positives (the same pairs, `loss: sft`): the known reference
  self_consistency  ScPO: n responses per query, most-voted answer vs least-voted, `loss: scpo`
  lmsi              LMSI: SFT on the responses that agree with the majority, `loss: sft`
  self_certainty    INTUITOR's signal, offline: most vs least self-certain response, `loss: dpo`
  rft               CONTROL, uses labels: SFT on the responses that are right, `loss: sft`
  oracle_pairs      CONTROL, uses labels: Genius's candidates, a right one vs a wrong one, `loss: aco`

The four response arms share one sample: n responses per query at --temperature. Every arm
trains with the `training` section but for its loss (--lr, --epochs override all arms
alike). Self-rewarding is left out: the toy cannot read a rubric (genius.algorithm.self_rewarding).

Scored by the engine (bench/sweep.py's scorer, with per-problem results): greedy and one
sample at T=1.0 on the test set, the toy's `A:` rule; "vs base" is the change in points with
its paired standard error over the test problems. The toy's queries carry their answer (the
sum): it builds the two controls and measures how often each arm's training targets are
right; no label-free arm reads it. Costs per arm: the tokens and seconds of the sample it
trains from (the shared sample is counted whole for each arm that uses it), its own extra
scoring (self-certainty's forward pass), and its training seconds.

`--summarise runs/methods/s0 runs/methods/s1 ...` prints mean +- SE over those seeds, each
arm's change against the base paired by seed.

Writes under --out: genius/samples.jsonl, responses.jsonl, <arm>/{pairs|targets}.jsonl,
<arm>/train_steps.jsonl, <arm>/score.json, audit.json and table.md. A finished file is not
redone: rerun to resume, or delete an arm's folder to redo it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from genius.algorithm.controls import oracle_pairs, rft_targets  # noqa: E402
from genius.algorithm.lmsi import lmsi_targets  # noqa: E402
from genius.algorithm.pairs import pair_stats  # noqa: E402
from genius.algorithm.records import PreferencePair, ResponseGroup, SampleRecord, SftTarget  # noqa: E402
from genius.algorithm.responses import sample_responses  # noqa: E402
from genius.algorithm.sampling import cut_batches, foresight_sample_batches, prompt_ids  # noqa: E402
from genius.algorithm.self_certainty import certainty_pair, response_self_certainty  # noqa: E402
from genius.algorithm.self_consistency import scpo_pair  # noqa: E402
from genius.config import load_params  # noqa: E402
from genius.data.answers import read_answer  # noqa: E402
from genius.data.queries import load_pool, round_slice  # noqa: E402
from genius.engines.loading import load_model  # noqa: E402
from genius.engines.transformers_engine import TransformersEngine  # noqa: E402
from genius.evaluation.audit import audit_pairs, term_summary  # noqa: E402
from genius.io import read_jsonl, write_jsonl  # noqa: E402
from genius.stages.replicate import SEEDED  # noqa: E402
from genius.stages.shards import sampling_cost  # noqa: E402
from genius.toy.task import query_answer  # noqa: E402
from genius.training.recipe import train_round  # noqa: E402

ARMS = {  # name: (loss, uses labels)
    "genius": ("aco", False),
    "genius_sft": ("sft", False),
    "self_consistency": ("scpo", False),
    "lmsi": ("sft", False),
    "self_certainty": ("dpo", False),
    "rft": ("sft", True),
    "oracle_pairs": ("aco", True),
}
MODE = "toy"


def score(model_path: str, rows: list[dict], seed: int) -> dict[str, list[bool]]:
    """Per test problem, whether one greedy and one T=1.0 sample are right (bench/sweep.py's scorer)."""
    model, tokenizer = load_model(model_path, device="cpu")
    engine = TransformersEngine(model, tokenizer, 512, 131072)
    prompts = [prompt_ids(tokenizer, r["query"]) for r in rows]
    out = {}
    for task, temperature in (("greedy", 0.0), ("t1", 1.0)):
        torch.manual_seed(seed)
        done = engine.generate(prompts, n=1, temperature=temperature, max_new_tokens=96, stop=None)
        texts = [tokenizer.decode(c[0].token_ids, skip_special_tokens=True) for c in done]
        out[task] = [read_answer(t, MODE) == str(r["answer"]) for t, r in zip(texts, rows)]
    return out


def cached(path: Path, make):
    """JSON at `path`, made by `make()` the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(make()))
    return json.loads(path.read_text())


def genius_samples(out: Path, params, queries, model_path) -> dict:
    """Foresight sampling of the round's queries: samples.jsonl and its cost."""
    def make():
        model, tokenizer = load_model(model_path, device="cpu")
        engine = TransformersEngine(model, tokenizer, params.sampling.max_batch_sequences, params.sampling.max_batch_tokens)
        start, records = time.perf_counter(), []
        for batch in foresight_sample_batches(engine, tokenizer, cut_batches(queries, params.sampling.batch_queries), params.sampling):
            records += batch
        write_jsonl(out / "genius" / "samples.jsonl", (r.to_json() for r in records))
        c = engine.cost
        return {"generated_tokens": c.generated_tokens, "prefill_tokens": c.prefill_tokens, "seconds": time.perf_counter() - start}

    return cached(out / "genius" / "sampling.json", make)


def response_sample(out: Path, params, queries, model_path, n: int, temperature: float) -> dict:
    """n whole responses per query, shared by the response arms: responses.jsonl and its cost."""
    def make():
        model, tokenizer = load_model(model_path, device="cpu")
        engine = TransformersEngine(model, tokenizer, params.sampling.max_batch_sequences, params.sampling.max_batch_tokens)
        batches = cut_batches(queries, params.sampling.batch_queries)
        groups, costs = [], []
        for g, cost in sample_responses(engine, tokenizer, batches, n, temperature, params.sampling.max_rollout_tokens, params.sampling.seed):
            groups += g
            costs.append(cost)
        write_jsonl(out / "responses.jsonl", (g.to_json() for g in groups))
        total = sampling_cost(costs)
        return {"generated_tokens": total["generated_tokens"], "prefill_tokens": total["prefill_tokens"], "seconds": total["sampling_seconds"]}

    return cached(out / "responses.cost.json", make)


def build(arm: str, out: Path, model_path: str, answers: dict, min_vote_share: float) -> tuple[list, dict]:
    """The arm's training data (pairs, or SFT targets as pairs) and its extra cost."""
    extra = {"seconds": 0.0}
    if arm in ("genius", "genius_sft"):
        records = [SampleRecord.from_json(r) for r in read_jsonl(out / "genius" / "samples.jsonl")]
        return [p for r in records for p in r.pairs], extra
    if arm == "oracle_pairs":
        records = [SampleRecord.from_json(r) for r in read_jsonl(out / "genius" / "samples.jsonl")]
        return oracle_pairs(records, answers, MODE), extra
    groups = [ResponseGroup.from_json(r) for r in read_jsonl(out / "responses.jsonl")]
    read = lambda g: [read_answer(r.text, MODE) for r in g.responses]  # noqa: E731
    if arm == "self_consistency":
        return [p for g in groups if (p := scpo_pair(g, read(g), min_vote_share)) is not None], extra
    if arm == "lmsi":
        return [t.as_pair() for g in groups for t in lmsi_targets(g, read(g))], extra
    if arm == "rft":
        return [t.as_pair() for t in rft_targets(groups, answers, MODE)], extra
    if arm == "self_certainty":
        start = time.perf_counter()
        model, tokenizer = load_model(model_path, device="cpu")
        scores = response_self_certainty(model, tokenizer, groups)
        extra = {"seconds": time.perf_counter() - start, "forward_tokens": sum(len(r.token_ids) for g in groups for r in g.responses)}
        return [p for g, s in zip(groups, scores) if (p := certainty_pair(g, s)) is not None], extra
    raise ValueError(f"unknown arm {arm!r}")


def right_share(pairs: list[PreferencePair], answers: dict) -> dict:
    """How often the training targets are right (measured with labels, never trained on)."""
    if not pairs:
        return {}
    right = lambda p, text: read_answer(text, MODE) == str(answers[p.query_id])  # noqa: E731
    out = {"positive_right": sum(right(p, p.chosen) for p in pairs) / len(pairs)}
    if any(p.rejected for p in pairs):
        out["negative_right"] = sum(right(p, p.rejected) for p in pairs) / len(pairs)
    return out


def run_arm(arm: str, args, out: Path, params, model_path: str, answers: dict, rows: list[dict]) -> dict:
    loss, _ = ARMS[arm]
    d = out / arm
    data_file = d / "pairs.jsonl"
    if not data_file.exists():
        pairs, extra = build(arm, out, model_path, answers, args.min_vote_share)
        d.mkdir(parents=True, exist_ok=True)
        (d / "build.json").write_text(json.dumps(extra))
        write_jsonl(data_file, (p.to_json() for p in pairs))
    pairs = [PreferencePair.from_json(r) for r in read_jsonl(data_file)]
    extra = json.loads((d / "build.json").read_text())
    update = {"loss": loss, "threads": 1, **({"learning_rate": args.lr} if args.lr else {}), **({"epochs": args.epochs} if args.epochs else {})}
    cfg = params.training.model_copy(update=update)

    def train():
        start = time.perf_counter()
        metrics = train_round(pairs, model_path, d / "checkpoint", cfg, params.model, log=lambda m: None, work_dir=d,
                              term_grad_norms=arm in ("genius", "oracle_pairs"))
        return {"seconds": time.perf_counter() - start, "steps": metrics["steps"], "pull_preference": metrics["pull_preference"], "pull_sft": metrics["pull_sft"]}

    trained = cached(d / "train.json", train)
    correct = cached(d / "score.json", lambda: score(str(d / "checkpoint"), rows, args.seed))
    return {"arm": arm, "loss": loss, "data": len(pairs), "right": right_share(pairs, answers), "build": extra, "train": trained, "correct": correct}


def delta(arm: list[bool], base: list[bool]) -> tuple[float, float]:
    """Mean change in points and its paired standard error."""
    d = [float(a) - float(b) for a, b in zip(arm, base)]
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / (len(d) - 1)
    return 100 * mean, 100 * math.sqrt(var / len(d))


def table(results: list[dict], base: dict, costs: dict) -> str:
    lines = [
        "| arm | labels | loss | training data | positives right | negatives right | sample tokens | sample s | extra s | train s | greedy | vs base | T=1.0 | vs base |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| base | – | – | – | – | – | – | – | – | – | {100 * mean(base['greedy']):.1f} | – | {100 * mean(base['t1']):.1f} | – |",
    ]
    for r in results:
        source = "genius" if r["arm"] in ("genius", "genius_sft", "oracle_pairs") else "responses"
        c = costs[source]
        cells = [r["arm"], "yes" if ARMS[r["arm"]][1] else "no", r["loss"], str(r["data"])]
        cells += [f"{100 * r['right'][k]:.1f}" if k in r["right"] else "–" for k in ("positive_right", "negative_right")]
        cells += [f"{c['generated_tokens'] + c['prefill_tokens']:,}", f"{c['seconds']:.0f}", f"{r['build']['seconds']:.0f}", f"{r['train']['seconds']:.0f}"]
        for task in ("greedy", "t1"):
            m, se = delta(r["correct"][task], base[task])
            cells += [f"{100 * mean(r['correct'][task]):.1f}", f"{m:+.1f} ({se:.1f})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean(xs) -> float:
    return sum(xs) / len(xs)


def summarise(dirs: list[Path]) -> str:
    """Mean +- SE over seeds (one folder per seed) of each arm's accuracy and its change against the base, paired by seed."""
    lines = ["| arm | seeds | greedy | vs base | T=1.0 | vs base |", "|---|---|---|---|---|---|"]
    for arm in ["base", *ARMS]:
        found = [d for d in dirs if (d / arm / "score.json").exists()]
        if not found:
            continue
        cells = [arm, str(len(found))]
        for task in ("greedy", "t1"):
            acc = [100 * mean(json.loads((d / arm / "score.json").read_text())[task]) for d in found]
            base = [100 * mean(json.loads((d / "base" / "score.json").read_text())[task]) for d in found]
            cells.append(_mean_se(acc))
            cells.append("–" if arm == "base" else _mean_se([a - b for a, b in zip(acc, base)], signed=True))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_se(xs: list[float], signed: bool = False) -> str:
    m = mean(xs)
    se = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) if len(xs) > 1 else float("nan")
    return f"{m:+.1f} ± {se:.1f}" if signed else f"{m:.1f} ± {se:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="runs/methods")
    parser.add_argument("--seed", type=int, default=0, help="as the replicate's seeds: the query slice, sampling, training, scoring")
    parser.add_argument("--n", type=int, default=8, help="responses per query for the response arms")
    parser.add_argument("--temperature", type=float, default=0.8, help="their sampling temperature")
    parser.add_argument("--min-vote-share", type=float, default=0.5, help="ScPO's filter on the top answer's share")
    parser.add_argument("--lr", type=float, default=None, help="override training.learning_rate for every arm")
    parser.add_argument("--epochs", type=int, default=None, help="override training.epochs for every arm")
    parser.add_argument("--arms", nargs="*", default=list(ARMS))
    parser.add_argument("--queries", type=int, default=None, help="round 1's size (default queries.per_round)")
    parser.add_argument("--test-limit", type=int, default=None, help="score on the first N test problems only")
    parser.add_argument("--summarise", nargs="+", metavar="DIR", help="print the table over these runs' seeds, and stop")
    args = parser.parse_args()
    if args.summarise:
        print(summarise([Path(d) for d in args.summarise]))
        return
    torch.set_num_threads(1)
    params = load_params(args.params, {key: args.seed for key in SEEDED})
    out = Path(args.out)
    model_path = params.model.path
    pool, _ = load_pool(params.queries)
    queries = round_slice(pool, 1, args.queries or params.queries.per_round)
    answers = {q.id: query_answer(q.text) for q in queries}  # labels: controls and measurement only
    rows = list(read_jsonl(params.eval.test_path))[: args.test_limit]
    t0 = time.time()
    base = cached(out / "base" / "score.json", lambda: score(model_path, rows, args.seed))
    print(f"base: greedy {100 * mean(base['greedy']):.1f}  T=1.0 {100 * mean(base['t1']):.1f}", flush=True)
    costs = {}
    if {"genius", "genius_sft", "oracle_pairs"} & set(args.arms):
        costs["genius"] = genius_samples(out, params, queries, model_path)
        print(f"[{time.time() - t0:.0f}s] genius samples: {costs['genius']}", flush=True)
    if set(args.arms) - {"genius", "genius_sft", "oracle_pairs"}:
        costs["responses"] = response_sample(out, params, queries, model_path, args.n, args.temperature)
        print(f"[{time.time() - t0:.0f}s] responses: {costs['responses']}", flush=True)
    results = []
    for arm in args.arms:
        r = run_arm(arm, args, out, params, model_path, answers, rows)
        results.append(r)
        g, t = delta(r["correct"]["greedy"], base["greedy"]), delta(r["correct"]["t1"], base["t1"])
        print(f"[{time.time() - t0:.0f}s] {arm}: {r['data']} examples, right {r['right']}, greedy {g[0]:+.1f} ({g[1]:.1f}), T=1.0 {t[0]:+.1f} ({t[1]:.1f})", flush=True)
    if "genius" in args.arms:
        genius_pairs = [PreferencePair.from_json(x) for x in read_jsonl(out / "genius" / "pairs.jsonl")]
        audit = {
            "pairs": audit_pairs(genius_pairs, answers, MODE),
            "pair_stats": pair_stats(genius_pairs, len(queries)),
            "terms": {a: term_summary(list(read_jsonl(out / a / "train_steps.jsonl"))) for a in ("genius", "oracle_pairs") if a in args.arms},
        }
        (out / "audit.json").write_text(json.dumps(audit, indent=2))
    text = table(results, base, costs)
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
