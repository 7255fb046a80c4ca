"""reasoning-gym datasets as query sources, held-out test sets, and their own scorer.

reasoning-gym (PyPI `reasoning-gym`) generates problems procedurally: no download, any
size, and a `score_answer` per dataset. One string names a set, wherever a path may go
(`queries.paths`, `eval.test_path`, `eval.diagnostics_path`):

    reasoning_gym:basic_arithmetic?size=2000&seed=1&min_terms=2&max_terms=3

`size` and `seed` are required (reasoning-gym draws a random seed otherwise, and a run
must repeat); every other option is a field of the dataset's config, its value parsed by
that field's type. A spec is parsed strictly: an unknown dataset, option or value is a
`SpecError` naming it.

Training sees queries only (`queries.py` takes `Problem.query`, never the answer). A test
set is the same kind of spec, minus every problem whose question is also in the pool:
reasoning-gym seeds item i with `Random(seed + i)`, so sets built with nearby seeds share
problems, and short problems recur by chance even across distant seeds (measured on
basic_arithmetic, 2-3 terms: 2% of 1,000 problems with seed 100000 were in a pool of
2,000 with seed 1).

Prompt and answer. Queries and test problems are the same text: the question, then one line
asking for steps and the answer as `Answer: <answer>` on the last line. `extract_answer`
(genius.data.answers.reasoning_gym_answer, where every task's reader lives) reads the text after the last such marker (SmolLM2 writes one in ~80% of its greedy
responses, often as "the answer is: ..."), else the response's last number. The score is
reasoning-gym's own `score_answer` on that string; a problem counts as solved when it scores 1.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Literal

from genius.data.answers import reasoning_gym_answer as extract_answer  # noqa: F401 (read here by the genius_rg tasks)

PREFIX = "reasoning_gym:"
# Steps, then a marked answer: Genius samples a response line by line, so it needs lines to choose
# between. SmolLM2, 64 held-out problems, greedy: 3 right and 93 tokens a response with the first
# sentence; 1 right and 19 tokens (one line, mostly) with only the second.
INSTRUCTION = "Work it out step by step, then give the final answer on the last line, as: Answer: <answer>"


class SpecError(ValueError):
    """A `reasoning_gym:` spec that names no dataset, or a bad option or value."""


@dataclass(frozen=True)
class Spec:
    name: str
    size: int
    seed: int
    options: tuple[tuple[str, Any], ...] = ()  # (field, value), in the spec's order; lists as tuples

    def __str__(self) -> str:
        def text(v):
            return ",".join(map(text, v)) if isinstance(v, tuple) else str(v).lower() if isinstance(v, bool) else str(v)

        query = "&".join(f"{k}={text(v)}" for k, v in (("size", self.size), ("seed", self.seed), *self.options))
        return f"{PREFIX}{self.name}?{query}"


@dataclass(frozen=True)
class Problem:
    id: str  # rg:<name>:<seed>:<index>, stable for a spec
    index: int  # the item's index in the spec's dataset: what `score` regenerates it from
    query: str  # the prompt: question + INSTRUCTION
    question: str  # reasoning-gym's question
    answer: str  # reasoning-gym's answer: for test sets only, never in a query pool


def is_spec(entry: str) -> bool:
    return entry.startswith(PREFIX)


# ---------------------------------------------------------------------------- specs


def parse_spec(entry: str) -> Spec:
    """`reasoning_gym:<name>?size=N&seed=S&<option>=<value>...` -> Spec, checked against reasoning-gym."""
    if not is_spec(entry):
        raise SpecError(f"expected {PREFIX}<dataset>?size=N&seed=S[&option=value...], got {entry!r}")
    import reasoning_gym.factory

    name, _, query = entry[len(PREFIX) :].partition("?")
    if name not in reasoning_gym.factory.DATASETS:
        close = [n for n in sorted(reasoning_gym.factory.DATASETS) if n.startswith(name[:4])][:5]
        raise SpecError(f"no reasoning-gym dataset {name!r}" + (f" (similar: {', '.join(close)})" if close else ""))
    config_cls = reasoning_gym.factory.DATASETS[name][1]
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # an annotation that does not resolve: values then parse as numbers or text
        hints = {}
    fields = [f.name for f in dataclasses.fields(config_cls)]
    values: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SpecError(f"option {item!r}: expected key=value")
        if key in values:
            raise SpecError(f"option {key!r} given twice")
        if key not in fields:
            raise SpecError(f"{name} has no option {key!r}; options: {', '.join(fields)}")
        values[key] = _parse_value(raw, hints.get(key, Any), key)
    for key in ("size", "seed"):
        if not isinstance(values.get(key), int):
            raise SpecError(f"{key}=<integer> is required (a run must repeat: reasoning-gym picks a random seed otherwise)")
    if values["size"] < 1:
        raise SpecError(f"size must be >= 1, got {values['size']}")
    size, seed = values.pop("size"), values.pop("seed")
    spec = Spec(name, size, seed, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in values.items()))
    try:  # reasoning-gym's own checks (e.g. max_terms >= min_terms) run when the dataset is built
        dataset(spec)
    except Exception as e:  # its configs assert, or raise ValueError/TypeError: one message either way
        raise SpecError(f"{name}: {type(e).__name__}: {e}") from None
    return spec


def _parse_value(raw: str, hint, key: str):
    """The option's text as its config field's type: int, float, bool, str, a Literal, a list (comma-separated)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("none", "null"):
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse_value(raw, inner[0] if len(inner) == 1 else Any, key)
    if origin is Literal:
        if raw not in args:
            raise SpecError(f"option {key}: must be one of {', '.join(map(str, args))}, got {raw!r}")
        return raw
    if origin in (list, tuple):
        return [_parse_value(part, args[0] if args else Any, key) for part in raw.split(",")]
    if hint is bool:
        if raw.lower() not in ("true", "false"):
            raise SpecError(f"option {key}: expected true or false, got {raw!r}")
        return raw.lower() == "true"
    if hint in (int, float) or hint is Any:
        for kind in {int: (int,), float: (float,)}.get(hint, (int, float)):
            try:
                return kind(raw)
            except ValueError:
                pass
        if hint is not Any:
            raise SpecError(f"option {key}: expected {'an integer' if hint is int else 'a number'}, got {raw!r}")
    return raw


@functools.lru_cache(maxsize=16)
def dataset(spec: Spec):
    """The spec's reasoning-gym dataset; items are generated on access, so this is cheap."""
    import reasoning_gym

    options = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.options}
    return reasoning_gym.create_dataset(spec.name, size=spec.size, seed=spec.seed, **options)


# ---------------------------------------------------------------------------- problems


def prompt(question: str) -> str:
    return f"{question}\n{INSTRUCTION}"


def problems(spec: Spec) -> list[Problem]:
    """Every item of the spec's dataset, in index order."""
    data = dataset(spec)
    return [
        Problem(f"rg:{spec.name}:{spec.seed}:{i}", i, prompt(e["question"]), e["question"], str(e["answer"]))
        for i, e in enumerate(data)
    ]


def question_key(question: str) -> str:
    """What makes two questions the same problem: the text with whitespace runs collapsed, case folded."""
    return " ".join(question.split()).casefold()


def held_out(spec: Spec, pool: Iterable[Spec]) -> tuple[list[Problem], int]:
    """(the spec's problems whose question is in none of the pool's specs and not repeated, how many were left out).

    Only reasoning-gym sources of the pool are compared: a file source is text whose origin
    is unknown here.
    """
    seen = {question_key(p.question) for s in pool for p in problems(s)}
    kept = []
    for p in problems(spec):
        key = question_key(p.question)
        if key not in seen:
            seen.add(key)
            kept.append(p)
    return kept, spec.size - len(kept)


def held_out_from(entry: str, pool_entries: Iterable[str]) -> tuple[Spec, list[Problem], int]:
    """`held_out` from spec strings: the test spec and the entries of queries.paths (non-specs skipped)."""
    spec = parse_spec(entry)
    pool = [parse_spec(e) for e in pool_entries if is_spec(e)]
    return (spec, *held_out(spec, pool))


# ---------------------------------------------------------------------------- answers


def score(spec: Spec, index: int, answer: str | None) -> float:
    """reasoning-gym's own score of `answer` for item `index` of the spec's dataset, in [0, 1]."""
    data = dataset(spec)
    return float(data.score_answer(answer=answer, entry=data[index]))


def is_correct(response: str, spec: Spec, index: int) -> bool:
    """Whether the response's extracted answer scores 1 (reasoning-gym gives partial credit below)."""
    return score(spec, index, extract_answer(response)) >= 1.0
