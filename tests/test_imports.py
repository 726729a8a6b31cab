"""No import cycles inside the package: every import of a shufflekernels module by another, at module
level and inside functions alike (a lazy import is still a dependency), read from the source."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "shufflekernels"
# Compiled modules (setup.py builds them; a fresh clone has no file for them): leaves, imported by name.
EXTENSION_MODULES = {"shufflekernels._C"}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports, anywhere in its source."""
    modules = {_module_name(p, root): p for p in root.rglob("*.py")}
    leaves = {name for name in EXTENSION_MODULES if name.partition(".")[0] == root.name}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from . import x` imports the module x when there is one, else a name of the package.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules.keys() | leaves else base
                           for alias in node.names]  # fmt: skip
            for target in targets:
                if target in leaves:
                    continue
                while target and target not in modules:  # `import a.b.c` depends on the module it names
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert "shufflekernels.registry" in graph and graph["shufflekernels.ops"], "the walker sees no imports"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_leaf_modules_stay_leaves():
    # The contract is shared by every layer, so it may import nothing of the package.
    assert import_graph(PACKAGE)["shufflekernels.contract"] == set()


def test_a_cycle_is_found(tmp_path):
    # The walker itself: a lazy import inside a function closes a cycle as surely as a module-level one.
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("import os\nfrom .. import a\n")
    cycle = find_cycle(import_graph(pkg))
    assert cycle is not None and set(cycle) == {"pkg.a", "pkg.b", "pkg.sub.c"}
    (pkg / "sub" / "c.py").write_text("from .. import b\n")
    assert find_cycle(import_graph(pkg)) == ["pkg.b", "pkg.sub.c", "pkg.b"]
    (pkg / "b.py").write_text("x = 1\n")
    assert find_cycle(import_graph(pkg)) is None
