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


COMMANDS = ["", "edit", "audit", "graph", "mitigate", "stress", "stats", "trace", "organism", "rledit"]


def test_the_command_line_answers_help_without_loading_torch():
    """The deferred imports' reason, checked: parsing the arguments (and --help) of every command
    loads neither torch nor transformers, so a typo is answered at once."""
    code = ("import sys, io, contextlib\nfrom ripple.cli import main\nout = {}\n"
            f"for cmd in {COMMANDS!r}:\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "        try:\n            out[cmd] = main(([cmd] if cmd else []) + ['--help'])\n"
            "        except SystemExit as e:\n            out[cmd] = e.code\n"
            "print(out, sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    codes, heavy = done.stdout.strip().rsplit("} ", 1)
    assert heavy == "[]", f"--help loaded {heavy}"
    assert set(eval(codes + "}").values()) <= {0, None}  # every command's help was printed


def test_every_function_level_import_says_why():
    """A function-level import is there to keep start-up cheap (``start-up``: ``import ripple`` and
    the CLI's argument parsing stay free of torch), to load a heavy library only on the path that
    needs it (``heavy``), or to break an import cycle (``cycle``); it says which."""
    import ast
    import re

    tag = re.compile(r"#.*\blazy: (start-up|heavy|cycle)\b")
    untagged = []
    for path in sorted((ROOT / "ripple").rglob("*.py")):
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    text = " ".join(lines[node.lineno - 1: node.end_lineno])
                    if not tag.search(text):
                        untagged.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not untagged, f"function-level imports without a '# lazy: start-up|heavy|cycle' reason: {untagged[:10]}"
