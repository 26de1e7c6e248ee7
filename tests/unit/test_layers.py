"""The package's layering, checked on the real import graph (grimp, import-linter's own).

- No import cycle between any two modules of `dr` (function-level imports count too:
  a lazy import hides a cycle from Python, not from the design).
- The import-linter contracts in pyproject.toml (layers; only dr.vault.connection
  imports requests/urllib3; nothing imports hvac) hold. .ci/run runs `lint-imports`
  as well; this test makes the suite fail on its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[2]


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.find_modules_directly_imported_by(node) & modules):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def _leaf_modules(graph: grimp.ImportGraph) -> set[str]:
    # Packages' __init__ modules are left out: `dr` itself only holds the version.
    return {m for m in graph.modules if m.startswith("dr.") and not graph.find_children(m)}


def test_no_import_cycles() -> None:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    graph = grimp.build_graph("dr")
    assert _cycles(graph, _leaf_modules(graph)) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("dr.a", "dr.b", "dr.c"):
        graph.add_module(name)
    graph.add_import(importer="dr.a", imported="dr.b")
    graph.add_import(importer="dr.b", imported="dr.a")
    graph.add_import(importer="dr.b", imported="dr.c")
    assert _cycles(graph, {"dr.a", "dr.b", "dr.c"}) == [["dr.a", "dr.b"]]


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run(
        [str(lint), "--config", str(REPO / "pyproject.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout
