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


# ---------------------------------------------------------------------------- the round layout

from genius.layout import RoundPaths, RunsPaths  # noqa: E402

CODE = [p for d in ("genius", "tasks", "flows", "bench") for p in (ROOT / d).rglob("*.py") if p.name != "layout.py"]
# The toy's own folder (runs/toy/) is not a round: its pool file shares a round's file name.
TOY_LAYOUT = {(path, "queries.jsonl") for path in ("genius/toy/build.py", "genius/config/sections.py", "bench/sampling.py")}


def layout_names() -> set[str]:
    """Every file and folder name RoundPaths and RunsPaths give."""
    names = set()
    for paths in (RoundPaths(Path("x")), RunsPaths(Path("x"))):
        names |= {getattr(paths, name).name for name, v in vars(type(paths)).items() if isinstance(v, property)}
    return names


def strings(tree: ast.AST):
    """(node, text) of every string constant but docstrings; f-strings as their constant pieces with `{}` between."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    inside_fstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inside_fstrings |= {id(v) for v in node.values}
            yield node, "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | inside_fstrings:
            yield node, node.value


def test_no_round_path_literal_outside_roundpaths():
    """`r{k}`-style names and a round's file names are spelled in genius/layout.py only."""
    names = layout_names()
    round_name = re.compile(r"(^|[\s/@])r\{")  # f"r{r}", "runs/r{k}/...", f"sample@r{r}", a template "sample r{r}"
    found = []
    for path in CODE:
        where = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text())
        divided = {id(n.right) for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div)}
        for node, text in strings(tree):
            named = {n for n in names if ("." in n and (text == n or text.endswith("/" + n))) or (text == n and id(node) in divided)}
            named -= {n for w, n in TOY_LAYOUT if w == where}
            if round_name.search(text) or named:
                found.append(f"{where}:{node.lineno}: {text!r}")
    assert not found, "a round's path spelled outside genius/layout.py (use RoundPaths, RunsPaths, round_name):\n" + "\n".join(found)


def test_flows_and_tasks_have_no_import_cycle():
    modules = {module_name(p): p for d in ("flows", "tasks") for p in (ROOT / d).rglob("*.py")}
    graph = {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}
    for path in (ROOT / "flows").rglob("*.py"):  # imports inside functions count: a circle is a circle
        assert module_name(path) in graph
    done, stack = set(), []

    def visit(node):
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node) :] + [node]))
        if node not in done:
            stack.append(node)
            for nxt in graph[node]:
                visit(nxt)
            stack.pop()
            done.add(node)

    for node in graph:
        visit(node)
