"""The package's import graph has no cycles, and every module is small (at most 400 lines).

Imports are read from the source (``ast``), relative ones resolved; a name imported from a package is
followed to the module its ``__init__`` takes it from, so re-exports add no edges of their own. Imports
under ``if TYPE_CHECKING:`` and inside functions count too: they tie the modules together all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import influence_widgets

ROOT = Path(influence_widgets.__file__).parent
PACKAGE = "influence_widgets"
MAX_LINES = 400


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    return files


def imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names imported from it) for each import statement of a module."""
    is_package = path.name == "__init__.py"
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, []) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = name.split(".") if is_package else name.split(".")[:-1]
                if child.level:
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                found.append((target, [alias.name for alias in child.names]))
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def graph() -> dict[str, set[str]]:
    """Edges between the package's modules. A name imported from a package leads to the module its
    ``__init__`` imports it from (a re-export), or to the ``__init__`` itself where it defines the name."""
    files = module_files()
    packages = {name for name, path in files.items() if path.name == "__init__.py"}
    table = {name: imports(name, path) for name, path in files.items()}

    def provider(package: str, symbol: str, seen: frozenset) -> set[str]:
        """The module that ``symbol``, imported from ``package``, comes from."""
        if f"{package}.{symbol}" in files:
            return resolve(f"{package}.{symbol}", [], seen)
        if package in seen:
            return set()
        for target, names in table[package]:
            if target.startswith(PACKAGE) and symbol in names:
                return resolve(target, [symbol], seen | {package})
        return {package}  # defined in the __init__

    def resolve(target: str, names: list[str], seen: frozenset = frozenset()) -> set[str]:
        if target not in files:
            return set()
        if target not in packages or not names:
            return {target}
        return set().union(*(provider(target, symbol, seen) for symbol in names))

    edges: dict[str, set[str]] = {}
    for name, statements in table.items():
        targets: set[str] = set()
        for target, names in statements:
            if target.startswith(PACKAGE):
                targets |= resolve(target, names)
        edges[name] = targets - {name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def test_no_module_of_the_package_imports_itself_through_others():
    edges = graph()
    assert "influence_widgets.core.curvature.operator" in edges["influence_widgets.core.explainer"]
    assert cycles(edges) == []


def test_a_cycle_is_found_where_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_every_module_is_small():
    lengths = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in ROOT.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
