"""The package import graph: no cycle between bratsx's packages, lazy (function-level) imports included, and no
arrow from the runtime up into the trainer.

Every module of the package is parsed (found by walking it, not from a list) and every import statement in it
is followed, wherever it stands: at module level, inside a function, under ``if TYPE_CHECKING``. A node is a
subpackage (``bratsx.runtime``) or a top-level module (``bratsx.imageio``); an edge ``a -> b`` means some module
of ``a`` imports some module of ``b``. A check that looked at module-level imports alone would miss a cycle
closed by a lazy import, which is how ``runtime -> trainer -> runtime`` once went unseen.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import pkgutil
from collections.abc import Iterable
from pathlib import Path

import bratsx

#: Arrows that must never exist: (importer, imported).
FORBIDDEN = {("bratsx.runtime", "bratsx.trainer"), ("bratsx.network", "bratsx.trainer"),
             ("bratsx.network", "bratsx.runtime")}


def all_modules() -> dict[str, Path]:
    """Every module of the package, by name, with its source file."""
    modules = {"bratsx": Path(bratsx.__file__)}
    for info in pkgutil.walk_packages(bratsx.__path__, "bratsx."):
        modules[info.name] = Path(importlib.util.find_spec(info.name).origin)
    return modules


def node_of(module: str) -> str:
    """The graph node a module belongs to: its subpackage, or itself for a top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2])


def imported_modules(name: str, path: Path, source: str) -> set[str]:
    """The bratsx modules ``name`` imports anywhere in its source (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import x` names a module
    return {m for m in found if m == "bratsx" or m.startswith("bratsx.")}


def package_graph(sources: dict[str, tuple[Path, str]]) -> dict[str, set[str]]:
    """Edges between nodes (see the module docstring) of the given modules' sources."""
    modules = set(sources)
    graph: dict[str, set[str]] = {node_of(m): set() for m in modules}
    for name, (path, source) in sources.items():
        for target in imported_modules(name, path, source):
            while target not in modules and "." in target:  # `from x import name`: name may be an attribute
                target = target.rpartition(".")[0]
            if node_of(target) != node_of(name) and target != "bratsx":
                graph[node_of(name)].add(node_of(target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def forbidden_arrows(graph: dict[str, set[str]], forbidden: Iterable[tuple[str, str]] = FORBIDDEN) -> list[str]:
    return [f"{a} -> {b}" for a, b in sorted(forbidden) if b in graph.get(a, set())]


@functools.cache
def _read_package() -> tuple[tuple[str, Path, str], ...]:
    return tuple((name, path, path.read_text()) for name, path in all_modules().items())


def package_sources() -> dict[str, tuple[Path, str]]:
    """Every module's path and source (a fresh dict: a test may plant a module in it)."""
    return {name: (path, source) for name, path, source in _read_package()}


def test_the_walk_finds_every_package_of_the_graph():
    graph = package_graph(package_sources())
    for node in ("bratsx.runtime", "bratsx.trainer", "bratsx.network", "bratsx.serve", "bratsx.cli", "bratsx.imageio"):
        assert node in graph
    assert "bratsx.network" in graph["bratsx.runtime"] and "bratsx.network" in graph["bratsx.trainer"]


def test_no_cycle_between_packages_lazy_imports_included():
    assert cycles(package_graph(package_sources())) == []


def test_no_arrow_from_the_runtime_up_into_the_trainer():
    assert forbidden_arrows(package_graph(package_sources())) == []


def test_a_planted_function_level_import_of_the_trainer_in_the_runtime_fails_both_checks():
    sources = package_sources()
    planted = ('"""A runtime module with a mistake."""\n\n\ndef lazy():\n    import bratsx.trainer\n\n'
               '    return bratsx.trainer\n')
    sources["bratsx.runtime.planted"] = (Path("bratsx/runtime/planted.py"), planted)
    graph = package_graph(sources)
    assert "bratsx.runtime -> bratsx.trainer" in forbidden_arrows(graph)
    assert any({"bratsx.runtime", "bratsx.trainer"} <= set(cycle) for cycle in cycles(graph))  # trainer uses tiling


def test_a_planted_relative_lazy_import_is_resolved_too():
    sources = package_sources()
    planted = 'def lazy():\n    from ..trainer.loop import train\n\n    return train\n'
    sources["bratsx.runtime.planted"] = (Path("bratsx/runtime/planted.py"), planted)
    assert "bratsx.runtime -> bratsx.trainer" in forbidden_arrows(package_graph(sources))
