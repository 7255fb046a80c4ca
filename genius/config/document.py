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

from genius.config.sections import Params

COLUMN = 32  # where the comments start
SECTION = re.compile(r"^(\w+):(\s*#.*)?$")
KEY = re.compile(r"^  (\w+): (.*?)(\s+#.*)?$")


def descriptions() -> dict[str, str]:
    """`section` and `section.key` -> its text in the schema."""
    out = {}
    for name, field in Params.model_fields.items():
        section = field.annotation
        doc = (section.__doc__ or "").strip().rstrip(".")
        first = doc.split(" ", 1)[0]
        out[name] = doc if any(c.isupper() for c in first[1:]) else doc[:1].lower() + doc[1:]  # a name keeps its capitals
        out |= {f"{name}.{key}": f.description or "" for key, f in section.model_fields.items()}
    return out


def _commented(code: str, text: str) -> str:
    return f"{code:<{COLUMN - 2}}  # {text}" if text else code


def document(text: str) -> str:
    """The params file's text with the schema's description as every section's and key's comment."""
    docs, section, lines = descriptions(), None, []
    for line in text.splitlines():
        if found := SECTION.match(line):
            section = found[1]
            line = _commented(f"{section}:", docs.get(section, ""))
        elif section and (found := KEY.match(line)) and f"{section}.{found[1]}" in docs:
            line = _commented(f"  {found[1]}: {found[2]}", docs[f"{section}.{found[1]}"])
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
