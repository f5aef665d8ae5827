"""Capability over many sequential edits on a real model, one editor a run (reports/real_stress.md).

Capability over many sequential edits on a real model (SmolLM2-135M by default): one
``ripple stress`` run per editor, then the merged curves and table in ``reports/real_stress.md``.

Each run is ``ripple stress --model M --method X --edits N --every K --tasks english --counterfact
--seed 0``: the default stream of the real-world graph (every relation, every fact of the graph
in random order, known to the model or not), one edit at a time from the same weights; at each
checkpoint the edit success so far, the accuracy on 300 untouched facts, the perplexity ratio on
general sentences, the CounterFact metrics and the offline English suite (``english`` group,
ripple.evaluate.english_tasks). A run already in ``reports/real_stress_runs/<model>/<X>`` is kept
(delete it to rerun); a run stopped midway goes on from its last checkpoint (``--resume``; the
state is in ``runs/real_stress/<model>/<X>/.ripple/resume``).

    python -m benchmarks stress/real --model smollm2 --methods rome memit alphaedit --edits 200 --every 25
    python -m benchmarks stress/real --merge-only
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

from benchmarks.common import ROOT, md_row, md_table


def run_dir(args, name: str) -> Path:
    return args.runs / args.model.replace(".", "_") / name.replace("+", "_")


def run_one(name: str, args) -> tuple[str, int, float]:
    from ripple.outputs import copy_run

    dest = run_dir(args, name)
    if (dest / "stress.json").is_file():
        return name, 0, 0.0
    work = ROOT / "runs" / "real_stress" / args.model.replace(".", "_") / name.replace("+", "_")
    cmd = [sys.executable, "-m", "ripple.cli", "stress", "--model", args.model, "--method", name,
           "--edits", str(args.edits), "--every", str(args.every), "--tasks", *args.tasks, "--seed", str(args.seed),
           "--counterfact", "--resume", "--out", str(work)]
    env = dict(os.environ, RIPPLE_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    t = time.perf_counter()
    work.parent.mkdir(parents=True, exist_ok=True)
    with open(work.parent / f"{name.replace('+', '_')}.log", "w") as log:
        code = subprocess.call(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if code == 0:
        copy_run(work, dest)
    return name, code, time.perf_counter() - t


def merge(args) -> None:
    from ripple.io import atomic_write_text
    from ripple.stress.report import plot_stress, stress_table
    from ripple.stress.run import collapse_points

    lines = ["# Capability over many sequential edits on real models", "",
             "Made by `benchmarks/stress/real.py` (its docstring: the stream, what each checkpoint measures). "
             "Every curve is `ripple stress` on the real model, one edit at a time, the norm guard off (`force`).", "",
             "Reproduce: `python -m benchmarks stress/real --model smollm2 --methods rome memit alphaedit --edits 200 "
             "--every 25 --jobs 2` (one `ripple stress --model smollm2 --method M --edits 200 --every 25 --tasks english "
             "--counterfact --seed 0 --resume` per method; a run already in reports/real_stress_runs is kept), then "
             "`python -m benchmarks stress/real --merge-only`.", ""]
    for model_dir in sorted(p for p in args.runs.iterdir() if p.is_dir()):
        curves, timing, config = {}, {}, None
        for d in sorted(model_dir.iterdir()):
            if not (d / "stress.json").is_file():
                continue
            data = json.loads((d / "stress.json").read_text())
            config = data["config"]
            for key, curve in data["curves"].items():
                curve.update(collapse_points(curve["checkpoints"], config["collapse_ratio"], args.task_floor))
                curves[key] = curve
            timing.update(json.loads((d / "timing.json").read_text()))
        if not curves:
            continue
        png = f"real_stress_{model_dir.name}.png"
        plot_stress(curves, ROOT / "reports" / png, config["collapse_ratio"])
        lines += [f"## {config['model']}", "",
                  f"{config['edits']} edits, a checkpoint every {config['every']}; tasks: {', '.join(config['tasks'] or [])}; "
                  "population: the default stream of the real-world graph (every relation, facts the model "
                  "knew or not, the same stream for every method); untouched facts: 300 facts no edit touches; "
                  f"seed {config['seed']}. Collapse rules as reports/stress.md: the perplexity alarm at "
                  f"{config['collapse_ratio']}x, capability collapse when the task score falls below "
                  f"{args.task_floor} of the unedited model's.", "", f"![curves]({png})", "", stress_table(curves),
                  "Seconds per edit (the checkpoints' measuring apart; CPU, one thread, other benchmarks "
                  "sharing the machine): "
                  + ", ".join(f"{k} {(v['seconds'] - v.get('measure_seconds', 0)) / max(1, config['edits']):.1f}"
                              for k, v in timing.items()) + ".", "",
                  "Per checkpoint (edit success / untouched facts / perplexity ratio / English task score):", "",
                  *md_table(["edits", *curves])]
        lines += checkpoint_rows([c["checkpoints"] for c in curves.values()])
        lines.append("")
        lines += partial_runs(model_dir.name, set(curves))
    notes = ROOT / "reports" / "real_stress_notes.md"
    if notes.is_file():
        lines += [notes.read_text()]
    atomic_write_text(ROOT / "reports" / "real_stress.md", "\n".join(lines))


def checkpoint_rows(columns: list[list[dict]]) -> list[str]:
    """Table rows, one per checkpoint: edit success / untouched facts / perplexity ratio / English
    task score for each column (a run's checkpoints)."""
    from ripple.stress.report import task_score

    out = []
    for i in range(max(len(c) for c in columns)):
        cells, edits = [], None
        for c in columns:
            if i >= len(c):
                cells.append("-")
                continue
            r = c[i]
            edits = r["edits"]
            cells.append(f"{_f(r.get('edit_success'))} / {_f(r.get('untouched_accuracy'))} / "
                         f"{_f(r.get('perplexity_ratio'))} / {_f(task_score(r))}")
        out.append(md_row([edits, *cells]))
    return out


def partial_runs(model: str, finished: set) -> list[str]:
    """The checkpoints saved so far by runs of ``model`` that have not finished (their resume
    state under ``runs/real_stress``), as lines of a table kept apart from the finished runs'."""
    from ripple.stress.resume import ResumeStore

    work = ROOT / "runs" / "real_stress" / model
    found = {}
    for d in sorted(p for p in work.iterdir() if p.is_dir()) if work.is_dir() else []:
        for name in ({d.name, d.name.replace("_", "+")} - finished):
            got = ResumeStore(d, {}, "").progress(name)
            if got is not None:
                found[name] = got
    if not found:
        return []
    out = ["Runs not finished yet: the checkpoints each has saved so far (its resume state in "
           f"runs/real_stress/{model}; not in the table or the curves above), edit success / untouched "
           "facts / perplexity ratio / English task score:", "",
           *md_table(["edits", *(f"{k} ({v['edits']} of {v['key'].get('edits', '?')})" for k, v in found.items())])]
    out += checkpoint_rows([v["rows"] for v in found.values()])
    return out + [""]  # no seconds: a partial run's wall clock counts its pauses


def _f(x):
    return "-" if x is None else f"{x:.3g}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--methods", nargs="+", default=["rome", "memit", "alphaedit"])
    ap.add_argument("--edits", type=int, default=200)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--tasks", nargs="+", default=["english"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--runs", type=Path, default=ROOT / "reports" / "real_stress_runs")
    ap.add_argument("--task-floor", type=float, default=0.5)
    ap.add_argument("--merge-only", action="store_true")
    args = ap.parse_args(argv)
    args.runs.mkdir(parents=True, exist_ok=True)
    if not args.merge_only:
        with ThreadPoolExecutor(args.jobs) as pool:
            for name, code, seconds in pool.map(lambda n: run_one(n, args), args.methods):
                print(f"{name}: exit {code} in {seconds:.0f}s", flush=True)
    merge(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
