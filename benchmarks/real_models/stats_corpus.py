"""Which text should give a real model's key statistics when the user gives none?

Candidates: passages sampled from the model itself (``samples:N`` at several N; seeded and
cached), the real-world graph's own sentences (``graph``), the 40 bundled English sentences
(``english``) and a user text file (``--file``; default: prose from the docstrings of Python's
standard library, written to ``--file-out``, standing in for a team's own documents). The same
``--edits`` ROME edits of facts the model knows (ripple.world.real; every relation) are made with
each corpus, each edit alone, and scored on efficacy, paraphrase, neighbourhood and relation
specificity. Writes ``reports/stats_corpus_<model>.json`` and ``.md``.

    python -m benchmarks real_models/stats_corpus --model smollm2 --edits 50 --set 'layers=(4,)'
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from benchmarks.common import known_facts, load_json, matching, md_table, set_threads
from benchmarks.editors.sweep import run_sweep


def stdlib_prose(path: Path, n: int = 2000) -> Path:
    """The first paragraph of the docstring of every public function of a fixed list of standard
    modules, one a line (deterministic for a Python version)."""
    import importlib

    names = ["os", "os.path", "shutil", "json", "re", "string", "textwrap", "datetime", "calendar", "math",
             "statistics", "random", "itertools", "functools", "collections", "pathlib", "csv", "zipfile",
             "tarfile", "gzip", "hashlib", "logging", "argparse", "subprocess", "threading", "socket", "email",
             "http.client", "urllib.parse", "unittest", "difflib", "heapq", "bisect", "decimal", "fractions"]
    lines = []
    for name in names:
        mod = importlib.import_module(name)
        for attr in sorted(dir(mod)):
            obj = getattr(mod, attr, None)
            if attr.startswith("_") or not callable(obj):
                continue
            doc = inspect.getdoc(obj) or ""
            para = " ".join(doc.split("\n\n")[0].split())
            if len(para.split()) >= 8 and para[0].isalpha():
                lines.append(para)
    lines = list(dict.fromkeys(lines))[:n]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main(argv=None) -> None:
    from ripple.editing.from_world import sample_edits
    from ripple.editing.setup import load_setup

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--edits", type=int, default=50)
    ap.add_argument("--corpora", nargs="+", default=["samples:64", "samples:256", "samples:1024", "graph", "file"])
    ap.add_argument("--file", default=None, help="the user text file (default: standard-library prose)")
    ap.add_argument("--file-out", type=Path, default=Path("runs/stats_corpus/stdlib_prose.txt"))
    ap.add_argument("--set", nargs="*", default=[], help="ROME hyperparameter overrides")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("reports"))
    args = ap.parse_args(argv)
    set_threads()
    user_file = args.file or str(stdlib_prose(args.file_out))
    setup = load_setup(args.model, context=False)
    pairs = known_facts(setup)
    requests = sample_edits(setup.world, args.edits, seed=args.seed, pairs=pairs)
    name = Path(args.model).stem.replace(".", "_")
    path = args.out / f"stats_corpus_{name}.json"
    for spec in args.corpora:  # each corpus's row is written as soon as it is measured
        setup.make_context(user_file if spec == "file" else spec)
        (row,) = run_sweep(setup, requests, [("rome", [])], args.set)
        row["corpus"] = "file" if spec == "file" else spec
        row["passages"] = setup.corpus.passages
        write(path, args, len(pairs), row)


def write(path: Path, args, known: int, row: dict) -> None:
    """Merge ``row`` into the JSON at ``path`` (one row per corpus; a rerun replaces its corpus's row)
    and render the markdown beside it."""
    from ripple.io import atomic_write_json, atomic_write_text

    old = load_json(path, {})
    same = matching([old], {"edits": args.edits, "set": args.set, "seed": args.seed})
    rows = [r for r in (old.get("rows", []) if same else []) if r["corpus"] != row["corpus"]] + [row]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"model": args.model, "edits": args.edits, "seed": args.seed, "known_facts": known,
                             "set": args.set, "rows": rows})
    cols = ["corpus", "passages", "efficacy", "paraphrase", "neighborhood", "relation_specificity", "specificity_n",
            "score", "over_norm_guard", "seconds_per_edit", "note"]
    lines = [f"# Statistics corpus comparison: {args.model}", "",
             f"Reproduce: `python -m benchmarks real_models/stats_corpus --model {args.model} --edits {args.edits}"
             + (f" --set {' '.join(repr(s) for s in args.set)}" if args.set else "") + " --corpora CORPUS...`", "",
             f"The same {args.edits} ROME edits (seed {args.seed}) of real-world facts the model answers right on the "
             f"probe template ({known} such facts; every relation), each alone; only the key-statistics corpus "
             "changes. 'file': standard-library prose standing in for a user's text file.", "",
             *md_table(cols, [[r.get(c) for c in cols] for r in rows])]
    atomic_write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
