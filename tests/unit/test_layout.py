"""The library's layout holds: every sub-package installed, SQL only in db/, the HTTP layer
imported only by web/ and the functions, no import cycles, no module past 400 lines.

These read the source (ast and tokenize), so they need no database."""

from __future__ import annotations

import ast
import io
import re
import tokenize
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "bootfleet"
LIB = ROOT / "lib" / "common" / PACKAGE  # the src layout: lib/common holds the package, which bears its import name
HTTP_MODULES = ("bootfleet.web", "flask", "werkzeug", "functions_framework")
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|SAVEPOINT|"
                 r"pg_(try_)?advisory|CREATE\s+TABLE)\b", re.I | re.S)
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Every module of the library by its import name."""
    found = {}
    for path in sorted(LIB.rglob("*.py")):
        parts = list(path.relative_to(LIB).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([PACKAGE, *parts])] = path
    return found


def imports(path: Path, name: str) -> set[str]:
    """The modules this one imports (at the top or inside functions), resolved to full names."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def test_every_sub_package_is_installed_from_the_folder_that_bears_its_name():
    """pyproject finds the package in lib/common, where it sits under its own name (the src
    layout): no package-dir mapping renames a folder, so `bootfleet.db.nodes` is
    lib/common/bootfleet/db/nodes.py. setuptools' find discovers a folder only if it has an
    __init__.py, so every folder that holds Python files needs one, or the install leaves it out."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools.get("package-dir", {}) in ({}, {"": "lib/common"})
    find = setuptools["packages"]["find"]
    assert find["where"] == ["lib/common"]
    beside = sorted(p.name for p in LIB.parent.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists())
    assert beside == [PACKAGE], "lib/common holds the bootfleet package and nothing importable beside it"

    folders = {path.parent for path in LIB.rglob("*.py")}
    missing = sorted(str(folder.relative_to(ROOT)) for folder in folders if not (folder / "__init__.py").is_file())
    assert missing == [], "add an __init__.py to these folders, or setuptools leaves them out: " + ", ".join(missing)
    from setuptools import find_packages  # what pip install runs, with pyproject's own arguments

    installed = set(find_packages(where=str(ROOT / find["where"][0]), include=find["include"]))
    assert installed == {name for name, path in modules().items() if path.name == "__init__.py"}


def test_sql_lives_only_in_db():
    outside = []
    for name, path in modules().items():
        if name == f"{PACKAGE}.db" or name.startswith(f"{PACKAGE}.db."):
            continue
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if token.type == tokenize.STRING and SQL.search(token.string):
                outside.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {token.string[:60]}")
    assert outside == [], "SQL belongs in lib/common/bootfleet/db/:\n" + "\n".join(outside)


def test_only_web_imports_the_http_layer():
    offenders = []
    for name, path in modules().items():
        if name.startswith(f"{PACKAGE}.web"):
            continue
        for imported in imports(path, name):
            if imported.startswith(HTTP_MODULES):
                offenders.append(f"{name} imports {imported}")
    assert offenders == []


def test_no_import_cycles():
    known = modules()
    graph = {name: {m for m in imports(path, name) if m in known and m != name} for name, path in known.items()}
    cycles, index, low, stack, on_stack, counter = [], {}, {}, [], set(), [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_module_is_too_long():
    long = {str(p.relative_to(ROOT)): n for p in modules().values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these modules (at most {MAX_LINES} lines): {long}"


def test_the_environment_is_read_only_through_settings():
    """Settings are read once, in settings.py; elsewhere the environment is only written
    (bootfleet serve fills it in for gunicorn's workers), or read for a library's own variable."""
    others = {"XDG_RUNTIME_DIR"}  # pgserver keeps its lock file there
    reads = []
    for name, path in modules().items():
        if name == f"{PACKAGE}.settings":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            key = None
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv"):
                key = node.args[0] if node.args else None
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) \
                    and ast.unparse(node.value) == "os.environ":
                key = node.slice
            else:
                continue
            if not (isinstance(key, ast.Constant) and key.value in others):
                reads.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert reads == [], "read settings through bootfleet.settings.Settings:\n" + "\n".join(reads)
