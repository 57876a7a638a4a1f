"""The package's shape: imports run one way down the data flow, with no import circles.

The layers, top to bottom: the entry points (``definitions``, ``cli``, ``demo``), ``orchestration``
(Dagster wiring), ``sync`` (planning and running), ``connectors`` and ``shaping`` (transforms and
rules around a source stream), and at the bottom ``config``,
``types`` and ``errors``. A module may import its own layer or any layer below it, never one above.
Every import counts, including those inside functions and under ``TYPE_CHECKING``: a lazy import
is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sync_assets"

LAYER_RANK = {
    "errors": 0, "types": 0,
    "config": 1,
    "connectors": 2, "shaping": 2,
    "sync": 3, "verify": 3,
    "orchestration": 4,
    "definitions": 5, "demo": 5,
    "cli": 6,
}
"""Higher ranks may import lower ones. ``demo`` is its own code location on top of the product's
wiring; the CLI starts the demo, so it sits above it."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "package"


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every ``sync_assets`` module ``path`` imports (``from a import b`` counts ``a.b`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("sync_assets")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("sync_assets"):
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(paths)
    return {name: {m for m in imported_modules(path, known) if m != name} for name, path in paths.items()}


def test_every_module_belongs_to_a_layer():
    unplaced = sorted(m for m in import_graph() if layer_of(m) not in LAYER_RANK and m != "sync_assets")
    assert not unplaced, f"modules outside every layer (add them to a layer folder): {unplaced}"


def test_imports_never_go_up_a_layer():
    upward = sorted(
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in import_graph().items() if module != "sync_assets"
        for target in targets
        if layer_of(target) in LAYER_RANK and LAYER_RANK[layer_of(target)] > LAYER_RANK[layer_of(module)]
    )
    assert not upward, "imports against the data flow:\n" + "\n".join(upward)


def test_there_are_no_import_circles():
    graph = import_graph()
    graph = {
        module: {t for t in targets if t in graph and not graph_parent(t, module)} for module, targets in graph.items()
    }
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def graph_parent(target: str, module: str) -> bool:
    """A package ``__init__`` that ``module`` lives in: importing ``a.b.c`` runs ``a.b`` first, which is no circle."""
    return module.startswith(target + ".")


def test_the_product_definitions_never_import_the_demo():
    graph = import_graph()
    reachable, todo = set(), ["sync_assets.definitions"]
    while todo:
        module = todo.pop()
        if module not in reachable:
            reachable.add(module)
            todo += [t for t in graph.get(module, ()) if t in graph]
    assert not sorted(m for m in reachable if layer_of(m) == "demo")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_every_module_says_what_it_owns(path):
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no module docstring"
