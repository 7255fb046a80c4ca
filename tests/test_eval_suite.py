"""The paper's benchmark suite (eval/genius_reasoning, eval/genius_sanity) on local rows.

The suite downloads its data from the Hub, which tests cannot reach. `datasets.load_dataset`
is replaced by `local_load_dataset`, which serves a few rows in each dataset's real column
format from tests/data/eval/ for exactly the (path, name, data_files) each definition asks
for, and fails on anything else. Everything else is lm-eval as users run it: the shipped
YAMLs, lm-eval's built-in tasks they reference, prompts, filters, metrics, groups.

Two checks: an oracle model that answers from a script (right on two rows of three, in
each benchmark's own answer format) must score exactly 2/3 everywhere, which pins prompts,
answer extraction and targets; and a tiny transformers model must run every group end to
end through `genius.evaluation.harness` with both sampled and greedy decoding.
"""

import re
from pathlib import Path

import datasets
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from genius.config import EvalConfig, ModelConfig
from genius.evaluation.harness import evaluate
from genius.evaluation.tasks import make_task_manager, run_tasks

pytestmark = pytest.mark.e2e  # lm-eval task loading

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "eval"
SUITE = ["genius_reasoning", "genius_reasoning_greedy", "genius_sanity"]
BENCHMARKS = [
    "gsm8k_cot", "genius_math", "genius_reclor", "genius_logiqa", "genius_strategyqa", "gpqa_main_cot_zeroshot",
    "arc_challenge_chat",
]  # fmt: skip
MATH_SUBJECTS = [
    "algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory", "prealgebra",
    "precalculus",
]  # fmt: skip
MMLU_SUBJECTS = 57

# (Hub path, config name) -> ({split: fixture file}, data_files the definition must request).
# Every split the real dataset has is served, so a definition reading the wrong one fails.
HUB = {
    ("openai/gsm8k", "main"): ({"train": "gsm8k.jsonl", "test": "gsm8k.jsonl"}, None),
    **{
        ("EleutherAI/hendrycks_math", s): ({"train": "math_train.jsonl", "test": "math_test.jsonl"}, None)
        for s in MATH_SUBJECTS
    },
    ("Idavidrein/gpqa", "gpqa_main"): ({"train": "gpqa.jsonl"}, None),
    ("allenai/ai2_arc", "ARC-Challenge"): (dict.fromkeys(["train", "validation", "test"], "arc_challenge.jsonl"), None),
    ("EleutherAI/logiqa", "logiqa"): (dict.fromkeys(["train", "validation", "test"], "logiqa.jsonl"), None),
    ("tasksource/reclor", None): ({"validation": "reclor_val.json"}, {"validation": "val.json"}),
    ("tasksource/strategy-qa", None): ({"train": "strategyqa.json"}, {"train": "strategyQA_train.json"}),
    ("cais/mmlu", "*"): (dict.fromkeys(["test", "validation", "dev"], "mmlu.jsonl"), None),
}


HUB_LOAD = datasets.load_dataset


def local_load_dataset(path, name=None, data_files=None, **kwargs):
    """`datasets.load_dataset` for the suite's Hub datasets, from tests/data/eval/.

    The rows go through `datasets`' own json loader into its on-disk cache, as Hub data
    does: lm-eval re-runs process_docs on every access to a split, and GPQA's shuffles the
    options with an unseeded `random`, so prompt and target agree only because `datasets`
    serves the second `map` from the cache the first one wrote.
    """
    key = (path, "*") if path == "cais/mmlu" else (path, name)
    if key not in HUB:
        raise AssertionError(f"the suite asked for an unexpected dataset {path!r} (config {name!r})")
    splits, expected_files = HUB[key]
    assert data_files == expected_files, f"{path}: data_files {data_files!r}, expected {expected_files!r}"
    return HUB_LOAD("json", data_files={split: str(DATA / f) for split, f in splits.items()})


@pytest.fixture(scope="module")
def local_hub():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets, "load_dataset", local_load_dataset)
        yield


@pytest.fixture(scope="module")
def task_manager():
    return make_task_manager(REPO / "eval", SUITE, {})


# ---------------------------------------------------------------------------- oracle


def gpqa_answer(correct_text: str):
    """Name the letter the (shuffled) prompt gives `correct_text`, as "(X)"."""

    def respond(context: str) -> str:
        (letter,) = re.findall(rf"\(([A-D])\) {re.escape(correct_text)}\n", context)
        return f"Let's see. Both conditions hold, so the answer is ({letter})."

    return respond


# A phrase of each fixture question -> the scripted response: right, wrong, right per
# benchmark, in the answer format each benchmark's prompt asks for.
SCRIPT = {
    # gsm8k_cot, flexible-extract: the last number, "$" and a final "." ignored
    "A baker makes 12 muffins": "He bakes 12 * 3 = 36 muffins. The answer is 36.",
    "Mia has 40 stickers": "She has 40 - 15 = 24 stickers left. The answer is 24.",
    "A ticket costs $7": "6 * 7 = 42. The answer is $42.",
    # genius_math: the last \boxed{}, normalised as MATH's own is_equiv does (\frac34 = \frac{3}{4})
    "What is $2+3\\cdot 4$?": "First $3\\cdot 4=12$, then $2+12=\\boxed{14}$.",
    "Simplify $\\frac{6}{8}$.": "Dividing by 2 gives $\\boxed{\\frac34}$.",
    "Solve for $x$: $2x-5=9$.": "So $x=\\boxed{2}$.",
    # genius_reclor: labels 1, 0, 2 -> B, A, C
    "Sales of umbrellas rose": "Rain goes with sales. The answer is B.",
    "The museum is open only": "The answer is (C).",
    "Every successful startup": "No mentor, so not successful.\n**The answer is C**",
    # genius_logiqa: labels b, c, a
    "All members of the chess club": "Each member is a student, so the answer is B.",
    "If it rains, the match": "By modus tollens, the answer is: C.",
    "Every town on the river": "The answer is D.",
    # genius_strategyqa: no, yes, no
    "Could a penguin fly": "Penguins cannot fly. The answer is no.",
    "Would ice float": "Ice is less dense than water. The answer is Yes.",
    "Is the Moon larger": "The answer is yes.",
    # gpqa_main_cot_zeroshot, flexible-extract: the last "(X)"; choices are shuffled per run
    "conserved in a perfectly elastic": gpqa_answer("Kinetic energy"),
    "SI unit of inductance": gpqa_answer("Henry"),
    "mediates the electromagnetic force": gpqa_answer("Gluon"),
    # arc_challenge_chat: continues "The best answer is"; keys A, B, 3 (= C)
    "solar panel turn sunlight": " A",
    "pumps blood through": " B",
    "take in from the air": " D",
    # genius_sanity (MMLU, log-likelihood): the option the oracle prefers; answers 1, 0, 3
    "chemical symbol for sodium": "B",
    "closest to the Sun": "A",
    "sides does a hexagon": "A",
}


def scripted(context: str):
    """The script entry whose phrase occurs last in `context` (few-shot exemplars come first)."""
    found = [(context.rfind(phrase), phrase) for phrase in SCRIPT if phrase in context]
    assert found, f"no scripted question in the prompt: {context[-300:]!r}"
    return SCRIPT[max(found)[1]]


class OracleLM:
    """An lm-eval model that answers from SCRIPT instead of computing anything."""

    def __new__(cls):
        from lm_eval.api.model import LM

        class Oracle(LM):
            def generate_until(self, requests, disable_tqdm=False):
                out = []
                for r in requests:
                    response = scripted(r.args[0])
                    out.append(response(r.args[0]) if callable(response) else response)
                return out

            def loglikelihood(self, requests, disable_tqdm=False):
                pairs = [r.args for r in requests]  # (context, continuation " A")
                return [(0.0 if cont.strip() == scripted(ctx) else -5.0, False) for ctx, cont in pairs]

            def loglikelihood_rolling(self, requests, disable_tqdm=False):
                raise NotImplementedError

        return Oracle()


def test_suite_scores_exactly_what_the_script_gets_right(local_hub, task_manager):
    cfg = EvalConfig(tasks=SUITE)
    result = run_tasks(OracleLM(), cfg, task_manager, apply_chat_template=False)
    acc = result["accuracy"]
    for group in ("genius_reasoning", "genius_reasoning_greedy"):
        assert {k for k in acc if k.startswith(group + "/")} == {f"{group}/{b}" for b in BENCHMARKS}
        for b in BENCHMARKS:
            assert acc[f"{group}/{b}"] == pytest.approx(2 / 3), f"{group}/{b}"
        assert acc[group] == pytest.approx(2 / 3)  # the unweighted mean of the seven
        assert result["num_samples"][f"{group}/genius_math"] == 3 * len(MATH_SUBJECTS)
        assert result["num_samples"][group] == 6 * 3 + 3 * len(MATH_SUBJECTS)
    assert acc["genius_sanity/mmlu"] == pytest.approx(2 / 3)
    assert result["num_samples"]["genius_sanity/mmlu"] == 3 * MMLU_SUBJECTS
    assert all(0 < result["stderr"][k] < 1 for k in acc), "every score carries its standard error"
    # per-sample records follow the headline metric's filter
    reclor = result["samples"]["genius_reasoning/genius_reclor"]
    assert [r["correct"] for r in reclor] == [True, False, True]
    assert [r["answer"] for r in reclor] == ["B", "C", "C"] and [r["target"] for r in reclor] == ["B", "A", "C"]
    math = result["samples"]["genius_reasoning/genius_math_prealgebra"]
    assert [r["answer"] for r in math] == ["14", "\\frac{3}{4}", "2"]


def test_sampled_and_greedy_suites_follow_the_paper_protocol(local_hub, task_manager):
    """Appendix B.2: sampling at T=1.0 with vLLM's defaults (no top-k/top-p cut); 4-shot
    GSM8K, 8-shot MATH, zero-shot elsewhere. The greedy suite differs only in decoding."""
    shots = {"gsm8k_cot": 4, **{f"genius_math_{s}": 8 for s in MATH_SUBJECTS}}
    for group, sampled in (("genius_reasoning", True), ("genius_reasoning_greedy", False)):
        tasks = task_manager.load([group])["tasks"]
        assert len(tasks) == 6 + len(MATH_SUBJECTS)
        for name, task in tasks.items():
            assert (task.config.num_fewshot or 0) == shots.get(name, 0), name
            gen = task.config.generation_kwargs
            if sampled:
                assert (gen["do_sample"], gen["temperature"], gen["top_p"], gen["top_k"]) == (True, 1.0, 1.0, 0), name
            else:
                assert not gen.get("do_sample") and gen.get("temperature", 0.0) == 0.0, name


def tiny_model(root: Path) -> Path:
    """A random 1-layer Llama with the toy's character tokenizer: it runs every prompt, fast."""
    from genius.toy.tokenizer import build_tokenizer

    torch.manual_seed(0)
    tok = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=256, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(root)
    tok.save_pretrained(root)
    return root


def test_every_group_runs_end_to_end_with_a_transformers_model(local_hub, tmp_path):
    cfg = EvalConfig(tasks=SUITE, limit=1, max_gen_toks=4, batch_size=8, threads=1, diagnostics=False)
    result = evaluate(str(tiny_model(tmp_path / "model")), cfg, ModelConfig(device="cpu"), base_dir=REPO)
    for group in ("genius_reasoning", "genius_reasoning_greedy"):
        for b in BENCHMARKS:
            assert 0.0 <= result["accuracy"][f"{group}/{b}"] <= 1.0
        assert result["num_samples"][group] == 6 + len(MATH_SUBJECTS)  # limit=1 per task
        responses = [r["response"] for r in result["samples"][f"{group}/genius_reclor"]]
        assert len(responses) == 1 and len(responses[0]) <= 4  # max_gen_toks reached the model
    assert result["num_samples"]["genius_sanity"] == MMLU_SUBJECTS
