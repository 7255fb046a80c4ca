"""bench/round_profile.py on a seconds-scale toy: one real round, every stage timed against its ceiling."""

import re

import pytest

from tests.conftest import tiny_params

pytestmark = pytest.mark.e2e  # a whole round, lm-eval included: ~1 min on 2 busy cores

STAGES = ["ingest", "sampling", "pairs", "reference log-probs", "training", "lm-eval greedy", "lm-eval sampled", "diagnostics"]
MODEL_STAGES = STAGES[1:2] + STAGES[3:]  # the stages that run a model have a ceiling and a ratio


def test_every_stage_is_printed_with_its_ceiling_and_ratio(project, capsys):
    from bench.round_profile import main
    from genius.config import load_params
    from genius.stages.rounds import run_toy

    tiny_params(project / "params.yaml", ["eval.diagnostics_problems=4", "eval.diagnostics_samples=2", "eval.limit=8"])
    run_toy(load_params("params.yaml"), log=lambda _: None)
    assert main(["--model", "runs/toy/model", "--params", "params.yaml", "--queries", "6"]) == 0

    out = capsys.readouterr().out
    print(out[out.rindex("\n\n", 0, out.index("| stage |")) :])  # the table, for a reader of -s
    table = out[out.index("| stage |") :]
    rows = {line.split(" | ")[0].strip("| "): line.strip("| ").split(" | ") for line in table.splitlines() if line.startswith("| ")}
    for stage in STAGES:
        found = [name for name in rows if name.startswith(stage)]
        assert len(found) == 1, (stage, list(rows))
        _, seconds, tokens, rate, ceiling, ratio, steps, ceiling_steps = rows[found[0]]
        assert float(seconds) >= 0
        if stage in ("sampling", "diagnostics"):  # engine steps: at least one per token of a response
            assert int(steps.replace(",", "")) > 0 and int(ceiling_steps.replace(",", "")) > 0, rows[found[0]]
        elif stage.startswith("lm-eval"):  # lm-eval counts no steps; its ceiling does
            assert steps == "-" and int(ceiling_steps.replace(",", "")) > 0, rows[found[0]]
        else:
            assert steps == ceiling_steps == "-"
        if stage in MODEL_STAGES:  # the toy answers, so every model stage produced tokens
            assert int(tokens.replace(",", "")) > 0 and float(ceiling.replace(",", "")) > 0, rows[found[0]]
            # the ratio of the unrounded rates, printed to 2 decimals; the rates are printed to 1
            r, c = float(rate.replace(",", "")), float(ceiling.replace(",", ""))
            assert (r - 0.05) / (c + 0.05) - 0.005 <= float(ratio) <= (r + 0.05) / (c - 0.05) + 0.005, rows[found[0]]
        else:
            assert tokens == ceiling == ratio == "-"
    assert re.search(r"load average before \d+\.\d+, after \d+\.\d+", out)
    assert "6 queries" in out and "8 test problems" in out and "probe 4 x 2" in out
