"""One typed config, loaded once: `params.yaml` -> `Params`.

Every stage reads its own section. Entry points (the CLI, the Prefect flow) call
`load_params` once and pass the result down; nothing deeper in the library opens the file.
An unknown key, a missing section or a bad value fails at load time with the file, the
key's dotted path and, where YAML knows it, the line. The sections themselves, with every
key documented: genius/config/sections.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from genius.config.sections import (
    SPEED_ONLY,
    ConfigError,
    EvalConfig,
    GrpoConfig,
    MethodConfig,
    ModelConfig,
    OrchestrationConfig,
    Params,
    QueriesConfig,
    RoundsConfig,
    SamplingConfig,
    ToyConfig,
    TrackingConfig,
    TrainingConfig,
)

__all__ = [
    "SPEED_ONLY", "ConfigError", "EvalConfig", "GrpoConfig", "MethodConfig", "ModelConfig", "OrchestrationConfig", "Params",
    "QueriesConfig", "RoundsConfig", "SamplingConfig", "ToyConfig", "TrackingConfig", "TrainingConfig",
    "load_params", "read_yaml", "validate", "write_overrides",
]  # fmt: skip

M = TypeVar("M", bound=BaseModel)


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | list[str] | None = None) -> Params:
    """Read, override and validate a params file.

    `overrides` maps dotted keys to values (`{"sampling.tau": 0.05}`) or is a list of
    `key=value` strings whose values are parsed as YAML (`["rounds.num_rounds=1"]`).
    """
    path = Path(path)
    data, lines = read_yaml(path, "params file")
    if data is None:
        raise ConfigError(f"{path}: empty params file (copy the project's params.yaml and edit it)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    missing = [name for name, field in Params.model_fields.items() if field.is_required() and name not in data]
    if missing:
        raise ConfigError(f"{path}: missing section(s) {', '.join(missing)} (every section of params.yaml is required)")
    data = {k: {} if v is None else v for k, v in data.items()}  # a section with every key commented out: defaults
    for key, value in _parse_overrides(overrides).items():
        _set_dotted(data, key, value, path)
    return validate(Params, data, path, lines)


def write_overrides(path: str | Path, overrides: dict[str, Any] | list[str]) -> Params:
    """Apply overrides to the params file itself, comments kept, after validating them.

    For pipelines that read the file (DVC stages): what ran is then what the file says,
    as with `dvc exp run -S`.
    """
    from ruamel.yaml import YAML  # round-trip YAML keeps the file's comments and order
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    def quoted(value):  # ruamel writes YAML 1.2 plain scalars that PyYAML (1.1) may not read back: `a?b=1` in [...]
        if isinstance(value, str):
            return DoubleQuotedScalarString(value)
        return [quoted(v) for v in value] if isinstance(value, list) else value

    params = load_params(path, overrides)  # refuse bad overrides before touching the file
    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    data = yaml_rt.load(Path(path).read_text())
    for key, value in _parse_overrides(overrides).items():
        _set_dotted(data, key, quoted(value), Path(path))
    with open(path, "w") as f:
        yaml_rt.dump(data, f)
    return params


def _parse_overrides(overrides) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. sampling.tau=0.05")
        parsed[key.strip()] = yaml.safe_load(raw)
    return parsed


def _set_dotted(data: dict, key: str, value: Any, path: Path) -> None:
    *parents, leaf = key.split(".")
    for p in parents:
        data = data.setdefault(p, {})
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: override {key}: {p} is not a section")
    data[leaf] = value


def read_yaml(path: Path, what: str) -> tuple[Any, dict[str, int]]:
    """A YAML file's data and the line of each of its dotted keys; a key written twice is an error."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {what}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte 0x{raw[e.start]:02x}): save the {what} as UTF-8") from None
    try:
        return yaml.safe_load(text), _line_numbers(yaml.compose(text), path=path)
    except yaml.YAMLError as e:  # PyYAML's message spans lines and names "<unicode string>": one line here
        mark, context = getattr(e, "problem_mark", None), getattr(e, "context", None)
        said = getattr(e, "problem", None) or "cannot be parsed"
        if context and getattr(e, "context_mark", None):
            said += f" ({context} at line {e.context_mark.line + 1})"
        raise ConfigError(f"{path}{f':{mark.line + 1}' if mark else ''}: not valid YAML: {said}") from None


def _line_numbers(node, prefix: str = "", path: Path | None = None) -> dict[str, int]:
    """Dotted key -> 1-based line, from a composed YAML node tree; a key written twice is an error.

    YAML loaders keep the last of two equal keys silently; a params file must not.
    """
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            dotted = f"{prefix}{k.value}"
            if dotted in lines:
                raise ConfigError(f"{path}:{k.start_mark.line + 1}: {dotted}: written twice (first at line {lines[dotted]})")
            lines[dotted] = k.start_mark.line + 1
            lines.update(_line_numbers(v, dotted + ".", path))
    return lines


# pydantic's error types in the words of Genius's messages; {...}: the error's context
_SAID = {
    "greater_than": "must be > {gt:g}",
    "greater_than_equal": "must be >= {ge:g}",
    "less_than": "must be < {lt:g}",
    "less_than_equal": "must be <= {le:g}",
    "literal_error": "must be one of {expected}",
    "finite_number": "must be a finite number",
    "string_too_short": "must not be empty",  # min_length=1, the only length bound here
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "too_short": "must have at least {min_length} item(s)",
    "dict_type": "expected a mapping",
    "model_type": "expected a section (a mapping)",
}


def validate(model: type[M], data: Any, path: Path, lines: dict[str, int], prefix: tuple = ()) -> M:
    """`model` from `data`, or its first error as one line: `file:line: dotted.key: what is wrong`.

    `lines`: from `read_yaml`; `prefix`: the keys above `data` in the file.
    """
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False)
    kind, loc, ctx = errors[0]["type"], errors[0]["loc"], dict(errors[0].get("ctx", {}))
    if isinstance(ctx.get("error"), ConfigError):  # a check across keys: its message names them
        raise ConfigError(f"{path}: {ctx['error']}") from None
    line = lines.get(".".join(str(k) for k in (*prefix, *loc) if not isinstance(k, int)))  # a list item: the list's
    if kind == "extra_forbidden":  # every unknown key of the section, at the first one's line
        unknown = [e["loc"][-1] for e in errors if e["type"] == kind and e["loc"][:-1] == loc[:-1]]
        loc = loc[:-1]
        for key in loc:
            model = _section_type(model.model_fields[key].annotation)
        said = f"unknown keys {unknown} (known: {', '.join(f.alias or k for k, f in model.model_fields.items())})"
    else:
        if "expected" in ctx:  # "'a', 'b' or 'c'" -> "'a', 'b', 'c'"
            ctx["expected"] = ", ".join(ctx["expected"].rsplit(" or ", 1))
        said = _SAID[kind].format(**ctx) if kind in _SAID else errors[0]["msg"]
        said += "" if kind == "missing" else f", got {errors[0]['input']!r}"
    key = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in (*prefix, *loc)).lstrip(".")
    raise ConfigError(f"{path}{f':{line}' if line else ''}: {f'{key}: ' if key else ''}{said}") from None


def _section_type(annotation):
    """The section model behind a field's annotation: `GrpoConfig | None` -> GrpoConfig."""
    members = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    return members[0] if members else annotation
