"""Positive controls that USE LABELS: they say whether training can show a gain at all.

Every other method here is label-free. These two read the gold answer of each query, so
they are never a default and never a result: they bound what the label-free methods could
reach with the same samples and the same trainer. Each refuses to run, naming how many
queries lack an answer, unless every query it is given has one.

- `oracle_pairs`: Genius's own candidates (a round's samples.jsonl), re-paired with labels:
  at each timestamp, a right trajectory (beam prefix + step + rollout) as the positive and a
  wrong one as the negative, from the same beam where possible. It isolates the pairing:
  same search, same candidates, perfect choices.
- `rft_targets`: rejection-sampling fine-tuning (Yuan et al., arXiv 2308.01825; STaR's
  filter, Zelikman et al. 2022): SFT on the sampled responses that are right. It is LMSI
  with the gold answer in place of the majority (genius.algorithm.lmsi), on the same samples.

Right and wrong are read by one of genius.data.answers' readers, the one evaluation uses.
`build_oracle_pairs` and `build_rft` are their rows of the stage table: the gold answers come
from `method.answers_path` (`tools.answers()`, which refuses when there are none).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from genius.algorithm.foresight import advantage
from genius.algorithm.pairs import pair_stats, target_stats
from genius.algorithm.records import PreferencePair, ResponseGroup, SampleRecord, SftTarget
from genius.data.answers import answer_reader, gold_answer


class MissingAnswers(ValueError):
    """A label-using control was given queries without a gold answer."""


def require_answers(query_ids: Sequence[str], answers: Mapping[str, object], control: str) -> None:
    """Refuse, naming the count and a first example, unless every query id has an answer."""
    missing = [q for q in query_ids if answers.get(q) is None]
    if missing:
        raise MissingAnswers(
            f"{control} is a positive control that uses labels: {len(missing)} of {len(query_ids)} queries have no "
            f"answer (first: {missing[0]!r}); it runs only on a query source that carries answers"
        )


def oracle_pairs(records: Sequence[SampleRecord], answers: Mapping[str, object], mode: str) -> list[PreferencePair]:
    """Per timestamp of each record, the top-scored right trajectory against the top-scored wrong one.

    The negative comes from the positive's beam when that beam has a wrong candidate, else
    from any beam. Advantages are Genius's own, A = f - Q_{k-1}(beam). A trajectory counts
    as complete when it gives an answer: samples.jsonl keeps no finish reason per candidate,
    and a response that reached its answer line has ended (on the toy the model stops there).
    """
    require_answers([r.query_id for r in records], answers, "oracle_pairs")
    read = answer_reader(mode)
    pairs = []
    for record in records:
        gold = gold_answer(answers[record.query_id], mode)
        for t in record.timestamps:
            beams = t["beams"]
            texts = [beams[c["beam"]]["prefix"] + c["step"] + c["rollout"] for c in t["candidates"]]
            given = [read(text) for text in texts]
            order = sorted(range(len(texts)), key=lambda i: -t["candidates"][i]["score"])  # stable: first of equals
            right = [i for i in order if _right(given[i], gold)]
            wrong = [i for i in order if not _right(given[i], gold)]
            if not right or not wrong:
                continue
            w = right[0]
            same = [i for i in wrong if t["candidates"][i]["beam"] == t["candidates"][w]["beam"]]
            l = (same or wrong)[0]
            cw, cl = t["candidates"][w], t["candidates"][l]
            pairs.append(
                PreferencePair(
                    query_id=record.query_id,
                    query=record.query,
                    timestamp=t["k"],
                    chosen=texts[w],
                    rejected=texts[l],
                    chosen_complete=True,
                    rejected_complete=given[l] is not None,
                    score_chosen=cw["score"],
                    score_rejected=cl["score"],
                    adv_chosen=advantage(cw["score"], beams[cw["beam"]]["value"]),
                    adv_rejected=advantage(cl["score"], beams[cl["beam"]]["value"]),
                    same_beam=cw["beam"] == cl["beam"],
                )
            )
    return pairs


def rft_targets(groups: Sequence[ResponseGroup], answers: Mapping[str, object], mode: str) -> list[SftTarget]:
    """Every sampled response whose answer is the gold one (duplicates kept, as LMSI keeps them)."""
    require_answers([g.query_id for g in groups], answers, "rft")
    read = answer_reader(mode)
    targets = []
    for g in groups:
        gold = gold_answer(answers[g.query_id], mode)
        right = [r for r in g.responses if _right(read(r.text), gold)]
        targets += [SftTarget(g.query_id, g.query, r.text, r.complete, 1.0) for r in right]
    return targets


def _right(given: str | None, gold: str | None) -> bool:
    return given is not None and given == gold


def build_oracle_pairs(records: list[SampleRecord], params, tools) -> tuple[list[PreferencePair], dict]:
    """The round's oracle pairs from its foresight samples (USES LABELS)."""
    pairs = oracle_pairs(records, tools.answers(), params.method.answer)
    return pairs, pair_stats(pairs, len(records)) | {"uses_labels": True}


def build_rft(groups: list[ResponseGroup], params, tools) -> tuple[list[SftTarget], dict]:
    """The round's RFT targets from its response groups (USES LABELS)."""
    targets = rft_targets(groups, tools.answers(), params.method.answer)
    return targets, target_stats(targets, len(groups)) | {"uses_labels": True}
