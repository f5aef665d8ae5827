"""How long ``import ripple`` takes, against the bare interpreter and a commit before the front door.

How long ``import ripple`` takes, against the bare interpreter (issue 39: the front door's lazy
names must not make it more than 0.1 s slower), and against a commit before the front door.

    python -m benchmarks speed/import_time [--runs 20] [--base 1a39552]

Each figure is the median wall time of ``--runs`` fresh interpreters; writes reports/import_time.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, md_table


def median_seconds(code: str, path: Path | None, runs: int) -> float:
    env = {"PYTHONPATH": str(path)} if path is not None else {}
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {[str(path)] if path else []}; "
                        f"{code}"], check=True, env=env)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--base", default="1a39552", help="a commit before the front door")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "-C", str(ROOT), "archive", args.base, "ripple/__init__.py", "ripple/errors.py", "-o",
                        f"{tmp}/base.tar"], check=True)
        subprocess.run(["tar", "-xf", f"{tmp}/base.tar", "-C", tmp], check=True)
        bare = median_seconds("pass", None, args.runs)
        base = median_seconds("import ripple", Path(tmp), args.runs)
        now = median_seconds("import ripple", ROOT, args.runs)
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    rows = [("bare interpreter (`python -S -c pass`)", bare), (f"`import ripple` at {args.base}", base),
            (f"`import ripple` now ({sha})", now)]
    lines = ["# `import ripple`: time to import", "",
             f"Median wall time of {args.runs} fresh interpreters each (`python -S`), one machine, one run of the "
             "command below. The front door's names (`ripple.load`, `ripple.audit`, ...) load their modules on first "
             "use, so the import itself stays as cheap as before.", "",
             *md_table(["what", "seconds"], [(w, f"{s:.4f}") for w, s in rows]), "",
             f"Growth over {args.base}: {now - base:+.4f} s (the limit is +0.1 s); over the bare interpreter: "
             f"{now - bare:+.4f} s.", "",
             f"Command: `python -m benchmarks speed/import_time --runs {args.runs} --base {args.base}`", ""]
    (ROOT / "reports" / "import_time.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
