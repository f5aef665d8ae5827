"""1,000 sequential edits on the organism for every editor, with and without RECT (reports/stress.md).

1,000 sequential edits on the organism for ROME, MEMIT, EMMET, AlphaEdit and FT, each with and
without RECT: one ``ripple stress`` process per configuration (``--jobs`` at a time, one thread
each), then the merged curves in reports/stress.png and the table in reports/stress_table.md.

    python -m benchmarks stress/organism --edits 1000 --every 100 --jobs 2    # about 30 min on 2 cores
    python -m benchmarks stress/organism --merge-only                          # redraw from the runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import ROOT


def run_one(name: str, args) -> tuple[str, int, float]:
    from ripple.outputs import copy_run

    work = ROOT / "runs" / "stress_benchmark" / name.replace("+", "_")  # the --out; reports/ gets plain files
    cmd = [sys.executable, "-m", "ripple.cli", "stress", "--model", "organism", "--method", name,
           "--edits", str(args.edits), "--every", str(args.every), "--tasks", "organism", "--seed", str(args.seed),
           "--out", str(work), "--resume"]  # a run that stopped goes on; with nothing saved it starts
    env = dict(os.environ, RIPPLE_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    t = time.perf_counter()
    with open(args.runs / f"{name.replace('+', '_')}.log", "w") as log:
        code = subprocess.call(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if code == 0:
        copy_run(work, args.runs / name.replace("+", "_"))
    return name, code, time.perf_counter() - t


def merge(args) -> None:
    from ripple.io import atomic_write_json, atomic_write_text
    from ripple.stress.report import plot_stress, stress_table
    from ripple.stress.run import collapse_points

    curves, timing, config = {}, {}, None
    for name in args.names:
        d = args.runs / name.replace("+", "_")
        if not (d / "stress.json").is_file():
            print(f"missing run {name}", file=sys.stderr)
            continue
        data = json.loads((d / "stress.json").read_text())
        config = data["config"]
        for key, curve in data["curves"].items():  # the collapse rules, recomputed from the checkpoints
            curve.update(collapse_points(curve["checkpoints"], config["collapse_ratio"], args.task_floor))
            curves[key] = curve
        timing.update(json.loads((d / "timing.json").read_text()))
    plot_stress(curves, args.out / "stress.png", config["collapse_ratio"] if config else None)
    atomic_write_text(args.out / "stress_table.md", stress_table(curves))
    atomic_write_json(args.out / "stress_timing.json", timing)
    print(stress_table(curves))


def main(argv=None) -> int:
    from ripple.editing.editor import EDITORS, get_editor
    from ripple.stress.run import parse_method

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edits", type=int, default=1000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--methods", nargs="*", default=list(EDITORS.names()))
    ap.add_argument("--runs", type=Path, default=ROOT / "reports" / "stress_runs")
    ap.add_argument("--out", type=Path, default=ROOT / "reports")
    ap.add_argument("--merge-only", action="store_true")
    ap.add_argument("--task-floor", type=float, default=0.5)
    args = ap.parse_args(argv)
    args.names = [m + suffix for m in args.methods for suffix in ("", "+rect")]
    args.runs.mkdir(parents=True, exist_ok=True)
    if not args.merge_only:
        # the multi-layer (batch) editors are the slowest: first, so the pool finishes together
        order = sorted(args.names, key=lambda n: (get_editor(parse_method(n).base).one_request_per_solve, n))
        with ThreadPoolExecutor(args.jobs) as pool:
            for name, code, seconds in pool.map(lambda n: run_one(n, args), order):
                print(f"{name}: exit {code} in {seconds:.0f}s", flush=True)
    merge(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
