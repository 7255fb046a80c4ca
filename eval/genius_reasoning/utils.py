"""Python hooks for the genius_reasoning tasks that lm-eval has no built-in for.

MATH: lm-eval's own `minerva_math` needs antlr4 4.11, which cannot live beside DVC (hydra
pins antlr4 4.9), so `genius_math` grades like `hendrycks_math` does: the string
normalisation of the MATH authors (`strip_string`), applied to the last `\\boxed{}` of a
worked solution. ReClor, LogiQA and StrategyQA: zero-shot chain-of-thought prompts that end
in a fixed answer phrase, read back by the regex filters in the YAMLs.
"""

from __future__ import annotations

from lm_eval.tasks.hendrycks_math.utils import last_boxed_only_string, remove_boxed, strip_string

INVALID = "[invalid]"
LETTERS = "ABCD"
COT_MC = 'Think step by step, then end your response with "The answer is X", where X is one of A, B, C or D.'
COT_YES_NO = 'Think step by step, then end your response with "The answer is yes" or "The answer is no".'


# ---------------------------------------------------------------------------- MATH


def boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\boxed x) in `text`, or None."""
    try:
        box = last_boxed_only_string(text)
        return remove_boxed(box) if box else None
    except (AssertionError, IndexError):  # \fbox{..} or an unclosed brace: no readable answer
        return None


def normalize_math(answer: str) -> str:
    """The MATH authors' normalisation (hendrycks_math.is_equiv compares exactly these strings)."""
    try:
        return strip_string(answer)
    except Exception:  # strip_string raises on some malformed LaTeX; is_equiv then compares raw
        return answer


def math_process_docs(dataset):
    """Add `answer`: the normalised content of the last \\boxed{} of the gold solution."""
    return dataset.map(lambda doc: {"answer": normalize_math(boxed(doc["solution"]) or "")})


def math_boxed_filter(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval `custom` filter: each response -> its normalised last boxed answer."""
    return [[normalize_math(a) if (a := boxed(r)) is not None else INVALID for r in rs] for rs in resps]


# ---------------------------------------------------------------------------- multiple choice


def _mc_prompt(context: str, question: str, options: list[str]) -> str:
    lines = [f"Passage: {context.strip()}", f"Question: {question.strip()}"]
    lines += [f"{letter}. {option.strip()}" for letter, option in zip(LETTERS, options)]
    return "\n".join(lines) + "\n" + COT_MC


def reclor_doc_to_text(doc: dict) -> str:
    return _mc_prompt(doc["context"], doc["question"], doc["answers"])


def reclor_doc_to_target(doc: dict) -> str:
    return LETTERS[int(doc["label"])]  # the released JSON has an int 0-3; some copies a string


def logiqa_doc_to_text(doc: dict) -> str:
    return _mc_prompt(doc["context"], doc["question"], doc["options"])


def logiqa_doc_to_target(doc: dict) -> str:
    return doc["label"].strip().upper()  # EleutherAI/logiqa labels are "a".."d"


# ---------------------------------------------------------------------------- StrategyQA


def strategyqa_doc_to_text(doc: dict) -> str:
    return f"Question: {doc['question'].strip()}\n{COT_YES_NO}"


def strategyqa_doc_to_target(doc: dict) -> str:
    return "yes" if doc["answer"] else "no"
