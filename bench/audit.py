"""The audit of a round's pairs and of its training steps, as markdown tables.

    python -m bench.audit --pairs runs/r1/pairs.jsonl --answers toy --steps runs/r1/train_steps.jsonl

Labels measure here and are never trained on. `--answers toy` takes each toy query's answer
from the query itself (the sum); `--answers FILE.jsonl` reads {id, answer} rows; `--mode`
is the answer reader (genius.data.answers: toy, reasoning_gym, last_number, regex:<pattern>).

Pairs (genius.evaluation.audit.audit_pairs): the share of pairs whose positive is right and
negative wrong, the reverse, both right, both wrong, and of the pairs that tell right from
wrong the share pointing the right way; overall, by timestamp k, same- vs cross-beam, and
inside vs outside ACO's calibration region (A_l > A_w: does it hold better negatives?).
Steps (term_summary): the gradient norms of the preference and SFT terms, logged when the
round trained with train_round(term_grad_norms=True), and each term's pull on the positive.
"""

from __future__ import annotations

import argparse

from genius.algorithm.records import PreferencePair
from genius.evaluation.audit import audit_pairs, term_summary
from genius.io import read_jsonl
from genius.toy.task import query_answer

COLUMNS = ("right_wrong", "wrong_right", "both_right", "both_wrong", "right_way", "positive_right", "negative_right")


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def num(x) -> str:
    return "–" if x is None else f"{x:.3g}"


def pairs_table(audit: dict) -> str:
    lines = [
        "| pairs | n | pos right, neg wrong | pos wrong, neg right | both right | both wrong | right way | positive right | negative right |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups = [("all", audit["overall"])]
    groups += [(f"k={k}", c) for k, c in audit["by_timestamp"].items()]
    groups += list(audit["by_beam"].items()) + list(audit["by_calibration"].items())
    for name, c in groups:
        lines.append(f"| {name} | {c['pairs']} | " + " | ".join(pct(c[k]) for k in COLUMNS) + " |")
    return "\n".join(lines)


def terms_table(summary: dict) -> str:
    lines = [
        "| step | grad norm, preference | grad norm, SFT | ratio | pull, preference | pull, SFT | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("first", "last", "mean"):
        s = summary[name]
        cells = [num(s["grad_norm_preference"]), num(s["grad_norm_sft"]), "–" if s["grad_ratio"] is None else f"{s['grad_ratio']:.1f}"]
        cells += [num(s["pull_preference"]), num(s["pull_sft"]), "–" if s["pull_ratio"] is None else f"{s['pull_ratio']:.1f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", help="a round's pairs.jsonl")
    parser.add_argument("--answers", default="toy", help="toy (the sum in each query) or a JSONL of {id, answer}")
    parser.add_argument("--mode", default="toy", help="the answer reader")
    parser.add_argument("--steps", help="a round's train_steps.jsonl")
    args = parser.parse_args()
    if args.pairs:
        pairs = [PreferencePair.from_json(r) for r in read_jsonl(args.pairs)]
        if args.answers == "toy":
            answers = {p.query_id: query_answer(p.query) for p in pairs}
        else:
            answers = {str(r["id"]): r["answer"] for r in read_jsonl(args.answers)}
        print(pairs_table(audit_pairs(pairs, answers, args.mode)) + "\n")
    if args.steps:
        summary = term_summary(list(read_jsonl(args.steps)))
        print(f"{summary['steps']} training steps\n\n" + terms_table(summary))


if __name__ == "__main__":
    main()
