"""The code's shape, as issue 11 asked for it: short modules, no import cycle inside a service,
and no service importing another (shared code lives in common/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p for p in (ROOT / "services").glob("*/photocraft_*") if p.is_dir())
MAX_LINES = 250


def imports(module: Path, package: Path) -> set[str]:
    """The modules of ``package`` that ``module`` imports, by module name (e.g. ``plan``)."""
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == package.name:
                found.add(node.module.split(".")[1] if "." in node.module else "__init__")
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith(package.name + "."))
    names = {p.stem for p in package.glob("*.py")}
    return found & names


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_module_of_a_service_is_long(package):
    long = {p.name: n for p in package.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_import_cycle_inside_a_service(package):
    graph = {p.stem: imports(p, package) - {p.stem} for p in package.glob("*.py")}
    assert cycle(graph) is None


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_service_imports_another(package):
    others = {p.name for p in PACKAGES} - {package.name}
    for module in package.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert not {n.split(".")[0] for n in names} & others, f"{module.relative_to(ROOT)} imports {names}"
