"""The package layout: imports between packages point one way, and only the entry points
import the top-level ``api`` and ``config``.

Every module under ``src/aurl`` is read with ``ast`` (imports inside functions count; those
under ``if TYPE_CHECKING:`` do not) and mapped to its top-level package: ``aurl.data.windows``
belongs to ``data``, the module ``aurl.paths`` to ``paths``.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "aurl"
ENTRY_POINTS = {"cli", "serve"}  # the only packages that may import `api` and `config`
TOP_LEVEL = {"api", "config"}


def _package(module: str) -> str:
    """``aurl.data.windows`` -> ``data``; ``aurl`` itself -> ``aurl``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _from_aurl(name: str) -> str:
    """The module that ``from aurl import name`` reads: ``aurl.name`` where that is a module
    (``from aurl import api``), else ``aurl`` itself (``from aurl import __version__``)."""
    is_module = (SRC / name).is_dir() or (SRC / f"{name}.py").is_file()
    return f"aurl.{name}" if is_module else "aurl"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The aurl modules that ``module`` imports anywhere except under ``if TYPE_CHECKING:``."""
    found: set[str] = set()
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo += node.orelse
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            found |= {_from_aurl(a.name) for a in node.names} if base == "aurl" else {base}
        todo += ast.iter_child_nodes(node)
    return {m for m in found if m == "aurl" or m.startswith("aurl.")}


def _imports() -> dict[str, set[str]]:
    """Every aurl module under src, with the aurl modules it imports."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        out[module] = _imported(tree, module, path.name == "__init__.py")
    return out


def _package_graph(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in imports.items():
        here = _package(module)
        graph.setdefault(here, set())
        graph[here] |= {_package(t) for t in targets} - {here}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, str] = {}  # "open" while on the current path, then "done"
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_reader_sees_imports_inside_functions_but_not_type_checking_ones():
    code = (
        "from typing import TYPE_CHECKING\n"
        "from aurl.tokens import Tokenizer\n"
        "if TYPE_CHECKING:\n"
        "    from aurl.api import Generator\n"
        "def f():\n"
        "    from aurl import paths\n"
        "    import aurl.midi.read\n"
        "    from . import notes\n"
        "    from .. import __version__\n"
    )
    found = _imported(ast.parse(code), "aurl.evaluate.run", is_package=False)
    assert found == {"aurl", "aurl.tokens", "aurl.paths", "aurl.midi.read", "aurl.evaluate"}
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _find_cycle(graph) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_packages_import_each_other_without_cycles():
    cycle = _find_cycle(_package_graph(_imports()))
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


def test_only_entry_points_import_api_and_config():
    imports = _imports()
    bad = sorted(
        f"{module} imports {target}"
        for module, targets in imports.items()
        for target in targets
        if _package(target) in TOP_LEVEL and _package(module) not in ENTRY_POINTS
    )
    assert not bad, "\n".join(bad)
