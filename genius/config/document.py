"""params.yaml's comments, written from the schema: each key is documented once, in sections.py.

Every section's docstring and every key's `description` (genius/config/sections.py) become
the comment beside it in the params file, at column 32; values and the file's other lines
are kept as they are. tests/test_config.py fails when params.yaml's comments and the schema
disagree; this rewrites them:

    python -m genius.config.document [params.yaml]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic import BaseModel

from genius.config.sections import Params

COLUMN = 32  # where the comments start
SECTION = re.compile(r"^(\w+):(\s*#.*)?$")
KEY = re.compile(r"^((?:  )+)(\w+):(?: (.*?))?(\s+#.*)?$")  # a key at any depth (rounds.keep.last), two spaces a level


def descriptions() -> dict[str, str]:
    """`section` and `section.key` -> its text in the schema."""
    out = {}
    for name, field in Params.model_fields.items():
        section = field.annotation
        doc = (section.__doc__ or "").strip().rstrip(".")
        first = doc.split(" ", 1)[0]
        out[name] = doc if any(c.isupper() for c in first[1:]) else doc[:1].lower() + doc[1:]  # a name keeps its capitals
        out |= _keys(name, section)
    return out


def _keys(prefix: str, section) -> dict[str, str]:
    """`prefix.key` -> its description, and the keys of a section nested in it (rounds.keep.last)."""
    out = {}
    for key, f in section.model_fields.items():
        out[f"{prefix}.{key}"] = f.description or ""
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
            out |= _keys(f"{prefix}.{key}", f.annotation)
    return out


def _commented(code: str, text: str) -> str:
    return f"{code:<{COLUMN - 2}}  # {text}" if text else code


def document(text: str) -> str:
    """The params file's text with the schema's description as every section's and key's comment."""
    docs, keys, lines = descriptions(), [], []  # keys: the path to the line's key, a name per level
    for line in text.splitlines():
        if found := SECTION.match(line):
            keys = [found[1]]
            line = _commented(f"{found[1]}:", docs.get(found[1], ""))
        elif keys and (found := KEY.match(line)):
            indent, key, value = found[1], found[2], found[3]
            keys = keys[: len(indent) // 2] + [key]
            if ".".join(keys) in docs:
                line = _commented(f"{indent}{key}:" + (f" {value}" if value else ""), docs[".".join(keys)])
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    path = Path((argv if argv is not None else sys.argv[1:] or ["params.yaml"])[0])
    before = path.read_text()
    after = document(before)
    if after != before:
        path.write_text(after)
        print(f"{path}: comments rewritten from genius/config/sections.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
