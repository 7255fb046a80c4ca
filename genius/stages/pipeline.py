"""dvc.yaml and the round registry, derived from params.yaml: the DVC pipeline follows the params.

DVC's templating cannot add or drop a stage, nor splice a list of files into `deps`, so
dvc.yaml is written from the stage table below by `genius pipeline` (which the Prefect flow
and `make repro` run first). What follows the params:

- the `toy` stage exists only when `toy.enabled` is true;
- every local file among `queries.paths`, `model.path`, `eval.test_path` and
  `eval.diagnostics_path` is a dependency, so editing one reruns what read it (library
  sources such as `reasoning_gym:...` and `hf:...` are params, tracked through `params:`);
- every output lives under `rounds.runs_dir`, and the rounds come from `rounds.registry`;
- each round's sample, train and evaluate stages depend on `model.path` too (their `inputs`
  in the stage table): a LoRA round's policy is that base plus the adapters of its chain. The
  adapters are covered through the parent (`${item.policy}`), whose lineage file holds its own
  parent's hash and the base's (genius/engines/lineage.py): `foreach` cannot list a chain
  whose length grows by round;
- every stage depends on the lock file (requirements/lock.txt) and the pinned arithmetic
  (genius/numerics.py), the table's SHARED_CODE, so a new environment shows every stage as
  changed in `dvc status` instead of mixing two in one lineage.

The registry is the lineage: which model it self-trains, in which runs folder, and the
policy each round started from. A lineage never switches models: with rounds already done,
a new `model.path` or `rounds.runs_dir` is refused with a message saying how to start a new
lineage. A lineage with nothing done yet simply follows the params.

A stage run by DVC (which sets DVC_STAGE) refuses a dvc.yaml that no longer matches the
params, so an edit of params.yaml followed by a bare `dvc repro` fails with one line saying
to run `genius pipeline`, instead of running stages whose dependencies are stale.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from genius.config import SPEED_ONLY, ConfigError, Params
from genius.io import write_atomic
from genius.layout import RoundPaths, RunsPaths, summary_path
from genius.stages.registry import Lineage, RoundEntry, read_lineage, read_registry, write_registry
from genius.stages.table import EACH, NONE, SHARED_CODE, STAGES, Stage, check_method, method, reads, round_stages

HEADER = """\
# Written by `genius pipeline` from params.yaml and {registry}: do not edit by hand, edit
# those and rerun it (`make repro` and the Prefect flow do). The same stages the Prefect flow
# runs, one per step and round (ingest@r1, sample@r1, ..., evaluate@r2); every local model,
# query and test file named in the params is a dependency, every output lives in {runs}/.
"""
SCHEME = re.compile(r"^[A-Za-z][\w+.-]*:(?!//)")  # hf:<name>, reasoning_gym:<name>?..., not C:\ or s3://


class PipelineError(ConfigError):
    """dvc.yaml or the registry disagrees with the params; the message says what to run."""


def is_library_source(entry: str) -> bool:
    """`hf:...` or `reasoning_gym:...`: data made or fetched by a library, not a file."""
    return bool(SCHEME.match(entry)) and not Path(entry).exists()


def local_model(path: str, produced: set[str]) -> bool:
    """A model folder on disk (or one a stage builds), as opposed to a hub name."""
    return Path(path).exists() or _norm(path) in produced


def _norm(path: str) -> str:
    return os.path.normpath(path)


def check_inputs(params: Params) -> None:
    """Every input the params name exists, or is built by a stage, or is a library/hub source."""
    produced = _produced(params)
    for i, entry in enumerate(params.queries.paths):
        if not is_library_source(entry) and not Path(entry).exists() and not _under(entry, produced):
            raise ConfigError(f"queries.paths[{i}]: {entry} does not exist")
    for key, path in (("eval.test_path", params.eval.test_path), ("eval.diagnostics_path", params.eval.diagnostics_path)):
        if path and not is_library_source(path) and not Path(path).exists() and not _under(path, produced):
            raise ConfigError(f"{key}: {path} does not exist")
    path = params.model.path
    if not local_model(path, produced) and not _under(path, produced) and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ConfigError(
            f"model.path: {path} is not a folder here, and HF_HUB_OFFLINE=1 keeps it from being fetched "
            "from the hub (import a GGUF file with `genius import-model`, or set HF_HUB_OFFLINE=0 for a hub name)"
        )


def _produced(params: Params) -> set[str]:
    """Paths that a stage of the pipeline writes before anything reads them."""
    return {_norm(params.toy.out_dir)} if params.toy.enabled else set()


def _under(path: str, produced: set[str]) -> bool:
    p = _norm(path)
    return any(p == d or p.startswith(d + os.sep) for d in produced)


def _local_files(params: Params, *paths: str | None) -> list[str]:
    produced = _produced(params)
    return [p for p in paths if p and not is_library_source(p) and (Path(p).exists() or _under(p, produced))]


def file_keys(path: str | Path = "params.yaml") -> set[str]:
    """The dotted keys (`section.key`) a params file writes out."""
    data = yaml.safe_load(Path(path).read_text()) if Path(path).exists() else None
    return {f"{section}.{key}" for section, body in (data or {}).items() if isinstance(body, dict) for key in body}


def keys(params: Params, present: set[str], *sections: str) -> list[str]:
    """The dotted keys of `sections` that decide a stage's outputs (all but SPEED_ONLY), as DVC params.

    Only keys the params file writes out: DVC refuses a listed key the file lacks (one left at
    its default). Writing such a key into the file changes dvc.yaml, and stages then ask for
    `genius pipeline`.
    """
    return [
        f"{section}.{name}"
        for section in sections
        for name in type(getattr(params, section)).model_fields
        if name not in SPEED_ONLY.get(section, ()) and f"{section}.{name}" in present
    ]


def stages(params: Params, present: set[str]) -> dict:
    """dvc.yaml's stages, from the stage table (genius/stages/table.py): what each runs, reads and writes.

    `present`: the dotted keys the params file writes out (file_keys).
    """
    table: dict = {}
    for stage in STAGES.values():
        if stage.enabled(params) and (stage.rounds != EACH or stage in round_stages(params)):
            entry = dvc_stage(stage, params, present)
            table[stage.name] = {"foreach": "${round_list}", "do": entry} if stage.rounds == EACH else entry
    return table


def dvc_stage(stage: Stage, params: Params, present: set[str]) -> dict:
    """One stage's dvc.yaml entry; a stage of each round uses DVC's `${key}` (the round's name) and `${item.*}`."""
    runs = params.rounds.runs_dir
    paths = RoundPaths(Path(runs) / "${key}") if stage.rounds == EACH else RoundPaths.of(runs, 0)
    files = lambda names: [str(getattr(paths, name)) for name in names]  # noqa: E731
    stats = [s.stats[1] for s in round_stages(params) if s.stats] if stage.round_stats else []
    row = method(params)  # the method's own keys, code and inputs, for the stages it shapes (sample, pairs; online: train)
    own = [k for k in row.params.get(stage.name, ()) if k in present]
    entry: dict = {
        "cmd": " ".join(["genius", *stage.argv("${item.round}")]),
        "deps": [
            *(["${item.policy}"] if stage.policy else []),
            *files(reads(params, stage)),
            *_local_files(params, *stage.inputs(params)),
            *row.code.get(stage.name, ()),
            *stage.code,
            *files(stats),  # evaluate: the round's other statistics go into its metrics.json
            *SHARED_CODE,  # the environment: a new lock or arithmetic reruns every stage
        ],
    }
    if stage.name in row.params and "method.answers_path" in row.params[stage.name]:  # a control's labels
        entry["deps"] += _local_files(params, params.method.answers_path)
    keys_ = keys(params, present, *stage.params) + own + (["rounds.runs_dir"] if stage.rounds != NONE else [])
    if keys_:  # a moved runs folder invalidates every stage of a round (which then asks for `genius pipeline`)
        entry["params"] = keys_
    entry["outs"] = [*files(stage.writes), *stage.outputs(params)]
    return entry


def render(params: Params, present: set[str] | None = None) -> str:
    """dvc.yaml's text for these params; `present` defaults to the keys params.yaml writes out."""
    present = file_keys() if present is None else present
    runs = RunsPaths(Path(params.rounds.runs_dir))
    doc = {
        "vars": [params.rounds.registry],
        "stages": stages(params, present),
        # `genius evaluate` (and the flow, once it has judged a round) refreshes the report over every
        # round evaluated so far, and the headline: base, latest round, change per task. A round's
        # metrics.json is a plain output: as DVC metrics, every key of every round would be a column.
        "metrics": [str(summary_path(params.rounds.registry))],
        "plots": [{str(runs.accuracy_csv): {"x": "round"}}, str(runs.accuracy_png)],
    }
    body = yaml.safe_dump(doc, sort_keys=False, width=1000)
    return HEADER.format(registry=params.rounds.registry, runs=params.rounds.runs_dir) + body


def sync(params: Params, dvc_yaml: str | Path = "dvc.yaml", num_rounds: int | None = None, present: set[str] | None = None) -> list[str]:
    """Bring the registry and dvc.yaml in line with the params; returns what changed.

    Checks the inputs and the lineage first (nothing is written if either fails), then
    registers rounds 1..num_rounds (default `rounds.num_rounds`; the flow passes 0 and
    registers each round as it reaches it, from the latest promoted policy) that are missing, and
    writes dvc.yaml if its text differs.
    """
    check_inputs(params)
    check_method(params)  # a loss the method cannot train with, a control without answers: refused before DVC runs anything
    changed: list[str] = []
    entries = read_registry(params.rounds.registry)
    lineage = Lineage(params.model.path, params.rounds.runs_dir)
    recorded = read_lineage(params.rounds.registry)
    if recorded is None and entries:  # a registry written before lineages were recorded
        recorded = Lineage(entries[1].policy, params.rounds.runs_dir)
        changed.append(f"{params.rounds.registry}: lineage recorded")
    if recorded != lineage:
        check_lineage(params, entries, recorded)
        entries = {}  # nothing was done in the old lineage (check_lineage): it starts over
        changed.append(f"{params.rounds.registry}: lineage {lineage.model} in {lineage.runs_dir}/")
    for r in range(1, (params.rounds.num_rounds if num_rounds is None else num_rounds) + 1):
        if r not in entries:
            entries[r] = RoundEntry(r, params.model.path if r == 1 else str(RoundPaths.of(lineage.runs_dir, r - 1).checkpoint))
            changed.append(f"{params.rounds.registry}: round {r} registered")
    if changed:
        write_registry(params.rounds.registry, entries, lineage)
    text = render(params, present)
    path = Path(dvc_yaml)
    if not path.exists() or path.read_text() != text:
        write_atomic(path, text)
        changed.append(f"{path}: rewritten from the params")
    return changed


def check_lineage(params: Params, entries: dict[int, RoundEntry], recorded: Lineage | None) -> None:
    """Refuse a new model or runs folder under a registry whose rounds have results."""
    if recorded is None:
        return
    done = [r for r in entries if RoundPaths.of(recorded.runs_dir, r).metrics.exists()]
    if not done:
        return
    registry = params.rounds.registry
    what = []
    if params.model.path != recorded.model:
        what.append(f"model.path is {params.model.path}")
    if params.rounds.runs_dir != recorded.runs_dir:
        what.append(f"rounds.runs_dir is {params.rounds.runs_dir}")
    raise PipelineError(
        f"{registry}: its lineage self-trains {recorded.model} in {recorded.runs_dir}/ ({len(done)} round(s) done), "
        f"but {' and '.join(what)}. A lineage never switches models: keep the old params, or start a new lineage "
        f"beside it with -S rounds.registry=<new>.yaml -S rounds.runs_dir=<new dir> (or delete {registry} and "
        f"{recorded.runs_dir}/ to discard the old one)"
    )


def check_current(params: Params, dvc_yaml: str | Path = "dvc.yaml") -> None:
    """Under DVC: the stage definitions must be the ones these params give."""
    lineage = read_lineage(params.rounds.registry)
    if lineage is not None and lineage != Lineage(params.model.path, params.rounds.runs_dir):
        raise PipelineError(
            f"{params.rounds.registry} records the lineage {lineage.model} in {lineage.runs_dir}/, but params.yaml "
            f"says model.path {params.model.path} and rounds.runs_dir {params.rounds.runs_dir}: run `genius pipeline` "
            "(it refuses if rounds of the old lineage are done, and says what to do)"
        )
    path = Path(dvc_yaml)
    if os.environ.get("DVC_STAGE") and path.exists() and path.read_text() != render(params):
        raise PipelineError(f"{path} does not match params.yaml any more: run `genius pipeline`, then `dvc repro` (make repro does both)")
