"""The run's report: a table of rounds and a plot of accuracy per round, from metrics.json files.

Reads `runs/base/metrics.json` and `runs/r<k>/metrics.json`; writes `report.md`,
`accuracy.csv` (for `dvc plots`) and `accuracy.png` next to them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path


def collect(runs_dir: str | Path, num_rounds: int) -> list[dict]:
    """Metrics of the base (round 0) and of rounds 1..num_rounds that exist."""
    runs_dir = Path(runs_dir)
    paths = [runs_dir / "base" / "metrics.json"] + [runs_dir / f"r{r}" / "metrics.json" for r in range(1, num_rounds + 1)]
    return [json.loads(p.read_text()) for p in paths if p.exists()]


def table(rows: list[dict]) -> str:
    """A markdown table: round, queries, pairs, accuracy per eval task, wall time."""
    tasks = list(rows[0]["accuracy"]) if rows else []
    header = ["round", "queries", "pairs", *tasks, "wall s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in rows:
        cells = [
            "base" if m["round"] == 0 else str(m["round"]),
            str(m.get("sampling", {}).get("queries", "-")),
            str(m.get("pairs", {}).get("pairs", "-")),
            *(f"{m['accuracy'][t]:.1%}" for t in tasks),
            f"{m.get('seconds_total', m['seconds']):.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    rounds = [m["round"] for m in rows]
    for task in rows[0]["accuracy"]:
        ax.plot(rounds, [100 * m["accuracy"][task] for m in rows], marker="o", label=task)
    ax.set_xticks(rounds, ["base" if r == 0 else f"r{r}" for r in rounds])
    ax.set_xlabel("self-training round")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Genius: held-out accuracy per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(runs_dir: str | Path, num_rounds: int) -> str:
    """Write report.md, accuracy.csv and accuracy.png into runs_dir; return the table."""
    runs_dir = Path(runs_dir)
    rows = collect(runs_dir, num_rounds)
    if not rows:
        raise FileNotFoundError(f"no metrics.json under {runs_dir}: run the rounds first")
    text = table(rows)
    with open(runs_dir / "accuracy.csv", "w", newline="") as f:
        writer = csv.writer(f)
        tasks = list(rows[0]["accuracy"])
        writer.writerow(["round", *tasks])
        writer.writerows([m["round"], *(m["accuracy"][t] for t in tasks)] for m in rows)
    plot(rows, runs_dir / "accuracy.png")
    (runs_dir / "report.md").write_text(f"# Genius run\n\n{text}\n\n![accuracy per round](accuracy.png)\n")
    return text
