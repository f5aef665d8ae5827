"""``python -m benchmarks``: list the benchmarks, or run one (the names: benchmarks/__init__.py)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: The flat scripts benchmarks/ held before it became a package, and what each is now.
OLD_NAMES = {
    "audit_browser_check": "audit/browser_check", "audit_samples": "audit/samples", "audit_speed": "audit/speed",
    "audit_workers": "audit/workers", "real_audit_samples": "audit/real_samples",
    "editors": "editors/organism", "edit_sweep": "editors/sweep", "ripple_eval": "editors/ripple_eval",
    "rledit": "editors/rledit", "gie_recall": "gie/recall", "sir": "sir/compare", "stress": "stress/organism",
    "real_stress": "stress/real", "real_editors": "real_models/editors", "real_fixes": "real_models/fixes",
    "real_knowledge": "real_models/knowledge", "real_trace": "real_models/trace", "tracing": "real_models/tracing",
    "stats_corpus": "real_models/stats_corpus", "english_tasks": "real_models/english_tasks",
    "real_models_report": "real_models/report", "organism_report": "organism/report",
    "make_probe_sets": "probes/make_sets", "probe_throughput": "probes/throughput",
    "import_time": "speed/import_time", "lm_eval_speed": "speed/lm_eval", "scale": "speed/scale",
}


def _has_main(path: Path) -> bool:
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in ast.parse(path.read_text()).body)


def benchmarks() -> dict[str, Path]:
    """``folder/module`` -> file, for every module with a ``main`` and every shell script in the
    subject folders (read, not imported: listing loads neither torch nor ripple)."""
    found = {}
    for folder in sorted(p for p in HERE.iterdir() if (p / "__init__.py").is_file()):
        for path in sorted(folder.iterdir()):
            if path.suffix == ".sh" or (path.suffix == ".py" and path.stem != "__init__" and _has_main(path)):
                found[f"{folder.name}/{path.stem}"] = path
    return found


def description(path: Path) -> str:
    """The first line of a module's docstring, or of a shell script's opening comment."""
    if path.suffix == ".sh":
        lines = [line for line in path.read_text().splitlines()[1:] if line.startswith("#")]
        return lines[0].lstrip("# ").strip() if lines else ""
    return (ast.get_docstring(ast.parse(path.read_text())) or "").strip().splitlines()[0]


def resolve(name: str, found: dict[str, Path]) -> str | None:
    """The ``folder/module`` a NAME means (see benchmarks/__init__.py), or ``None``."""
    key = name.strip().removeprefix("./").removeprefix("benchmarks/").removeprefix("benchmarks.")
    key = key.removesuffix(".py").removesuffix(".sh")
    if "/" not in key:
        key = key.replace(".", "/")
    if key in found:
        return key
    if key in OLD_NAMES:
        return OLD_NAMES[key]
    flat = {n.replace("/", "_"): n for n in found}
    return flat.get(key)


def listing(found: dict[str, Path]) -> str:
    """Every benchmark and its one-line description, folder by folder."""
    width = max(map(len, found))
    lines = ["python -m benchmarks NAME [ARGS...] runs one (NAME --help: its options; the names: "
             "benchmarks/__init__.py)."]
    folder = None
    for name, path in found.items():
        if name.split("/")[0] != folder:
            folder = name.split("/")[0]
            doc = ast.get_docstring(ast.parse((HERE / folder / "__init__.py").read_text())) or ""
            lines += ["", f"{folder}/: {doc}"]
        lines.append(f"  {name:<{width}}  {description(path)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    found = benchmarks()
    if not argv or argv[0] in ("--list", "-l", "list"):
        print(listing(found))
        return 0
    if argv[0] in ("-h", "--help"):
        print(__doc__.strip(), "\n", sys.modules["benchmarks"].__doc__, sep="\n")
        return 0
    name = resolve(argv[0], found)
    if name is None:
        print(f"python -m benchmarks: no benchmark {argv[0]!r}; `python -m benchmarks --list` names them",
              file=sys.stderr)
        return 2
    path, args = found[name], argv[1:]
    if path.suffix == ".sh":
        return subprocess.call(["bash", str(path), *args])
    # argparse's usage line: "python -m benchmarks sir.compare" (argparse keeps what follows the last "/")
    sys.argv = [f"python -m benchmarks {name.replace('/', '.')}", *args]
    rc = importlib.import_module(f"benchmarks.{name.replace('/', '.')}").main(args)
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
