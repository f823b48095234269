"""The import graph of facturasd/ read from the source (STYLE.md: imports flow one way).

Modules are found by walking the folder, so a module or package added or moved is covered
without naming it here. Every import statement counts, at module level or inside a function
(a function's import runs the first time it is called, and a cycle there fails then), and so
do those under `if TYPE_CHECKING:`: a type named across a cycle is a dependency running both
ways all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import facturasd

ROOT = Path(facturasd.__file__).parent
# (doctor: the `doctor` command's checks, which look at the daemon's lock as check-config does.)
ENTRY_POINTS = {"facturasd.cli", "facturasd.__main__", "facturasd.doctor"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ["facturasd", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _import_nodes(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement under `node`."""
    return [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The facturasd modules an import statement runs, packages included."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        # `from a import b` runs a.b when b is a module, else it only needs a.
        names = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
            for alias in node.names
        ]
    targets = set()
    for name in names:
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            # Importing a.b.c runs the packages a and a.b first; those that hold `module`
            # itself are already running when it imports anything, so they are no edge.
            target = ".".join(parts[:depth])
            if target in MODULES and not (module == target or module.startswith(f"{target}.")):
                targets.add(target)
    return targets


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module] = {t for node in _import_nodes(tree) for t in _targets(module, node)}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, …, a], or None."""
    done: set[str] = set()
    for start in sorted(graph):
        path: list[str] = []
        on_path: set[str] = set()
        stack = [(start, iter(sorted(graph[start])))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
                on_path.add(child)
        done.add(start)
    return None


def test_the_walk_sees_the_imports() -> None:
    """Guards the test itself: a walk that found nothing would pass everything."""
    graph = _graph()
    assert "facturasd.checks.company" in graph["facturasd.config.sections"]
    assert "facturasd.checks" in graph["facturasd.config.sections"]  # the package runs first
    assert "facturasd.daemon" in graph["facturasd.cli"]  # imported inside a function
    source = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from facturasd.daemon import Daemon\n"
        "else:\n    import facturasd.clock\n"
        "def f():\n    from facturasd.store import db\n"
    )
    assert {t for node in _import_nodes(source) for t in _targets("facturasd.cli", node)} == {
        "facturasd.daemon",
        "facturasd.clock",
        "facturasd.store",
        "facturasd.store.db",
    }


def test_no_import_cycle_in_facturasd() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_nothing_imports_the_daemon_or_the_cli() -> None:
    importers = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if module not in ENTRY_POINTS
        for target in targets & {"facturasd.daemon", "facturasd.cli"}
    )
    assert not importers, "; ".join(importers)
