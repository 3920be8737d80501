"""No import cycles in `prometar`, read from the modules' own import statements (nothing is imported).

Rules of the graph (docs/architecture.md, "Imports"):

* a node is a module (a package is its ``__init__``);
* every ``import`` / ``from ... import`` statement counts, wherever it is: module level, inside functions
  (a deferred import hides a cycle, it does not remove it), classes or ``try`` blocks; relative imports are
  resolved; ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``;
* importing ``a.b.c`` also imports the packages ``a.b`` and ``a`` (Python runs their ``__init__``), except the
  packages that contain the importing module (they are already running);
* not counted: imports under ``if TYPE_CHECKING:`` (never executed), and a package's ``__init__`` importing its
  own submodules (the package's public face; a submodule is always imported after its package).

Two checks: no cycle among modules, and no cycle among the top-level units (``prometar.build``,
``prometar.engine`` with all its modules, ...), so that e.g. ``build`` and ``engine`` meet in one direction.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "prometar"


def _modules(package_dir: Path) -> Dict[str, Path]:
    root = package_dir.parent
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import statements of a module, skipping `if TYPE_CHECKING:` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(package_dir: Path) -> Dict[str, Set[str]]:
    """Module -> the modules of the same package it imports (see the rules above)."""
    modules = _modules(package_dir)
    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        targets: List[str] = []
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
                continue
            if node.level:
                base = here[:len(here) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                targets.append(sub if sub in modules else module)
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                dep = ".".join(parts[:i])
                if dep not in modules or dep == name or name.startswith(dep + "."):
                    continue  # outside the package, itself, or a package containing it
                if is_package and dep.startswith(name + "."):
                    continue  # a package's __init__ importing its own submodules
                graph[name].add(dep)
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one node (Tarjan), each as a sorted list."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def unit_graph(graph: Dict[str, Set[str]]) -> Dict[str, Set[str]]:
    """The graph of top-level units: `prometar.engine.trainer` counts as `prometar.engine`."""
    def unit(name: str) -> str:
        return ".".join(name.split(".")[:2])

    out: Dict[str, Set[str]] = {}
    for a, deps in graph.items():
        out.setdefault(unit(a), set()).update(unit(b) for b in deps if unit(b) != unit(a))
    return out


def _explain(graph: Dict[str, Set[str]], cycles: List[List[str]]) -> str:
    lines = []
    for cycle in cycles:
        members = set(cycle)
        lines.append(" <-> ".join(cycle) + ": " + "; ".join(
            f"{a} -> {b}" for a in cycle for b in sorted(graph[a]) if b in members))
    return "\n".join(lines)


@pytest.fixture(scope="module")
def graph():
    return import_graph(PACKAGE)


def test_the_graph_sees_module_function_and_relative_imports(graph):
    assert "prometar.engine.parts" in graph["prometar.build"]          # module level, relative
    assert "prometar.engine.runner" in graph["prometar.launch"]        # inside a function
    assert "prometar.build" in graph["prometar.launch"]                # `from . import build`
    assert "prometar.engine" in graph["prometar.build"]                # the package of an imported module
    assert "prometar.world.corpus" in graph["prometar.world.pretraining"]


def test_no_import_cycles_between_modules(graph):
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + _explain(graph, cycles)


def test_no_import_cycles_between_top_level_units(graph):
    units = unit_graph(graph)
    cycles = find_cycles(units)
    assert not cycles, "import cycles between parts of prometar:\n" + _explain(units, cycles)


def test_build_and_engine_meet_in_one_direction(graph):
    units = unit_graph(graph)
    assert "prometar.engine" in units["prometar.build"]
    assert "prometar.build" not in units["prometar.engine"]
    assert "prometar.cli" not in units["prometar.demo"] and "prometar.launch" in units["prometar.demo"]


def test_a_cycle_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")  # facade: not an edge
    (pkg / "a.py").write_text("from .sub.b import f\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (pkg / "c.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from .a import x\n"
                              "def g():\n    import pkg.a\n")
    graph = import_graph(pkg)
    assert graph["pkg"] == set()
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert find_cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    (pkg / "c.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from .a import x\n")
    assert find_cycles(import_graph(pkg)) == []
    assert find_cycles(unit_graph(import_graph(pkg))) == []
