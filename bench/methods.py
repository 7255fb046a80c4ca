"""Screen the label-free baselines and the positive controls against the base and Genius: one round each.

    nice -n 10 python -m bench.methods --out runs/methods --seed 0
    nice -n 10 python -m bench.methods --out runs/methods --seed 0 --arms genius_dl_sft100 genius_dl_sft

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

and, named with --arms only, Genius's recipe variants (VARIANTS: a sample set and the training
keys they change; docs/RESULTS.md, "Genius recipes"):

  genius_sft30, genius_sft100  ACO with the SFT term x30, x100 (the preference term's gradient is ~100x it)
  genius_beta50                ACO at beta 50, meant to saturate the preference term sooner (it does not)
  genius_simpo                 SimPO (beta 2, gamma 1) on Genius's pairs: per-token mean log-probs, as the SFT term
  genius_dl                    sampled with `dedup_steps: true`, `negative_selection: lowest`; ACO as default
  genius_dl_sft100             those pairs, ACO with the SFT term x100
  genius_dl_simpo              those pairs, SimPO (beta 2, gamma 1)
  genius_dl_sft                SFT on those pairs' positives

Each sample set (SAMPLINGS) is sampled once into the folder of its own arm and shared by the
arms built from it; every Genius arm logs the two terms' gradient norms per step.

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
arm's change against the base, LMSI and Genius (--versus) paired by seed, and each Genius
arm's preference and SFT gradient norms.

Writes under --out: genius/samples.jsonl (genius_dl/ for that sample set), responses.jsonl,
<arm>/pairs.jsonl, <arm>/train_steps.jsonl, <arm>/score.json, audit.json, and table.md
(table-variants.md when --arms is not the default). A finished file is not
redone: rerun to resume, or delete an arm's folder to redo it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from genius.algorithm.controls import oracle_pairs, rft_targets
from genius.algorithm.lmsi import lmsi_targets
from genius.algorithm.pairs import pair_stats
from genius.algorithm.records import PreferencePair, ResponseGroup, SampleRecord, SftTarget
from genius.algorithm.responses import sample_responses
from genius.algorithm.sampling import cut_batches, foresight_sample_batches, prompt_ids
from genius.algorithm.self_certainty import certainty_pair, response_self_certainty
from genius.algorithm.self_consistency import scpo_pair
from genius.config import load_params
from genius.data.answers import read_answer
from genius.data.queries import load_pool, round_slice
from genius.engines.loading import load_model
from genius.engines.transformers_engine import TransformersEngine
from genius.evaluation.audit import audit_pairs, term_summary
from genius.io import read_jsonl, write_jsonl
from genius.layout import RoundPaths
from genius.stages.replicate import SEEDED
from genius.stages.shards import sampling_cost
from genius.toy.task import query_answer
from genius.training.recipe import train_round

ARMS = {  # name: (loss, uses labels)
    "genius": ("aco", False),
    "genius_sft": ("sft", False),
    "self_consistency": ("scpo", False),
    "lmsi": ("sft", False),
    "self_certainty": ("dpo", False),
    "rft": ("sft", True),
    "oracle_pairs": ("aco", True),
}
SAMPLINGS = {  # a Genius sample set (its arm's folder): the `sampling` keys it changes
    "genius": {},
    "genius_dl": {"dedup_steps": True, "negative_selection": "lowest"},  # H2's best (docs/RESULTS.md)
}
VARIANTS = {  # Genius recipe variants (issue 23): name: (sample set, the `training` keys they change)
    "genius_sft30": ("genius", {"sft_weight": 30.0}),
    "genius_sft100": ("genius", {"sft_weight": 100.0}),
    "genius_beta50": ("genius", {"beta": 50.0}),
    "genius_simpo": ("genius", {"loss": "simpo", "beta": 2.0, "simpo_gamma": 1.0}),
    "genius_dl": ("genius_dl", {}),
    "genius_dl_sft100": ("genius_dl", {"sft_weight": 100.0}),
    "genius_dl_simpo": ("genius_dl", {"loss": "simpo", "beta": 2.0, "simpo_gamma": 1.0}),
    "genius_dl_sft": ("genius_dl", {"loss": "sft"}),
}
SOURCE = {"genius": "genius", "genius_sft": "genius", "oracle_pairs": "genius"} | {a: v[0] for a, v in VARIANTS.items()}
ARMS |= {a: (v[1].get("loss", "aco"), False) for a, v in VARIANTS.items()}
BASELINES = ["genius", "genius_sft", "self_consistency", "lmsi", "self_certainty", "rft", "oracle_pairs"]
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


def genius_samples(out: Path, params, queries, model_path, name: str = "genius") -> dict:
    """Foresight sampling of the round's queries with sample set `name`'s keys: <name>/samples.jsonl and its cost."""
    def make():
        sampling = params.sampling.model_copy(update=SAMPLINGS[name])
        model, tokenizer = load_model(model_path, device="cpu")
        engine = TransformersEngine(model, tokenizer, sampling.max_batch_sequences, sampling.max_batch_tokens)
        start, records = time.perf_counter(), []
        batches = cut_batches(queries, sampling.batch_queries)
        for batch in foresight_sample_batches(engine, tokenizer, batches, sampling):
            records += batch
        write_jsonl(RoundPaths(out / name).samples, (r.to_json() for r in records))
        c = engine.cost
        return {"generated_tokens": c.generated_tokens, "prefill_tokens": c.prefill_tokens, "seconds": time.perf_counter() - start}

    return cached(RoundPaths(out / name).sampling, make)


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
    if arm in SOURCE:
        records = [SampleRecord.from_json(r) for r in read_jsonl(RoundPaths(out / SOURCE[arm]).samples)]
        if arm == "oracle_pairs":
            return oracle_pairs(records, answers, MODE), extra
        return [p for r in records for p in r.pairs], extra
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
    data_file = RoundPaths(d).pairs
    if not data_file.exists():
        pairs, extra = build(arm, out, model_path, answers, args.min_vote_share)
        d.mkdir(parents=True, exist_ok=True)
        (d / "build.json").write_text(json.dumps(extra))
        write_jsonl(data_file, (p.to_json() for p in pairs))
    pairs = [PreferencePair.from_json(r) for r in read_jsonl(data_file)]
    extra = json.loads((d / "build.json").read_text())
    update = {"loss": loss, "threads": 1, **VARIANTS.get(arm, (None, {}))[1]}
    update |= ({"learning_rate": args.lr} if args.lr else {}) | ({"epochs": args.epochs} if args.epochs else {})
    cfg = params.training.model_copy(update=update)

    def train():
        start = time.perf_counter()
        metrics = train_round(pairs, model_path, RoundPaths(d).checkpoint, cfg, params.model, log=lambda m: None, work_dir=d,
                              term_grad_norms=arm in SOURCE and loss != "sft")
        return {"seconds": time.perf_counter() - start, "steps": metrics["steps"], "pull_preference": metrics["pull_preference"], "pull_sft": metrics["pull_sft"]}

    trained = cached(RoundPaths(d).training, train)
    correct = cached(d / "score.json", lambda: score(str(RoundPaths(d).checkpoint), rows, args.seed))
    terms = term_summary(list(read_jsonl(RoundPaths(d).train_steps))) if arm in SOURCE and loss != "sft" else {}
    return {"arm": arm, "loss": loss, "data": len(pairs), "right": right_share(pairs, answers), "build": extra,
            "train": trained, "correct": correct, "terms": terms}


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
        c = costs[SOURCE.get(r["arm"], "responses")]
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


def summarise(dirs: list[Path], versus: list[str]) -> str:
    """Mean +- SE over seeds (one folder per seed) of each arm's accuracy and its change against
    each of the `versus` arms, paired by seed; then each Genius arm's two terms over training."""
    head = ["greedy", *(f"vs {v}" for v in versus), "T=1.0", *(f"vs {v}" for v in versus)]
    lines = ["| arm | seeds | " + " | ".join(head) + " |", "|---" * (len(head) + 2) + "|"]
    for arm in ["base", *ARMS]:
        found = [d for d in dirs if (d / arm / "score.json").exists()]
        if not found:
            continue
        cells = [arm, str(len(found))]
        for task in ("greedy", "t1"):
            acc = {d: 100 * mean(json.loads((d / arm / "score.json").read_text())[task]) for d in found}
            cells.append(_mean_se(list(acc.values())))
            for other in versus:
                paired = [d for d in found if (d / other / "score.json").exists()]
                ref = [100 * mean(json.loads((d / other / "score.json").read_text())[task]) for d in paired]
                diffs = [acc[d] - r for d, r in zip(paired, ref)]
                cells.append("–" if arm == other or not diffs else _mean_se(diffs, signed=True))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + terms_table(dirs)


def terms_table(dirs: list[Path]) -> str:
    """Per Genius arm, mean +- SE over seeds of the preference and SFT terms' gradient norms
    (before clipping) at the first step and over the round, and their ratio; the pulls' ratio."""
    lines = [
        "| arm | seeds | pref. grad, step 1 | SFT grad, step 1 | ratio, step 1 | pref. grad, mean | SFT grad, mean"
        " | ratio, mean | pull ratio, mean | total grad, mean |",
        "|---" * 10 + "|",
    ]
    for arm in ARMS:
        found = [RoundPaths(d / arm).train_steps for d in dirs if (d / arm / "score.json").exists()]
        sums = [term_summary(list(read_jsonl(f))) for f in found if f.exists()]
        sums = [t for t in sums if t and t["first"].get("grad_norm_sft") is not None]
        if not sums:
            continue
        cells = [arm, str(len(sums))]
        for part, key in [("first", "grad_norm_preference"), ("first", "grad_norm_sft"), ("first", "grad_ratio"),
                          ("mean", "grad_norm_preference"), ("mean", "grad_norm_sft"), ("mean", "grad_ratio"),
                          ("mean", "pull_ratio"), ("mean", "grad_norm")]:
            values = [t[part][key] for t in sums if t[part][key] is not None]
            cells.append(_mean_se(values, digits=3 if max(values, default=0) < 10 else 1) if values else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_se(xs: list[float], signed: bool = False, digits: int = 1) -> str:
    m = mean(xs)
    se = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) if len(xs) > 1 else float("nan")
    return f"{m:+.{digits}f} ± {se:.{digits}f}" if signed else f"{m:.{digits}f} ± {se:.{digits}f}"


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
    parser.add_argument("--arms", nargs="*", default=BASELINES, choices=list(ARMS),
                        help="default: the baselines and controls; Genius's variants by name")
    parser.add_argument("--queries", type=int, default=None, help="round 1's size (default queries.per_round)")
    parser.add_argument("--test-limit", type=int, default=None, help="score on the first N test problems only")
    parser.add_argument("--summarise", nargs="+", metavar="DIR", help="print the table over these runs' seeds, and stop")
    parser.add_argument("--versus", nargs="+", default=["base", "lmsi", "genius"], choices=["base", *ARMS],
                        help="--summarise: the arms each arm's change is paired against")
    args = parser.parse_args()
    if args.summarise:
        print(summarise([Path(d) for d in args.summarise], args.versus))
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
    for name in sorted({SOURCE[a] for a in args.arms if a in SOURCE}):
        costs[name] = genius_samples(out, params, queries, model_path, name)
        print(f"[{time.time() - t0:.0f}s] {name} samples: {costs[name]}", flush=True)
    if set(args.arms) - set(SOURCE):
        costs["responses"] = response_sample(out, params, queries, model_path, args.n, args.temperature)
        print(f"[{time.time() - t0:.0f}s] responses: {costs['responses']}", flush=True)
    results = []
    for arm in args.arms:
        r = run_arm(arm, args, out, params, model_path, answers, rows)
        results.append(r)
        g, t = delta(r["correct"]["greedy"], base["greedy"]), delta(r["correct"]["t1"], base["t1"])
        print(f"[{time.time() - t0:.0f}s] {arm}: {r['data']} examples, right {r['right']}, greedy {g[0]:+.1f} ({g[1]:.1f}), T=1.0 {t[0]:+.1f} ({t[1]:.1f})", flush=True)
    audit_file = out / "audit.json"
    audit = json.loads(audit_file.read_text()) if audit_file.exists() else {}
    if "genius" in args.arms:
        genius_pairs = [PreferencePair.from_json(x) for x in read_jsonl(RoundPaths(out / "genius").pairs)]
        audit["pairs"] = audit_pairs(genius_pairs, answers, MODE)
        audit["pair_stats"] = pair_stats(genius_pairs, len(queries))
    audit["terms"] = audit.get("terms", {}) | {r["arm"]: r["terms"] for r in results if r["terms"]}
    audit_file.write_text(json.dumps(audit, indent=2))
    text = table(results, base, costs)
    (out / ("table.md" if args.arms == BASELINES else "table-variants.md")).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
