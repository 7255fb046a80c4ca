"""The audit: do a round's pairs point the right way, and which term of the loss pulls harder?

Uses labels only to measure, never to train. Two questions, each a pure function:

- `audit_pairs`: for each preference pair, is the positive right, is the negative right
  (read as evaluation reads answers, genius.data.answers)? Shares of the four outcomes,
  overall, by timestamp k, same-beam vs cross-beam, and inside vs outside ACO's calibration
  region (A_l > A_w). A pair "points the right way" when its positive is right and its
  negative wrong; the wrong way is the reverse; both-right and both-wrong pairs say nothing
  about correctness. ACO trusts a negative more when A_l > A_w (it scales its push down by
  w < 1), so the region is worth it only if negatives there are right more often: P(negative
  right | A_l > A_w) against P(negative right | A_l <= A_w).
- `term_summary`: over a round's train_steps.jsonl, the preference term's and the SFT term's
  gradient norms (train_round(term_grad_norms=True)) and pulls on the positive,
  -dL/d log pi(T_w) (genius.training.objective), at the first step, the last, and on average.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from genius.algorithm.records import PreferencePair
from genius.data.answers import answer_reader, gold_answer

OUTCOMES = ("right_wrong", "wrong_right", "both_right", "both_wrong")  # (positive, negative)


def outcomes(pairs: Sequence[PreferencePair], answers: Mapping[str, object], mode: str) -> list[tuple[bool, bool]]:
    """(positive right, negative right) per pair; a query without an answer is a KeyError naming it."""
    read = answer_reader(mode)
    out = []
    for p in pairs:
        if p.query_id not in answers:
            raise KeyError(f"the audit needs the answer of every pair's query: none for {p.query_id!r}")
        gold = gold_answer(answers[p.query_id], mode)
        right = [gold is not None and read(text) == gold for text in (p.chosen, p.rejected)]
        out.append((right[0], right[1]))
    return out


def cell(results: Sequence[tuple[bool, bool]]) -> dict:
    """Shares of the four outcomes among `results`; right_way: of the pairs that tell right from wrong,
    the share that points the right way (None when none does); negative_right: P(negative right)."""
    n = len(results)
    counts = {
        "right_wrong": sum(w and not l for w, l in results),
        "wrong_right": sum(l and not w for w, l in results),
        "both_right": sum(w and l for w, l in results),
        "both_wrong": sum(not w and not l for w, l in results),
    }
    telling = counts["right_wrong"] + counts["wrong_right"]
    return {
        "pairs": n,
        **{k: v / n if n else None for k, v in counts.items()},
        "right_way": counts["right_wrong"] / telling if telling else None,
        "positive_right": sum(w for w, _ in results) / n if n else None,
        "negative_right": sum(l for _, l in results) / n if n else None,
    }


def audit_pairs(pairs: Sequence[PreferencePair], answers: Mapping[str, object], mode: str) -> dict:
    """The pair audit (module docstring): {"overall", "by_timestamp", "by_beam", "by_calibration"}, each of `cell`s."""
    results = outcomes(pairs, answers, mode)

    def split(key) -> dict:
        groups: dict = {}
        for p, r in zip(pairs, results):
            groups.setdefault(key(p), []).append(r)
        return {k: cell(v) for k, v in sorted(groups.items())}

    return {
        "overall": cell(results),
        "by_timestamp": split(lambda p: p.timestamp),
        "by_beam": split(lambda p: "same beam" if p.same_beam else "cross beam"),
        "by_calibration": split(lambda p: "A_l > A_w" if p.adv_rejected > p.adv_chosen else "A_l <= A_w"),
    }


TERMS = ("grad_norm_preference", "grad_norm_sft", "pull_preference", "pull_sft", "grad_norm", "loss")


def term_summary(rows: Sequence[dict]) -> dict:
    """First, last and mean of each term's numbers over training steps, and the preference/SFT ratios."""
    if not rows:
        return {}
    out = {}
    for name, row in (("first", rows[0]), ("last", rows[-1])):
        out[name] = {k: row.get(k) for k in TERMS}
    out["mean"] = {k: _mean([r[k] for r in rows if r.get(k) is not None]) for k in TERMS}
    for part in out.values():
        part["grad_ratio"] = _ratio(part["grad_norm_preference"], part["grad_norm_sft"])
        part["pull_ratio"] = _ratio(part["pull_preference"], part["pull_sft"])
    out["steps"] = len(rows)
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None
