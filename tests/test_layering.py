"""Dependencies point down only: each rxpipe module imports its own layer or lower ones.

The layers, lowest first (a module's layer is that of the longest prefix naming it):

    spec, errors  <  _core  <  stages  <  telemetry  <  engines.base, engines.lowerings
    <  engines.pull, engines.push
    <  engines (its public face)  <  interop  <  pipeline  <  flow  <  fragment  <  testing
    <  rxpipe (__init__)

Every ``import``/``from`` statement counts, wherever it is: at module level or inside a
function (a lazy import is an edge all the same; it only hides from a plain import check).
Imports under ``if TYPE_CHECKING:`` never run; they may not point up either, except the few
listed in :data:`TYPE_ONLY_UPWARD`, each with its reason. The static scan is what checks the
layering: importing any module runs ``rxpipe/__init__.py`` first, which imports everything, so
the order in which modules load says nothing. The subprocess test checks that each module
imports on its own, in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, NamedTuple

import pytest

import rxpipe

PACKAGE: Final = Path(rxpipe.__file__).parent

#: Lowest first; names in one tuple share a layer and may import each other.
LAYERS: Final = (
    ("rxpipe.spec", "rxpipe.errors"),
    ("rxpipe._core",),
    ("rxpipe.stages",),
    ("rxpipe.telemetry",),
    ("rxpipe.engines.base", "rxpipe.engines.lowerings"),
    ("rxpipe.engines.pull", "rxpipe.engines.push"),
    ("rxpipe.engines",),
    ("rxpipe.interop",),
    ("rxpipe.pipeline",),
    ("rxpipe.flow",),
    ("rxpipe.fragment",),
    ("rxpipe.testing",),
    ("rxpipe",),
)

#: Upward imports allowed under ``if TYPE_CHECKING:`` only (they never run): (importer, imported).
TYPE_ONLY_UPWARD: Final = {
    # PipelineCancelledError carries the Report of the run it ended; only the annotation
    # names the class.
    ("rxpipe.errors", "rxpipe.telemetry.report"),
}


class Edge(NamedTuple):
    importer: str
    imported: str
    line: int
    type_only: bool


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: Final = {
    _module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if "__pycache__" not in path.parts
}


def layer(module: str) -> int:
    """The index in :data:`LAYERS` of the longest prefix that names ``module``."""
    best, best_len = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return best


def _is_type_checking(test: ast.expr) -> bool:
    return ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module of a ``from`` import (relative ones resolved)."""
    if node.level == 0:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def edges(module: str) -> list[Edge]:
    """Every rxpipe module ``module`` imports: module level, in functions, under TYPE_CHECKING."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out: list[Edge] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            # ``from pkg import sub`` imports the submodule; ``from pkg import name`` the package
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
                for alias in node.names
            ]
        else:
            targets = []
        for target in targets:
            if target == "rxpipe" or target.startswith("rxpipe."):
                out.append(Edge(module, target, getattr(node, "lineno", 0), type_only))
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(tree, False)
    return out


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer(module)  # raises for a module no layer names


def test_imports_point_down_only() -> None:
    upward = [
        f"{e.importer}:{e.line} imports {e.imported}"
        f"{' (under TYPE_CHECKING)' if e.type_only else ''}: layer {layer(e.importer)} -> "
        f"{layer(e.imported)}"
        for module in MODULES
        for e in edges(module)
        if layer(e.imported) > layer(e.importer)
        and not (e.type_only and (e.importer, e.imported) in TYPE_ONLY_UPWARD)
    ]
    assert upward == [], "upward imports:\n" + "\n".join(upward)


def test_type_only_exceptions_are_still_needed() -> None:
    found = {(e.importer, e.imported) for m in MODULES for e in edges(m) if e.type_only}
    assert found >= TYPE_ONLY_UPWARD, f"stale TYPE_ONLY_UPWARD entries: {TYPE_ONLY_UPWARD - found}"


def test_the_runtime_import_graph_has_no_cycle() -> None:
    """No cycle among the imports that run (module level and lazy), inside a layer too.

    A package's ``__init__`` is not counted as imported by its submodules (Python runs it
    first, whichever module is asked for), only where a module names it.
    """
    graph = {
        m: sorted({e.imported for e in edges(m) if not e.type_only} & MODULES.keys())
        for m in MODULES
    }
    done: set[str] = set()
    path: list[str] = []

    def walk(module: str) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        path.append(module)
        for target in graph[module]:
            walk(target)
        path.pop()
        done.add(module)

    for module in graph:
        walk(module)


def test_the_scan_sees_lazy_and_type_only_imports() -> None:
    """The scanner's own check: a lazy import in a method and a TYPE_CHECKING one are found."""
    found = {(e.imported, e.type_only) for e in edges("rxpipe.flow")}
    assert ("rxpipe.interop.rx", False) in found  # imported inside Flow.from_observable
    assert ("rxpipe.telemetry.report", True) in found


def _import_alone(module: str) -> tuple[str, int, str]:
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return module, proc.returncode, proc.stderr[-2000:]


@pytest.mark.timeout(300)
def test_each_module_imports_alone_in_a_fresh_interpreter() -> None:
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(_import_alone, sorted(MODULES)))
    failed = [f"{module}:\n{err}" for module, code, err in results if code != 0]
    assert failed == [], "\n".join(failed)
