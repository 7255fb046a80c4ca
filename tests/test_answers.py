"""genius.data.answers: every task's answer reader in one place, and the three old call sites reading through it."""

import pytest

from genius.data import answers, reasoning_gym
from genius.evaluation.diagnostics import is_right
from genius.toy import task


@pytest.mark.parametrize(
    "response, mode, answer",
    [
        ("3+4=7\nA:7", "toy", "7"),
        ("A:12\nA:059", "toy", "59"),  # the last A:, leading zeros dropped
        ("5+5=10\n", "toy", None),
        ("so 1,000 apples, i.e. 2.50 each", "last_number", "2.5"),
        ("no number", "last_number", None),
        ("Answer: 1\nwait, no.\nAnswer: -1,130.", "reasoning_gym", "-1130"),
        ("First 4 + 5 = 9, then 9 * 2 = 18.", "reasoning_gym", "18"),
        ("so #### 42\nand #### 43 ", "regex:####\\s*(\\S+)", "43"),  # a user's format: the last match's group
        ("no marker here", "regex:####\\s*(\\S+)", None),
    ],
)
def test_read_answer(response, mode, answer):
    assert answers.read_answer(response, mode) == answer


def test_the_old_names_read_through_the_one_module():
    assert task.extract_answer("1+2=3\nA:3\nA:4") == 4 == answers.toy_answer("1+2=3\nA:3\nA:4")
    assert reasoning_gym.extract_answer is answers.reasoning_gym_answer
    assert is_right("x\nA:007", "7", "toy") and not is_right("x", "7", "toy")
    assert is_right("Answer: 1,000", "1000", "reasoning_gym")
    assert is_right("#### 42", "42", "regex:####\\s*(\\d+)")


def test_gold_answers_are_written_as_responses_are_read():
    assert answers.gold_answer(59, "toy") == "59" and answers.gold_answer("059", "toy") == "59"
    assert answers.gold_answer("1,000", "last_number") == "1000"
    assert answers.gold_answer(" 42 ", "regex:(\\d+)") == "42"


@pytest.mark.parametrize(
    "mode, message",
    [("regex:([0-9]", "not a regular expression"), ("regex:\\d+", "needs a group"), ("boxed", "must be one of toy")],
)
def test_bad_readers_are_refused_by_name(mode, message):
    with pytest.raises(ValueError, match=message):
        answers.answer_reader(mode)


def test_query_answer_is_the_sum():
    assert task.query_answer("35+16+8") == 59
