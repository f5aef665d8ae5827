"""The package order (issue 39, item 3): import-linter's contracts from pyproject.toml hold, and no
two of ripple's subpackages import each other, function-level imports included (grimp reads every
import statement)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold():
    pytest.importorskip("importlinter")
    res = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                          "lint_imports_command()"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "3 kept, 0 broken" in res.stdout, res.stdout[-2000:]


def test_no_two_subpackages_import_each_other():
    grimp = pytest.importorskip("grimp")
    import networkx as nx

    graph = grimp.build_graph("ripple", include_external_packages=False)
    edges = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = (m.split(".")[1] if m.count(".") else None for m in (module, imported))
            if a and b and a != b:
                edges.setdefault((a, b), f"{module} -> {imported}")
    cycles = list(nx.simple_cycles(nx.DiGraph(list(edges))))
    where = [[edges[(c[i], c[(i + 1) % len(c)])] for i in range(len(c))] for c in cycles]
    assert not cycles, where[:3]
