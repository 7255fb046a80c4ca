"""`genius report` over hand-written metrics.json files: tables, CSV and plot."""

import csv
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from genius.stages.cli import main
from genius.stages.report import write_report

ROOT = Path(__file__).resolve().parents[1]


def metrics(r: int, gsm8k: float, math: float, diagnostics: dict | None = None) -> dict:
    """A round's metrics.json as genius.stages.rounds writes it after evaluating genius_reasoning."""
    accuracy = {
        "genius_reasoning": (gsm8k + math) / 2,
        "genius_reasoning/gsm8k_cot": gsm8k,
        "genius_reasoning/genius_math": math,
    }
    out = {
        "round": r,
        "model": f"runs/r{r}/checkpoint",
        "accuracy": accuracy,
        "stderr": {k: 0.01 for k in accuracy},
        "num_samples": {k: 100 for k in accuracy},
        "seconds": 12.0,
    }
    if r > 0:
        out |= {"sampling": {"queries": 1000}, "pairs": {"pairs": 2800}, "seconds_total": 95.0}
    if diagnostics:
        out["diagnostics"] = {"problems": 64, "samples_per_problem": 8} | diagnostics
    return out


SIGNAL = {
    "response_auroc": 0.9, "step_auroc": 0.78, "best_of_n": 0.5, "random_sample": 0.3, "greedy": 0.45,
    "pass_at_n": 0.75, "headroom": 0.05, "step_top_correct": 0.6, "step_mean_correct": 0.4,
}  # fmt: skip


def write_runs(root: Path, rounds: list[dict]) -> Path:
    for m in rounds:
        folder = root / ("base" if m["round"] == 0 else f"r{m['round']}")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(m))
    return root


def test_report_tables_csv_and_plot(tmp_path):
    rounds = [metrics(0, 0.70, 0.30, SIGNAL), metrics(1, 0.74, 0.31, SIGNAL)]
    runs = write_runs(tmp_path, rounds + [metrics(2, 0.78, 0.35, SIGNAL | {"step_auroc": None})])
    summary = write_report(runs, num_rounds=2)

    # the round table: headline (group) accuracy only, one row per round
    lines = summary.splitlines()
    assert lines[0] == "| round | method | queries | training data | data tokens | genius_reasoning | wall s |"
    assert lines[2] == "| base | - | - | - | - | 50.0% | 12 |"
    assert lines[4] == "| 2 | - | 1000 | 2800 pairs | - | 56.5% | 95 |"

    report = (runs / "report.md").read_text()
    assert report.split("\n\n")[1] == summary  # the flow publishes the second paragraph as its summary
    # benchmarks as rows, rounds as columns, and the change from the base in points
    assert "| benchmark | base | r1 | r2 | r2 - base |" in report
    assert "| genius_reasoning/gsm8k_cot | 70.0% ± 1.0% | 74.0% ± 1.0% | 78.0% ± 1.0% | +8.0 pt |" in report
    assert "| genius_reasoning/genius_math | 30.0% ± 1.0% | 31.0% ± 1.0% | 35.0% ± 1.0% | +5.0 pt |" in report
    # the self-reward signal per round; a missing AUROC shows as "-"
    assert "| base | 64 x 8 | 0.90 | 0.78 | 50.0% | 30.0% | 45.0% | 75.0% | +5.0% | 60.0% | 40.0% |" in report
    assert "| r2 | 64 x 8 | 0.90 | - | 50.0% |" in report

    with open(runs / "accuracy.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["round", "genius_reasoning", "genius_reasoning/gsm8k_cot", "genius_reasoning/genius_math"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"] and float(rows[3][2]) == 0.78

    png = Image.open(runs / "accuracy.png")
    assert png.format == "PNG" and png.size == (1200, 432)  # two panels: accuracy, and the signal


def test_report_names_the_method_and_marks_a_control(tmp_path):
    """A round's method and what its training data cost show in the round table; a control that
    uses labels is marked in the table and under it."""
    rft = metrics(1, 0.6, 0.2) | {"method": {"name": "rft", "uses_labels": True}, "pairs": {"targets": 40},
                                  "cost": {"data_tokens": 12345}}  # fmt: skip
    summary = write_report(write_runs(tmp_path, [metrics(0, 0.5, 0.2), rft]), num_rounds=1)
    assert "| 1 | rft (control: USES LABELS) | 1000 | 40 targets | 12,345 | 40.0% | 95 |" in summary
    assert "**rft: a positive control that USES LABELS**" in (tmp_path / "report.md").read_text()


def test_an_online_round_shows_its_steps_queries_and_what_it_watched(tmp_path):
    """A GRPO round has no sampling or pairs statistics: its queries and steps come from training, and
    the report's online table gives first -> last step of what a user watches."""
    watched = {"reward": (0.28, 0.99), "majority_agreement": (0.28, 0.99), "majority_correct": (0.09, 0.0),
               "entropy": (0.429, 0.209), "response_length": (25.5, 4.25), "kl": (0.0, 2.259)}  # fmt: skip
    training = {"reward": "majority_vote", "queries": 512, "steps": 64}
    training |= {f"{k}_{w}": v for k, (first, last) in watched.items() for w, v in (("first", first), ("last", last))}
    ttrl = metrics(1, 0.6, 0.2) | {"method": {"name": "ttrl", "uses_labels": False, "reward": "majority_vote"},
                                   "training": training, "cost": {"data_tokens": 108000}}  # fmt: skip
    del ttrl["sampling"], ttrl["pairs"]  # the online round has neither stage
    summary = write_report(write_runs(tmp_path, [metrics(0, 0.5, 0.2), ttrl]), num_rounds=1)
    assert "| 1 | ttrl | 512 | online, 64 steps | 108,000 | 40.0% | 95 |" in summary
    report = (tmp_path / "report.md").read_text()
    assert "| round | reward | mean reward | majority agreement | majority right | token entropy | response length | KL | rollout tokens |" in report
    assert "| r1 | majority_vote | 0.28 -> 0.99 | 0.28 -> 0.99 | 0.09 -> 0 | 0.429 -> 0.209 | 25.5 -> 4.25 | 0 -> 2.26 | 108,000 |" in report


def test_online_round_cost_counts_its_rollouts_as_data():
    """GRPO samples inside its train stage: generated 900 + prefilled 100 tokens in 3 s of generation are the
    round's data; the update's 1,500 tokens and the stage's other 7 s of 10 its training."""
    from genius.stages.rounds import round_cost

    training = {"generated_tokens": 900, "prefill_tokens": 100, "generation_seconds": 3.0, "tokens": 1500, "seconds": 10.0}
    assert round_cost({"training": training}) == {"data_tokens": 1000, "data_seconds": 3.0, "train_tokens": 1500, "train_seconds": 7.0}
    offline = {"sampling": {"generated_tokens": 50, "prefill_tokens": 5, "seconds": 2.0}, "training": {"tokens": 70, "seconds": 4.0}}
    assert round_cost(offline) == {"data_tokens": 55, "data_seconds": 2.0, "train_tokens": 70, "train_seconds": 4.0}


def test_report_without_diagnostics_or_later_rounds(tmp_path):
    runs = write_runs(tmp_path, [metrics(0, 0.5, 0.2), metrics(1, 0.6, 0.2)])
    write_report(runs, num_rounds=3)  # r2 and r3 not run yet: reported as far as they exist
    report = (runs / "report.md").read_text()
    assert "| benchmark | base | r1 | r1 - base |" in report
    assert "Self-reward signal" not in report
    assert Image.open(runs / "accuracy.png").size == (660, 432)  # one panel


def test_changed_task_list_leaves_gaps(tmp_path):
    later = metrics(1, 0.6, 0.2)
    later["accuracy"]["genius_toy"] = 0.4
    runs = write_runs(tmp_path, [metrics(0, 0.5, 0.2), later])
    summary = write_report(runs, num_rounds=1)
    assert summary.splitlines()[2] == "| base | - | - | - | - | 35.0% | - | 12 |"
    assert "| genius_toy | - | 40.0% | - |" in (runs / "report.md").read_text()


def test_no_metrics_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics.json under"):
        write_report(tmp_path, num_rounds=2)


def test_genius_report_command(tmp_path, capsys):
    runs = write_runs(tmp_path / "runs", [metrics(0, 0.5, 0.2), metrics(1, 0.6, 0.25)])
    assert main(["--params", str(ROOT / "params.yaml"), "-S", f"rounds.runs_dir={runs}", "report"]) == 0
    assert "| 1 | - | 1000 | 2800 pairs | - | 42.5% | 95 |" in capsys.readouterr().out
    assert (runs / "report.md").exists() and (runs / "accuracy.png").exists()


def test_headline_is_base_latest_unrefused_round_and_change(tmp_path):
    """DVC's metric: per task, the base, the latest round the gate did not refuse, the change.

    Base 0.40, round 1 0.45 (promoted), round 2 0.30 (refused), round 3 0.47 (not judged yet: counts):
    latest is round 3, change +0.07; with round 3 gone, round 1 (+0.05), not the refused round 2.
    """
    from genius.stages.registry import RoundEntry, write_registry
    from genius.stages.report import write_summary

    runs = tmp_path / "runs"
    for r, acc in ((0, 0.40), (1, 0.45), (2, 0.30), (3, 0.47)):
        (runs / ("base" if r == 0 else f"r{r}")).mkdir(parents=True)
        (runs / ("base" if r == 0 else f"r{r}") / "metrics.json").write_text(json.dumps(metrics(r, acc, acc)))
    registry = tmp_path / "rounds.yaml"
    write_registry(registry, {1: RoundEntry(1, "m", True), 2: RoundEntry(2, "r1", False), 3: RoundEntry(3, "r1")})
    summary = write_summary(runs, registry)
    assert summary == {"round": 3, "genius_reasoning": {"base": 0.40, "latest": 0.47, "change": 0.07}}
    assert json.loads((tmp_path / "rounds.metrics.json").read_text()) == summary  # beside the registry
    (runs / "r3" / "metrics.json").unlink()
    assert write_summary(runs, registry)["genius_reasoning"] == {"base": 0.40, "latest": 0.45, "change": 0.05}


ENV = {
    "python": "3.11.7", "torch": "2.13.0+cpu", "transformers": "5.25.0", "vllm": "0.30.0", "lm_eval": "0.4.13",
    "lock": {"hash": "0123456789ab", "drift": []}, "device": "cpu", "cpu_numerics": "AVX2 (pinned, MKL_CBWR=AVX2)",
    "threads": 2, "dtype": "float32",
}  # fmt: skip


def with_environment(m: dict, env: dict = ENV, training_threads=1) -> dict:
    """A round's metrics with the environment records its stages write (genius.environment)."""
    m = m | {"environment": env}
    if m["round"] > 0:
        training = {"environment": env | {"threads": training_threads}}
        m |= {"sampling": m["sampling"] | {"environment": env}, "training": training}
    return m


def test_the_environment_is_printed_under_the_round_table(tmp_path):
    runs = write_runs(tmp_path, [with_environment(metrics(0, 0.5, 0.2)), with_environment(metrics(1, 0.6, 0.2))])
    summary = write_report(runs, num_rounds=1)
    table, env = summary.split("\n\n")
    assert table.startswith("| round |") and env == (
        "Environment: Python 3.11.7, torch 2.13.0+cpu, transformers 5.25.0, vLLM 0.30.0, lm-eval 0.4.13; "
        "lock 0123456789ab (installed exactly); CPU AVX2 (pinned, MKL_CBWR=AVX2); float32; "
        "threads: evaluation 2, sampling 2, training 1."
    )
    report = (runs / "report.md").read_text()
    assert report.split("\n\n![")[0].split("\n\n", 1)[1] == summary  # what the flow publishes (flows/genius.py)


def test_stages_in_different_environments_are_each_named(tmp_path):
    gpu = ENV | {"device": "NVIDIA H200", "dtype": "bfloat16", "lock": {"hash": "ffffffffffff", "drift": ["torch 2.13.0+cpu -> 2.13.0"]}}
    rounds = [with_environment(metrics(0, 0.5, 0.2)), with_environment(metrics(1, 0.6, 0.2), gpu)]
    summary = write_report(write_runs(tmp_path, rounds), num_rounds=1)
    lines = summary.split("\n\n")[1].splitlines()
    assert lines[0] == "Environments (the stages did not all run in one):"
    assert lines[1].endswith("(installed exactly); CPU AVX2 (pinned, MKL_CBWR=AVX2); float32: base evaluation")
    assert "lock ffffffffffff (1 package(s) differ, first torch 2.13.0+cpu -> 2.13.0); NVIDIA H200 AVX2" in lines[2]
    assert lines[2].endswith(": r1 evaluation, r1 sampling, r1 training")


def readme_default_run() -> tuple[str, str]:
    """README's "What the default run shows": its round table and the environment line under it."""
    text = (ROOT / "README.md").read_text().split("## What the default run shows", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(line for line in text.splitlines() if line.startswith("|"))
    env = next((line for line in text.splitlines() if line.startswith("Environment")), "")
    return table, env


def test_readmes_default_table_has_the_layout_of_the_runs_report():
    """README's table is runs/report.md's summary of a `make run`, copied: rebuilt from its own
    cells by the report's code, it comes out the same, and its environment line has the
    report's form. The numbers are checked by tests/test_determinism.py, not here."""
    from genius.stages.report import environment_text, summary

    table, env = readme_default_run()
    header, _, *lines = table.splitlines()
    tasks = header.strip("| ").split(" | ")[5:-1]
    assert tasks == load_default_tasks(), "README's table has other columns than the default run's report"
    rows = []
    for line in lines:
        name, method, queries, data, tokens, *accuracy, wall = line.strip("| ").split(" | ")
        m = {"round": 0 if name == "base" else int(name), "accuracy": {}, "seconds": float(wall)}
        m["accuracy"] = {t: float(a.rstrip("%")) / 100 for t, a in zip(tasks, accuracy)}
        if method != "-":
            m["method"] = {"name": method.split(" (")[0], "uses_labels": "USES LABELS" in method}
        if tokens != "-":
            m["cost"] = {"data_tokens": int(tokens.replace(",", ""))}
        if name != "base":
            count, kind = data.split()  # "1703 pairs", "980 targets"
            m |= {"sampling": {"queries": int(queries)}, "pairs": {kind: int(count)}, "seconds_total": float(wall)}
        rows.append(m)
    assert summary(rows) == table, "README's table is not in the layout runs/report.md writes"
    placeholders = ENV | {k: f"<{k}>" for k in ("python", "torch", "transformers", "vllm", "lm_eval", "cpu_numerics", "threads", "dtype")}
    placeholders["lock"] = {"hash": "<lock>", "drift": []}
    rounds = [with_environment(metrics(r, 0, 0), placeholders, "<threads>") for r in (0, 1)]
    pattern = re.escape(environment_text(rounds)).replace(re.escape("lock <lock> (installed exactly)"), "<lock>")
    # re.escape leaves < > _ alone; a value has no separator outside parentheses ("AVX2 (pinned, MKL_CBWR=AVX2)")
    pattern = re.sub(r"<[a-z_]+>", r"(?:[^,;()]|\\([^()]*\\))+", pattern)  # the lock: any of its phrases
    assert re.fullmatch(pattern, env), f"README's environment line is not in the report's form:\n{env}"


def load_default_tasks() -> list[str]:
    from genius.config import load_params

    return load_params(ROOT / "params.yaml").eval.tasks
