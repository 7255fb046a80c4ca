"""The run's report: tables of rounds, benchmarks and self-reward signal, and a plot, from metrics.json files.

Reads every round's metrics.json (the base's included); writes `report.md`, `accuracy.csv`
(for `dvc plots`) and `accuracy.png` beside them (genius.layout.RunsPaths), and the
lineage's headline beside its registry, DVC's metric (`write_summary`). The round table
comes first in report.md, the environment the stages ran in right under it (`summary`): the
Prefect flow publishes the two as the run's summary, and README's default table is a copy
of them (tests/test_report.py checks the layout).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from genius.io import write_atomic
from genius.layout import BASE, RoundPaths, RunsPaths, round_name, summary_path

# (metrics.json diagnostics key, column title), as genius.evaluation.diagnostics names them
SIGNAL = [
    ("response_auroc", "response AUROC"),
    ("step_auroc", "step AUROC"),
    ("best_of_n", "best of n"),
    ("random_sample", "random sample"),
    ("greedy", "greedy"),
    ("pass_at_n", "pass@n"),
    ("headroom", "headroom"),
    ("step_top_correct", "top step right"),
    ("step_mean_correct", "any step right"),
]


def collect(runs_dir: str | Path, num_rounds: int) -> list[dict]:
    """Metrics of the base (round 0) and of rounds 1..num_rounds that exist."""
    paths = [RoundPaths.of(runs_dir, r).metrics for r in range(num_rounds + 1)]
    return [json.loads(p.read_text()) for p in paths if p.exists()]


def _name(m: dict) -> str:
    return round_name(m["round"])


def benchmarks(rows: list[dict]) -> list[str]:
    """Every accuracy key of any round, in first-seen order (a group's mean comes before its children)."""
    return list(dict.fromkeys(k for m in rows for k in m["accuracy"]))


def _pct(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def table(rows: list[dict]) -> str:
    """A markdown table: round, method, queries, training data and its tokens, headline accuracy per eval task
    or group, wall time.

    Headline keys are the names in eval.tasks (no "/"); per-benchmark numbers are in
    `benchmark_table`.
    """
    tasks = [k for k in benchmarks(rows) if "/" not in k]
    header = ["round", "method", "queries", "training data", "data tokens", *tasks, "wall s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in rows:
        cells = [
            BASE if m["round"] == 0 else str(m["round"]),
            method_cell(m.get("method")),
            str(m.get("training" if online(m) else "sampling", {}).get("queries", "-")),  # online: sampled while training
            training_data(m),
            f"{m['cost']['data_tokens']:,}" if "cost" in m else "-",  # sampled, prefilled, and run again by the pairs stage
            *(_pct(m["accuracy"].get(t)) for t in tasks),
            f"{m.get('seconds_total', m['seconds']):.0f}",  # evaluation and diagnostics; a round's stages too
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _stage_environments(rows: list[dict]) -> list[tuple[str, dict]]:
    """(where, environment record) of every stage that recorded one: evaluation, sampling, training per round."""
    found = []
    for m in rows:
        for stage, record in (("evaluation", m), ("sampling", m.get("sampling", {})), ("training", m.get("training", {}))):
            if record.get("environment"):
                found.append((f"{_name(m)} {stage}", record["environment"]))
    return found


def describe_environment(env: dict) -> str:
    """One environment record (genius.environment) in words, threads aside."""
    return (
        f"Python {env['python']}, torch {env['torch']}, transformers {env['transformers']}, "
        f"vLLM {env['vllm'] or 'none'}, lm-eval {env['lm_eval']}; {_lock_phrase(env['lock'])}; "
        f"{env['device'] if env['device'] != 'cpu' else 'CPU'} {env['cpu_numerics']}; {env['dtype']}"
    )


def _lock_phrase(lock: dict) -> str:
    if lock["hash"] is None:
        return "no lock file"
    if not lock["drift"]:
        return f"lock {lock['hash']} (installed exactly)"
    return f"lock {lock['hash']} ({len(lock['drift'])} package(s) differ, first {lock['drift'][0]})"


def environment_text(rows: list[dict]) -> str | None:
    """The environment the rounds ran in, one line when every stage shared it (threads per stage aside)."""
    found = _stage_environments(rows)
    if not found:
        return None
    described = {}
    for where, env in found:
        described.setdefault(describe_environment(env), []).append(where)
    threads = {}
    for where, env in found:
        threads.setdefault(where.split()[-1], env["threads"])
    per_stage = ", ".join(f"{stage} {n}" for stage, n in threads.items())
    if len(described) == 1:
        return f"Environment: {next(iter(described))}; threads: {per_stage}."
    lines = ["Environments (the stages did not all run in one):"]
    lines += [f"- {text}: {', '.join(where)}" for text, where in described.items()]
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """The round table and, under it, the environment: what the flow prints and README quotes."""
    env = environment_text(rows)
    return table(rows) + (f"\n\n{env}" if env else "")


def online(m: dict) -> bool:
    """An online RL round (GRPO): its train stage sampled, no sample or pairs stage ran."""
    return bool((m.get("method") or {}).get("reward"))


def training_data(m: dict) -> str:
    """What the round trained on: its pairs or SFT targets, or (online) its GRPO steps."""
    data = m.get("pairs", {})
    if online(m):
        t = m.get("training", {})
        return f"online, {t['steps']} steps" if "steps" in t else "online"
    return f"{data['pairs']} pairs" if "pairs" in data else f"{data['targets']} targets" if "targets" in data else "-"


# (train.json key stem, column title): what a user watches in a GRPO round (genius.training.grpo_metrics)
WATCHED = [
    ("reward", "mean reward"),
    ("majority_agreement", "majority agreement"),
    ("majority_correct", "majority right"),
    ("entropy", "token entropy"),
    ("response_length", "response length"),
    ("kl", "KL"),
]


def online_table(rows: list[dict]) -> str | None:
    """Per online round, first step -> last step of what a user watches; None when no round is online.

    Rising reward with falling majority-right (where labels measure it) or entropy is the
    collapse the promotion gate must stop (docs: PEERS, bench/grpo_toy.py).
    """
    rows = [m for m in rows if online(m) and m.get("training")]
    if not rows:
        return None
    header = ["round", "reward", *(title for _, title in WATCHED), "rollout tokens"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    span = lambda t, k: "-" if t.get(f"{k}_first") is None else f"{t[f'{k}_first']:.3g} -> {t[f'{k}_last']:.3g}"  # noqa: E731
    for m in rows:
        t = m["training"]
        cells = [_name(m), m["method"]["reward"], *(span(t, key) for key, _ in WATCHED)]
        lines.append("| " + " | ".join([*cells, f"{m.get('cost', {}).get('data_tokens', 0):,}"]) + " |")
    return "\n".join(lines)


def method_cell(info: dict | None) -> str:
    """The round's method; a label-using control says so in capitals wherever it shows."""
    if not info:
        return "-"
    return f"{info['name']} (control: USES LABELS)" if info.get("uses_labels") else info["name"]


def benchmark_table(rows: list[dict]) -> str:
    """Benchmarks as rows, rounds as columns (accuracy ± standard error), and the last round's change from the base."""
    header = ["benchmark", *(_name(m) for m in rows)]
    base = rows[0] if rows and rows[0]["round"] == 0 else None
    if base and len(rows) > 1:
        header.append(f"{_name(rows[-1])} - base")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in benchmarks(rows):
        cells = [key]
        for m in rows:
            value, stderr = m["accuracy"].get(key), m.get("stderr", {}).get(key)
            cells.append(_pct(value) + (f" ± {stderr:.1%}" if value is not None and stderr else ""))
        if base and len(rows) > 1:
            first, last = base["accuracy"].get(key), rows[-1]["accuracy"].get(key)
            cells.append("-" if first is None or last is None else f"{100 * (last - first):+.1f} pt")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _signal_cell(key: str, value) -> str:
    if value is None:
        return "-"
    if "auroc" in key:
        return f"{value:.2f}"
    return f"{value:+.1%}" if key == "headroom" else f"{value:.1%}"


def signal_table(rows: list[dict]) -> str | None:
    """The self-reward diagnostics per round (genius.evaluation.diagnostics); None when no round has them."""
    rows = [m for m in rows if m.get("diagnostics")]
    if not rows:
        return None
    header = ["round", "problems x n", *(title for _, title in SIGNAL)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in rows:
        d = m["diagnostics"]
        values = [_signal_cell(key, d.get(key)) for key, _ in SIGNAL]
        lines.append("| " + " | ".join([_name(m), f"{d['problems']} x {d['samples_per_problem']}", *values]) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Accuracy per benchmark per round (base = round 0); beside it the self-reward signal, if measured."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    signal = [m for m in rows if m.get("diagnostics")]
    fig, axes = plt.subplots(1, 2 if signal else 1, figsize=(10 if signal else 5.5, 3.6), dpi=120, squeeze=False)
    ax = axes[0][0]
    rounds = [m["round"] for m in rows]
    for key in benchmarks(rows):
        points = [(m["round"], 100 * m["accuracy"][key]) for m in rows if key in m["accuracy"]]
        headline = "/" not in key  # a task or a group's mean: drawn bold
        ax.plot(*zip(*points), marker="o", label=key, linewidth=2.2 if headline else 1, alpha=1 if headline else 0.7)
    ax.set_xticks(rounds, [_name(m) for m in rows])
    ax.set_xlabel("self-training round")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Held-out accuracy per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6 if len(benchmarks(rows)) > 6 else 8)
    if signal:
        ax = axes[0][1]
        x = [m["round"] for m in signal]
        lines = [("best_of_n", "best of n", "o-"), ("greedy", "greedy", "s-"), ("random_sample", "random sample", "^-")]
        for key, title, style in lines:
            ax.plot(x, [100 * (m["diagnostics"].get(key) or 0) for m in signal], style, label=title)
        ax.set_ylabel("probe accuracy (%)")
        twin = ax.twinx()  # AUROC lives on [0, 1], accuracy on [0, 100]
        aurocs = [("response_auroc", "response AUROC", "tab:purple"), ("step_auroc", "step AUROC", "tab:brown")]
        for key, title, color in aurocs:
            pts = [(m["round"], m["diagnostics"][key]) for m in signal if m["diagnostics"].get(key) is not None]
            if pts:  # own colours: the twin axis would restart the colour cycle of the accuracy lines
                twin.plot(*zip(*pts), "x--", color=color, label=title)
        twin.set_ylim(0, 1)
        twin.set_ylabel("AUROC")
        ax.set_xticks(x, [_name(m) for m in signal])
        ax.set_xlabel("self-training round")
        ax.set_title("Self-reward vs correctness (probe)")
        ax.grid(alpha=0.3)
        handles = ax.get_legend_handles_labels()
        twin_handles = twin.get_legend_handles_labels()
        ax.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize=7)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def headline(rows: list[dict], entries: dict) -> dict:
    """Per headline task: its accuracy on the base, on the latest round, and the change; and which round that is.

    The latest round is the last evaluated one the promotion gate did not refuse (`entries`: the
    registry; a round DVC ran without the flow is not judged, and counts).
    """
    base = next((m for m in rows if m["round"] == 0), None)
    if base is None:
        return {}
    judged = [m for m in rows if m["round"] > 0 and getattr(entries.get(m["round"]), "promoted", None) is not False]
    latest = judged[-1] if judged else base
    out: dict = {"round": latest["round"]}
    for task in (k for k in base["accuracy"] if "/" not in k):
        first, last = base["accuracy"][task], latest["accuracy"].get(task)
        out[task] = {"base": first, "latest": last, "change": None if last is None else round(last - first, 6)}
    return out


def write_summary(runs_dir: str | Path, registry: str | Path) -> dict:
    """The lineage's headline (`headline`) into its summary file, DVC's metric (genius.layout.summary_path)."""
    from genius.io import write_json
    from genius.stages.registry import read_registry

    entries = read_registry(registry)
    numbers = headline(collect(runs_dir, len(entries)), entries)
    if numbers:
        write_json(summary_path(registry), numbers)
    return numbers


def write_report(runs_dir: str | Path, num_rounds: int) -> str:
    """Write report.md, accuracy.csv and accuracy.png into runs_dir; return the round table and environment."""
    runs = RunsPaths(Path(runs_dir))
    rows = collect(runs.dir, num_rounds)
    if not rows:
        raise FileNotFoundError(f"no {runs.round(0).metrics.name} under {runs.dir}: run the rounds first")
    text = summary(rows)
    keys = benchmarks(rows)
    csv_text = io.StringIO(newline="")
    writer = csv.writer(csv_text)
    writer.writerow(["round", *keys])
    writer.writerows([m["round"], *(m["accuracy"].get(k, "") for k in keys)] for m in rows)
    # every file here is replaced, never rewritten in place: one may be a link into DVC's cache
    write_atomic(runs.accuracy_csv, csv_text.getvalue())
    plot(rows, runs.accuracy_png)
    controls = sorted({m["method"]["name"] for m in rows if (m.get("method") or {}).get("uses_labels")})
    sections = [
        "# Genius run",
        text,
        *([f"**{', '.join(controls)}: a positive control that USES LABELS** (method.answers_path): it bounds what "
           "training can show with perfect choices, and is not a label-free result."] if controls else []),
        f"![accuracy per round]({runs.accuracy_png.name})",
        "## Accuracy per benchmark",
        benchmark_table(rows),
    ]
    watched = online_table(rows)
    if watched:
        sections += [
            "## Online RL: what the rounds watched",
            "First -> last optimizer step of each GRPO round (runs/r<k>/train_steps.jsonl has every step): the "
            "mean reward, the share of a group agreeing with its majority answer, how often that majority is "
            "right (only where method.answers_path gives labels; measurement, never a reward), the policy's "
            "token entropy, the response length and the KL to the reference.",
            watched,
        ]
    signal = signal_table(rows)
    if signal:
        sections += [
            "## Self-reward signal on the labelled probe",
            "AUROC of the policy's own scores against correctness (response: mean token log-prob of a "
            "sampled response; step: foresight score of a candidate step), and probe accuracy of the "
            "top-scored of n samples against a random sample and the greedy response. Headroom = best of n "
            "- greedy: what label-free selection can at most gain. Top step right: how often the top-scored "
            "candidate step of a timestamp (the pair's positive) leads to the right answer; any step: a "
            "candidate drawn uniformly.",
            signal,
        ]
    write_atomic(runs.report, "\n\n".join(sections) + "\n")
    return text
