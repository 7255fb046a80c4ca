"""Reading a final answer out of a response: one place, one reader per task.

Evaluation, the signal diagnostics, the voting methods (self-consistency, LMSI) and the
label-using controls all need "what answer does this response give"; they must read it the
same way, or a method would vote on one answer while the scorer checks another. The readers:

- `toy`: the number after the last `A:` (the embedded task's format, genius.toy.task),
  leading zeros dropped ("A:059" -> "59"), as the lm-eval task genius_toy reads it.
- `reasoning_gym`: the text after the last `Answer:` marker, else the last number
  (genius.data.reasoning_gym's prompt asks for that line; the genius_rg tasks read it so).
- `last_number`: the last number anywhere, written plainly ("1,000" -> "1000", "2.50" -> "2.5").
- `regex:<pattern>`: a user's own format: the first group of the pattern's last match
  (`regex:####\\s*(\\S+)` reads GSM8K's "#### 42"). A pattern without a group, or one that
  does not compile, is refused when the reader is made, naming it.

Every reader returns a normalised string, or None when the response gives no answer.
"""

from __future__ import annotations

import re
from typing import Callable

TOY_ANSWER_RE = re.compile(r"A:(\d+)")
NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
MARKER_RE = re.compile(r"\banswer(?:\s*[:=]|\s+is\b:?)", re.IGNORECASE)  # Answer: / answer = / the answer is
READERS = ("toy", "reasoning_gym", "last_number", "regex:<pattern>")

Reader = Callable[[str], "str | None"]


def toy_answer(response: str) -> int | None:
    """The integer after the last `A:` in a response, or None."""
    found = TOY_ANSWER_RE.findall(response)
    return int(found[-1]) if found else None


def last_number(response: str) -> str | None:
    """The last number in the response, thousands separators dropped, `2.50` as `2.5`; None: no number."""
    found = NUMBER_RE.findall(response)
    if not found:
        return None
    value = float(found[-1].replace(",", ""))
    return str(int(value)) if value.is_integer() else repr(value)


def reasoning_gym_answer(response: str) -> str | None:
    """The rest of the line after the last `Answer:`, else the response's last number.

    Also accepted as the marker: `answer is`, `answer =`, any case. The marked text loses
    markdown (`**`, `$`, `\\boxed{}`) and a final period; "5 - 3 = 2" keeps what follows the
    last `=`. A number is written plainly: "1,000" -> "1000", "2.0" -> "2". None: no marker
    and no number.
    """
    markers = list(MARKER_RE.finditer(response))
    if markers:
        text = response[markers[-1].end() :].strip().split("\n")[0]
        text = re.sub(r"\\boxed\{(.*)\}", r"\1", text).replace("**", "").replace("$", "").strip().rstrip(".").strip()
        text = text.rpartition("=")[2].strip()
        if text:
            return plain_number(text)
    numbers = NUMBER_RE.findall(response)
    return plain_number(numbers[-1]) if numbers else None


def plain_number(text: str) -> str:
    """A number as plain digits ("1,000" -> "1000", "2.0" -> "2"); any other text unchanged."""
    if not NUMBER_RE.fullmatch(text):
        return text
    text = text.replace(",", "")
    if "." not in text:
        return str(int(text))  # int, not float: exact for any number of digits
    value = float(text)
    return str(int(value)) if value.is_integer() else repr(value)


def regex_reader(pattern: str) -> Reader:
    """A reader returning the first group of `pattern`'s last match in a response (stripped), or None."""
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"answer reader regex:{pattern}: not a regular expression ({e})") from None
    if compiled.groups < 1:
        raise ValueError(f"answer reader regex:{pattern}: needs a group, (...), around the answer")

    def read(response: str) -> str | None:
        matches = list(compiled.finditer(response))
        return matches[-1].group(1).strip() if matches else None

    return read


def _toy(response: str) -> str | None:
    answer = toy_answer(response)
    return None if answer is None else str(answer)


def answer_reader(mode: str) -> Reader:
    """The reader named `mode` (one of READERS); a ValueError naming the choices otherwise."""
    if mode.startswith("regex:"):
        return regex_reader(mode[len("regex:") :])
    readers = {"toy": _toy, "reasoning_gym": reasoning_gym_answer, "last_number": last_number}
    if mode not in readers:
        raise ValueError(f"answer reader must be one of {', '.join(READERS)}, got {mode!r}")
    return readers[mode]


def read_answer(response: str, mode: str) -> str | None:
    """The answer `response` gives as the reader `mode` reads it (see the module docstring)."""
    return answer_reader(mode)(response)


def gold_answer(answer: object, mode: str) -> str | None:
    """A gold answer written the way `mode` writes a response's answer, so the two compare as strings."""
    if mode == "toy":
        return read_answer(f"A:{answer}", mode)
    if mode.startswith("regex:"):
        return str(answer).strip()
    return read_answer(str(answer), mode)
