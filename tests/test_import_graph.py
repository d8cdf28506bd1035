"""The package's shape: no import cycles, and every import allowed by jobnode.LAYERS.

Imports are read with `ast` (nothing is executed), at every depth: module level, inside
functions and under TYPE_CHECKING, because each is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import jobnode
from jobnode import LAYERS, MODULE_LAYERS

ROOT = Path(jobnode.__file__).parent
REPO = ROOT.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


MODULES = modules()


def imported(path: Path) -> set[str]:
    """The modules of jobnode and tools one file imports (a `from pkg import name` that names
    a submodule counts as importing that submodule)."""
    tree = ast.parse(path.read_text(), str(path))
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return {name for name in found if name.split(".")[0] in ("jobnode", "tools")}


GRAPH = {name: imported(path) - {name} for name, path in MODULES.items()}


def layer_of(module: str) -> str | None:
    """The layer a jobnode module belongs to; None for the package root (it holds only the table)."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return MODULE_LAYERS.get(parts[1], parts[1])


def test_every_package_and_top_level_module_has_a_layer() -> None:
    unknown = sorted({m for m in MODULES if layer_of(m) is not None and layer_of(m) not in LAYERS})
    assert not unknown, f"modules outside every layer of jobnode.LAYERS: {unknown}"


def test_the_layer_table_itself_has_no_cycle() -> None:
    order: list[str] = []
    visiting: set[str] = set()

    def visit(layer: str, trail: tuple[str, ...]) -> None:
        assert layer not in visiting, f"jobnode.LAYERS has a cycle: {' -> '.join((*trail, layer))}"
        if layer in order:
            return
        visiting.add(layer)
        for lower in LAYERS[layer]:
            visit(lower, (*trail, layer))
        visiting.discard(layer)
        order.append(layer)

    for layer in LAYERS:
        visit(layer, ())


def test_every_import_follows_the_layer_table() -> None:
    broken = []
    for module, targets in GRAPH.items():
        source = layer_of(module)
        for target in targets:
            if target.startswith("tools"):
                broken.append(f"{module} imports {target}: jobnode never imports tools/")
                continue
            goal = layer_of(target)
            if source is None or goal is None or goal == source:
                continue
            if goal not in LAYERS[source]:
                broken.append(f"{module} ({source}) imports {target} ({goal})")
    assert not broken, "imports against jobnode.LAYERS:\n  " + "\n  ".join(sorted(broken))


def test_no_module_import_cycles() -> None:
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH.get(module, ())):
            if target not in MODULES:
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


@pytest.mark.parametrize("banned", ["arq", "celery", "dramatiq", "saq"])
def test_no_peer_queue_library_is_imported_by_the_runtime(banned: str) -> None:
    users = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(name.split(".")[0] == banned for name in names):
                users.append(module)
    assert not users, f"{banned} imported under jobnode/: {users}"


def closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in seen or module not in MODULES:
            continue
        seen.add(module)
        todo.extend(GRAPH[module])
    return seen


def module_level_imports(module: str) -> set[str]:
    """Imports executed when the module loads (not those inside functions or TYPE_CHECKING)."""
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES)
    return {m for m in found if m in MODULES}


def test_serving_a_node_never_loads_the_dev_tooling() -> None:
    """What `jobnode serve` loads (the node and everything it imports) has none of jobnode.dev."""
    loaded, todo = set(), ["jobnode.node", "jobnode.cli.serve"] if "jobnode.cli.serve" in MODULES else ["jobnode.node"]
    while todo:
        module = todo.pop()
        if module in loaded:
            continue
        loaded.add(module)
        todo.extend(module_level_imports(module))
    assert not sorted(m for m in loaded if m.startswith("jobnode.dev")), sorted(loaded)


def test_the_runtime_package_is_no_flat_floor() -> None:
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top) <= 10, top
