"""What a method's pairs builder may ask of its round, each made on first use.

A method's `build(samples, params, tools)` (its row of the stage table's ROUNDS) is a function
of its samples, but a few methods need more: the voting methods read answers
(`read`, the reader `method.answer` names: genius.data.answers), the label-using controls
the gold answers (`answers`), self-certainty the round's policy as a model to teacher-force
(`model`), self-rewarding the same policy as a generation engine to judge with (`engine`).
Nothing is loaded unless the builder asks: Genius's pairs stage loads no model.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from genius.config import ConfigError, Params
from genius.data.answers import Reader, answer_reader
from genius.io import read_jsonl


class Tools:
    def __init__(self, params: Params, policy: str):
        self.params, self.policy = params, policy

    @cached_property
    def read(self) -> Reader:
        """A response -> its final answer (normalised) or None, as `method.answer` reads it."""
        return answer_reader(self.params.method.answer)

    def answers(self) -> dict[str, object]:
        """Query id -> gold answer from `method.answers_path` (a JSONL of {id, answer}): the controls' labels."""
        path = self.params.method.answers_path
        if path is None:
            raise ConfigError(
                f"method.answers_path: null, but method.name {self.params.method.name} is a positive control that "
                "uses labels: point it at a JSONL of {id, answer} for the query pool"
            )
        if not Path(path).exists():
            raise FileNotFoundError(f"method.answers_path: {path} does not exist (the toy writes answers.jsonl beside its pool)")
        return {str(row["id"]): row.get("answer") for row in read_jsonl(path)}

    def model(self):
        """(model, tokenizer): the round's policy, for a teacher-forced pass."""
        return self._model

    def engine(self):
        """(engine, tokenizer): the round's policy as `sampling.engine` serves it."""
        return self._engine

    @cached_property
    def _model(self):
        from genius.engines.loading import load_model

        m = self.params.model
        return load_model(self.policy, m.dtype, m.device, m.trust_remote_code)

    @cached_property
    def _engine(self):
        from genius.engines import build_engine

        return build_engine(self.policy, self.params.sampling, self.params.model)
