"""`make replicate`'s plan and results: the shape of the paper's Tables 1, 3 and 4 at toy scale, over seeds.

A plan (configs/replicate.yaml) names arms: Genius itself, run for some rounds, its ablations,
the label-free methods and the positive controls (`method.name`, README "Methods"), each a
set of params overrides on top of params.yaml. Every (seed, arm) lives in its own folder,
`<out_dir>/seed<s>/<arm>/`, with the usual round layout (r1/, r2/, base/) and its own round
registry (flows/replicate.py runs the stages). An arm with `pairs_from` trains on another
arm's round-1 pairs (the paper's Table 4: the same data, another loss); one with
`samples_from` builds its own training data from another arm's round-1 samples (LMSI, RFT and
self-certainty choose among the same responses as self-consistency; the oracle among Genius's
candidates), which the plan checks are the samples it would draw itself. A seed changes the
query slice, the sampler's and the trainer's randomness and lm-eval's sampling; the base model
is one, built once.

`summarise` turns the arms' metrics into mean +- standard error over seeds, with each arm's
change against the base paired by seed; `write_results` writes the table (laid out like the
paper's Table 1: which arms use labels, accuracy per protocol, change vs base, cost) and the plot.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from genius.config import ConfigError, Params, load_params, read_yaml, validate
from genius.layout import RoundPaths, round_name
from genius.stages.table import check_method, method

SEEDED = ("sampling.seed", "training.seed", "eval.seed", "queries.shuffle_seed")  # what a seed changes


class Arm(BaseModel):
    """One arm of a plan: `arms.<name>` of the plan file."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True)
    name: str
    label: str  # as the results table shows it
    rounds: int = 1
    pairs_from: str | None = None  # train on this arm's round-1 pairs instead of sampling
    samples_from: str | None = None  # build its own training data from this arm's round-1 samples (the same sampler)
    overrides: dict[str, Any] = Field(default_factory=dict, alias="set")  # params overrides, `set:` in the file

    @property
    def source(self) -> tuple[str, str] | None:
        """(the arm it borrows from, the round file it borrows up to), or None: it samples for itself."""
        if self.pairs_from:
            return self.pairs_from, "pairs"
        return (self.samples_from, "samples") if self.samples_from else None


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    seeds: list[StrictInt] = Field(default=[0, 1, 2], min_length=1)
    out_dir: Path = Path("runs/replicate")
    results: Path = Path("docs/RESULTS.md")
    workers: int = 2
    params: Path = Path("params.yaml")
    common: dict[str, Any] = {}
    arms: list[Arm]
    source: Path  # the plan file

    @model_validator(mode="after")
    def _arms(self):
        names = [a.name for a in self.arms]
        if "base" in names or not self.arms:
            raise ConfigError("arms: name at least one arm; `base` is reserved (the base model is always scored)")
        for a in self.arms:
            key = "pairs_from" if a.pairs_from else "samples_from"
            if a.pairs_from and a.samples_from:
                raise ConfigError(f"arms.{a.name}: pairs_from or samples_from, not both")
            if a.source and (a.source[0] not in names or a.rounds != 1 or self.arm(a.source[0]).source):
                raise ConfigError(f"arms.{a.name}.{key}: must name another arm that samples for itself, for a 1-round arm")
        return self

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)


def load_plan(path: str | Path) -> Plan:
    """Read and check a plan; errors name the file, the key and its line. An empty key takes its default."""
    path = Path(path)
    data, lines = read_yaml(path, "the replicate plan")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of plan keys at the top level")
    data = {k: v for k, v in data.items() if v is not None}
    arms = data.get("arms", {})
    if not isinstance(arms, dict):
        raise ConfigError(f"{path}:{lines['arms']}: arms: expected a mapping of arm names to arms, got {arms!r}")
    data["arms"] = []
    for name, spec in arms.items():
        if isinstance(spec, dict) or spec is None:
            spec = {"name": name, "label": name, **{k: v for k, v in (spec or {}).items() if v is not None}}
        data["arms"].append(validate(Arm, spec, path, lines, ("arms", name)))
    plan = validate(Plan, {**data, "source": path}, path, lines)
    arms = {}
    for arm in plan.arms:  # every arm's params must load and its method run: a typo fails now, not an hour in
        try:
            arms[arm.name] = load_params(plan.params, overrides(plan, plan.seeds[0], arm))
            check_method(arms[arm.name])
        except ConfigError as e:
            raise ConfigError(f"{path}: arms.{arm.name} (or common): {e}") from None
    for arm in plan.arms:
        if arm.samples_from and not same_samples(arms[arm.name], arms[arm.samples_from]):
            raise ConfigError(
                f"{path}: arms.{arm.name}.samples_from: {arm.samples_from} samples otherwise (another sampler, "
                "sampling or queries keys): it cannot share its samples"
            )
    return plan


def same_samples(a: Params, b: Params) -> bool:
    """Two lineages' round-1 samples are the same: the same queries and the same sampler, config and all."""
    from genius.stages.rounds import samples_config

    return a.queries == b.queries and samples_config(a, "policy") == samples_config(b, "policy")


def arm_dir(plan: Plan, seed: int, arm: str) -> Path:
    return plan.out_dir / f"seed{seed}" / arm


def overrides(plan: Plan, seed: int, arm: Arm | None) -> dict[str, Any]:
    """The params overrides of one (seed, arm); arm None is the base model's evaluation."""
    d = arm_dir(plan, seed, arm.name if arm else "base")
    return {
        **plan.common,
        **{key: seed for key in SEEDED},
        **(arm.overrides if arm else {}),
        "rounds.runs_dir": str(d),
        "rounds.registry": str(d / "rounds.yaml"),
        "tracking.wandb_mode": "disabled",  # one run per stage of 20 arms: use the results table
    }


def read_accuracy(plan: Plan) -> list[dict]:
    """One row per (seed, arm, round) that has metrics: {seed, arm, round, <task>: accuracy, cost: {...}}."""
    import json

    rows = []
    for seed in plan.seeds:
        cells = [("base", 0)] + [(a.name, r) for a in plan.arms for r in range(1, a.rounds + 1)]
        for arm, r in cells:
            path = RoundPaths.of(arm_dir(plan, seed, arm), r).metrics
            if path.exists():
                metrics = json.loads(path.read_text())
                rows.append({"seed": seed, "arm": arm, "round": r, **metrics["accuracy"], "cost": metrics.get("cost", {})})
    return rows


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / sqrt(n)); SE nan for n < 2."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def summarise(rows: list[dict], tasks: list[str]) -> list[dict]:
    """Per (arm, round): mean +- SE of each task's accuracy, and of its change against the base
    paired by seed (the base and the arm share the seed's evaluation draw)."""
    base = {row["seed"]: row for row in rows if row["arm"] == "base"}
    cells: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        cells.setdefault((row["arm"], row["round"]), []).append(row)
    out = []
    for (arm, r), group in cells.items():
        entry = {"arm": arm, "round": r, "seeds": len(group)}
        for t in tasks:
            entry[t] = mean_se([g[t] for g in group])
            deltas = [g[t] - base[g["seed"]][t] for g in group if g["seed"] in base]
            entry[f"{t}/delta"] = mean_se(deltas) if deltas and arm != "base" else None
        out.append(entry)
    return out


def _cell(pair: tuple[float, float] | None, signed: bool = False) -> str:
    if pair is None:
        return "–"
    mean, se = pair
    sign = "+" if signed and mean >= 0 else ""
    return f"{sign}{100 * mean:.1f} ± {100 * se:.1f}" if not math.isnan(se) else f"{sign}{100 * mean:.1f}"


def uses_labels(plan: Plan) -> dict[str, bool]:
    """Arm -> whether its method reads gold answers (a positive control: the stage table's `labels`)."""
    return {a.name: method(load_params(plan.params, overrides(plan, plan.seeds[0], a))).labels for a in plan.arms}


def costs(rows: list[dict]) -> dict[tuple[str, int], dict[str, float]]:
    """(arm, round) -> mean over seeds of the tokens its training data cost and its minutes (data and training)."""
    out: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        if row.get("cost"):
            out.setdefault((row["arm"], row["round"]), []).append(row["cost"])
    mean = lambda cs, f: sum(map(f, cs)) / len(cs)  # noqa: E731
    return {
        cell: {
            "tokens": mean(cs, lambda c: c["data_tokens"]),
            "minutes": mean(cs, lambda c: c["data_seconds"] + c["train_seconds"]) / 60,
        }
        for cell, cs in out.items()
    }


def table(summary: list[dict], plan: Plan, tasks: dict[str, str], labels: dict[str, bool] | None = None, cost: dict | None = None) -> str:
    """Markdown laid out like the paper's Table 1: one row per method and round, whether it uses labels,
    accuracy and change vs base per protocol (points, mean ± SE), and what its training data cost."""
    labels, cost = labels or {}, cost or {}
    names = {"base": "base model"} | {a.name: a.label for a in plan.arms}
    order = ["base"] + [a.name for a in plan.arms]
    header = ["method", "labels?", "round", "seeds"]
    for title in tasks.values():
        header += [f"{title}", f"{title} vs base"]
    header += ["data tokens", "minutes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in sorted(summary, key=lambda e: (order.index(e["arm"]), e["round"])):
        arm = entry["arm"]
        used = "–" if arm == "base" else "**yes** (control)" if labels.get(arm) else "no"
        cells = [names[arm], used, str(entry["round"]) if entry["round"] else "–", str(entry["seeds"])]
        for t in tasks:
            cells += [_cell(entry[t]), _cell(entry[f"{t}/delta"], signed=True)]
        spent = cost.get((arm, entry["round"]))
        cells += [f"{spent['tokens']:,.0f}", f"{spent['minutes']:.1f}"] if spent else ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: list[dict], plan: Plan, tasks: dict[str, str], path: Path, labels: dict[str, bool] | None = None) -> None:
    """Bars: accuracy per method and round, one panel per protocol, SE whiskers; the controls in red."""
    labels = labels or {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"base": "base"} | {a.name: a.label for a in plan.arms}
    entries = sorted(summary, key=lambda e: (["base"] + [a.name for a in plan.arms]).index(e["arm"]) * 10 + e["round"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), dpi=120, squeeze=False)
    for ax, (t, title) in zip(axes[0], tasks.items()):
        ticks = [names[e["arm"]] + (f" {round_name(e['round'])}" if e["round"] > 1 else "") for e in entries]
        means = [100 * e[t][0] for e in entries]
        errs = [0 if math.isnan(e[t][1]) else 100 * e[t][1] for e in entries]
        colors = [
            "tab:gray" if e["arm"] == "base" else "tab:blue" if e["arm"] == plan.arms[0].name
            else "tab:red" if labels.get(e["arm"]) else "tab:orange"
            for e in entries
        ]  # fmt: skip
        ax.bar(range(len(entries)), means, yerr=errs, color=colors, capsize=3)
        ax.axhline(means[0], color="tab:gray", linewidth=0.8, linestyle="--")
        ax.set_xticks(range(len(entries)), ticks, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


TASK_TITLES = {"genius_toy": "greedy", "genius_toy_sampled": "T=1.0 (paper)"}
BEGIN = "<!-- replicate:begin: written by the replicate flow; edits between these markers are overwritten -->"
END = "<!-- replicate:end -->"


def paired(rows: list[dict], a: tuple[str, int], b: tuple[str, int], task: str) -> tuple[float, float] | None:
    """Mean +- SE over seeds of accuracy(a) - accuracy(b), cells (arm, round) paired by seed."""
    by = {(row["arm"], row["round"], row["seed"]): row[task] for row in rows}
    seeds = sorted({row["seed"] for row in rows})
    diffs = [by[(*a, s)] - by[(*b, s)] for s in seeds if (*a, s) in by and (*b, s) in by]
    return mean_se(diffs) if diffs else None


def verdict(rows: list[dict], plan: Plan, tasks: dict[str, str], labels: dict[str, bool] | None = None, goal: float = 0.03) -> list[str]:
    """The goal, checked. The plan's first arm (Genius) against the base per round, and its round 1 minus
    each other arm; then, on the last task (T=1.0), which label-free arm beats the base by >= `goal` and
    > 2 SE with the first task (greedy) not down (its mean change >= 0), and the first arm's last round
    minus it."""
    labels = labels or {}
    first, lines = plan.arms[0], []
    meets = lambda d: d is not None and d[0] >= goal and d[0] > 2 * d[1]  # noqa: E731
    for t, title in tasks.items():
        for r in range(1, first.rounds + 1):
            d = paired(rows, (first.name, r), ("base", 0), t)
            if d is not None:
                lines.append(
                    f"- {title}, {first.label} round {r} vs base: {_cell(d, signed=True)} points: "
                    + ("**meets** the goal (>= +3 and > 2 SE)" if meets(d) else "does **not** meet the goal (>= +3 and > 2 SE)")
                )
        diffs = [(a, paired(rows, (first.name, 1), (a.name, 1), t)) for a in plan.arms[1:]]
        diffs = [(a, d) for a, d in diffs if d is not None]
        if diffs:
            beaten = [a.label for a, d in diffs if d[0] > 2 * d[1]]
            cells = "; ".join(f"{a.label} {_cell(d, signed=True)}" for a, d in diffs)
            lines.append(f"- {title}, {first.label} round 1 minus each other arm: {cells} (beats by > 2 SE: {', '.join(beaten) or 'none'})")
    (greedy, greedy_title), (target, title) = list(tasks.items())[0], list(tasks.items())[-1]
    found = []
    for a in (a for a in plan.arms if not labels.get(a.name)):
        for r in range(1, a.rounds + 1):
            d, g = paired(rows, (a.name, r), ("base", 0), target), paired(rows, (a.name, r), ("base", 0), greedy)
            if meets(d) and g is not None and g[0] >= 0:
                versus = paired(rows, (first.name, first.rounds), (a.name, r), target) if a.name != first.name else None
                than = f"; {first.label} round {first.rounds} minus it: {_cell(versus, signed=True)}" if versus else ""
                found.append(f"{a.label} round {r} ({_cell(d, signed=True)}, {greedy_title} {_cell(g, signed=True)}{than})")
    if rows:
        lines.append(
            f"- {title}: label-free arms that beat the base by >= +3 and > 2 SE with {greedy_title} not down: "
            + ("; ".join(found) if found else "**none**")
        )
    return lines


def write_results(plan: Plan, seconds: float, command: str, tasks: dict[str, str] = TASK_TITLES) -> str:
    """Rewrite the generated block of the results file (the rest is kept) and the plot; return the block."""
    import datetime
    import os

    rows = read_accuracy(plan)
    summary = summarise(rows, list(tasks))
    labels = uses_labels(plan)
    figure = plan.results.with_name("results.png")
    if summary:
        plot(summary, plan, tasks, figure, labels)
    arms = ", ".join(f"{a.label} ({a.rounds} round{'s' * (a.rounds > 1)})" for a in plan.arms)
    block = "\n".join(
        [
            BEGIN,
            f"Command: `{command}` (plan: `{plan.source}`), {len(plan.seeds)} seeds ({', '.join(map(str, plan.seeds))}); "
            f"finished in {seconds / 60:.0f} min on {os.cpu_count()} CPU cores, {datetime.date.today().isoformat()}. "
            f"Arms: base, {arms}. Accuracy in %, mean ± standard error over seeds; \"vs base\" is the "
            "change in points paired by seed. Scored by lm-eval on the held-out problems: greedy, and one "
            "sample at temperature 1.0 (the paper's protocol, appendix B.2). \"labels?\": **yes** marks a "
            "positive control, which reads the queries' gold answers: it bounds what training can show, and "
            "is not a label-free result. Data tokens: sampled and prefilled, plus what the method ran through "
            "the policy again (self-certainty's scoring pass); samples shared between arms count whole in each. "
            "Minutes: making the training data and training, mean over seeds, on this machine as it was loaded.",
            "",
            table(summary, plan, tasks, labels, costs(rows)) if summary else "(no arm has results yet)",
            "",
            f"![accuracy per method]({figure.name})",
            "",
            "Against the goal (computed from the table's runs):",
            "",
            *verdict(rows, plan, tasks, labels),
            END,
        ]
    )
    path = plan.results
    text = path.read_text() if path.exists() else f"# Results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path}: the markers of the generated block are missing; restore `{BEGIN}` ... `{END}`")
    head, rest = text.split(BEGIN, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + block + rest.split(END, 1)[1])
    return block
