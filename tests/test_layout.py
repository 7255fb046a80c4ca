"""README's layout table names every module of the library where it lives, and the layers
import in one direction: no module imports Prefect, DVC or Ray, and no import cycle."""

import ast
import re
from pathlib import Path

from conftest import ROOT

LIBRARY = ROOT / "genius"


def layout_rows() -> dict[str, set[str]]:
    """README's layout table: folder -> the `names` its row gives."""
    text = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(genius/[a-z_/]*)` \| (.*) \|$", text, re.M)
    return {folder.rstrip("/"): set(re.findall(r"`([a-z_]+)`", what)) for folder, what in rows}


def test_readme_layout_names_every_module_where_it_lives():
    rows = layout_rows()
    for path in LIBRARY.rglob("*.py"):
        if path.name in ("__init__.py", "__main__.py") or path.parent.name == "toy":
            continue
        folder = str(path.parent.relative_to(ROOT))
        assert path.stem in rows.get(folder, set()), f"README's layout table does not list {path.relative_to(ROOT)}"
    for folder, names in rows.items():
        for name in names - {"genius", "toy"}:
            listed = (ROOT / folder / f"{name}.py").exists() or (ROOT / folder / name).is_dir()
            assert listed or not re.fullmatch(r"[a-z_]+", name) or name in {"accelerate", "dvc"}, f"{folder}: no module {name}"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_library_imports_no_orchestrator_and_has_no_cycle():
    modules = {module_name(p): p for p in LIBRARY.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = imports(path)
        assert not {m.split(".")[0] for m in found} & {"prefect", "dvc", "ray", "flows", "tasks"}, name
        graph[name] = {m for m in found if m in modules and m != name}
    done, stack = set(), []

    def visit(node):
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node) :] + [node]))
        if node not in done:
            stack.append(node)
            for nxt in graph[node]:
                if nxt != "genius":  # `from genius.x import y` also names the package itself
                    visit(nxt)
            stack.pop()
            done.add(node)

    for node in graph:
        visit(node)
