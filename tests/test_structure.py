"""The package's import graph has no cycle, and the library never imports its
command-line entry points (train, cli, sweep, ...): they sit on top of it.

Every import counts, at module level or inside a function: a lazy import
hides a cycle from the interpreter, not from a reader."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pysnn"

# Modules that run a command: the library below them must not import them.
ENTRY_POINTS = {
    "pysnn.train",
    "pysnn.cli",
    "pysnn.__main__",
    "pysnn.sweep",
    "pysnn.evaluate",
    "pysnn.compare",
    "pysnn.export",
    "pysnn.reproduce",
    "pysnn.robustness",  # pysnn reproduce table-4-5
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name `from {'.' * level}{module} import ...` refers to."""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def import_graph(root: Path) -> Dict[str, Set[str]]:
    """Module → the package's modules it imports (a name imported from a
    package is an edge to the submodule when one exists, else to the package)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: Dict[str, Set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = resolve(name, is_package, node.level, node.module) if node.level else node.module or ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in files else base)
            graph[name].update(t for t in targets if t in files and t != name)
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One cycle of `graph` as a list of modules (first == last), or []."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph(PACKAGE))
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_library_modules_do_not_import_entry_points():
    graph = import_graph(PACKAGE)
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module not in ENTRY_POINTS
        for target in targets
        if target in ENTRY_POINTS
    )
    assert not offenders, "; ".join(offenders)


def test_distributed_does_not_import_the_training_script():
    graph = import_graph(PACKAGE)
    for module, targets in graph.items():
        if module.startswith("pysnn.distributed"):
            assert "pysnn.train" not in targets, module


@pytest.mark.parametrize("lazy", [False, True])
def test_the_checker_finds_a_cycle(tmp_path, lazy):
    """The graph sees module-level and function-level imports, relative and absolute."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    body = "def f():\n    from .. import a\n" if lazy else "import pkg.a\n"
    (pkg / "sub" / "b.py").write_text(body)
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    (pkg / "sub" / "b.py").write_text("x = 1\n")
    assert find_cycle(import_graph(pkg)) == []
