"""Batch audits across worker processes: wall time against the serial run, and the same bytes.

Batch audits across worker processes: wall time of ``ripple audit --edit FILE --workers N``
against the serial run, and a byte-for-byte check that the reports are the same.

For each ``--workers`` count the same batch (``--edits`` counterfactual edits: the organism's
``sample_edits``, or a real model's known facts as benchmarks/real_models/editors.py draws them) is
audited from scratch in a fresh process, one torch thread per process; the key statistics are
in the disk cache before the first timed run (a warm-up audit of one edit), so every run reads
them alike. Writes reports/audit_workers.json and .md.

    python -m benchmarks audit/workers --model organism --method memit --edits 6 --workers 1 2
    python -m benchmarks audit/workers --model smollm2 --method rome --edits 3 --workers 1 2 --conditions "..."
    python -m benchmarks audit/workers --render
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPORTS, ROOT, load_json, md_row, md_table


def write_edits(model: str, n: int, path: Path) -> None:
    from ripple.editing.setup import load_setup

    if model == "organism":
        from ripple.editing.from_world import sample_edits

        setup = load_setup(model, context=False)
        reqs = sample_edits(setup.world, n, seed=0)
    else:
        from benchmarks.real_models.editors import counterfact_edits

        reqs, _ = counterfact_edits(load_setup(model, context=False), n, seed=0)
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in reqs))


def audit(args, edits: Path, out: Path, workers: int) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "ripple.cli", "audit", "--model", args.model, "--method", args.method, "--edit",
           str(edits), "--out", str(out), "--quiet", "--workers", str(workers)]
    env = dict(os.environ, RIPPLE_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"audit failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return time.perf_counter() - t, proc.returncode


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv == ["--render"]:  # only the markdown, from reports/audit_workers.json
        render(json.loads((REPORTS / "audit_workers.json").read_text()))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="organism")
    ap.add_argument("--method", default="memit")
    ap.add_argument("--edits", type=int, default=6)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--conditions", default="-", help="what else ran on the machine (written beside the times)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "audit_workers")
    args = ap.parse_args(argv)
    import torch

    from ripple.io import atomic_write_json, source_fingerprint
    from ripple.outputs import shown_files

    work = args.work / f"{args.model}_{args.method}"
    work.mkdir(parents=True, exist_ok=True)
    edits = work / "edits.jsonl"
    write_edits(args.model, args.edits, edits)
    one = work / "one.jsonl"
    one.write_text(edits.read_text().splitlines()[0] + "\n")
    audit(args, one, work / "warmup", 1)  # computes and caches the key statistics
    runs, reference = [], None
    for n in args.workers:
        out = work / f"workers{n}"
        seconds, code = audit(args, edits, out, n)
        files = shown_files(out)
        reference = reference or files
        same = sorted(files) == sorted(reference) and all(files[k] == reference[k] for k in reference)
        runs.append({"workers": n, "seconds": round(seconds, 2), "exit_code": code, "files": len(files),
                     "same_as_first": same})
        print(runs[-1], flush=True)
    path = REPORTS / "audit_workers.json"
    data = load_json(path, {})
    data[f"{args.model}/{args.method}"] = {"model": args.model, "method": args.method, "edits": args.edits,
                                           "audits": args.edits + 1, "runs": runs, "cpus": os.cpu_count(),
                                           "torch": torch.__version__, "code": source_fingerprint(),
                                           "conditions": args.conditions}
    atomic_write_json(path, data)
    render(data)


def render(data: dict) -> None:
    from ripple.io import atomic_write_text

    lines = ["# Batch audits across workers", "",
             "Made by `benchmarks/audit/workers.py` (its docstring: what each run covers). `ripple audit --edit FILE "
             "--workers N`: the batch's audits (each edit alone, then all together) in N processes, each with its "
             "own copy of the model; wall time of the whole command (start-up, loading, the audits, the summary), "
             "one torch thread per process; what else ran on the CPUs: the conditions column. "
             "'same bytes': every file of the run equals the first run's.", "",
             *md_table(["model", "method", "edits (audits)", "workers", "seconds", "speed-up", "files", "same bytes",
                        "conditions"])]
    for entry in data.values():
        base = entry["runs"][0]["seconds"]
        for r in entry["runs"]:
            lines.append(md_row([entry["model"], entry["method"], f"{entry['edits']} ({entry['audits']})", r["workers"],
                                 f"{r['seconds']:.1f}", f"{base / r['seconds']:.2f}x", r["files"],
                                 "yes" if r["same_as_first"] else "**no**", entry.get("conditions", "-")]))
    lines += ["", "Machine: " + ", ".join(sorted({f"{e['cpus']} CPUs, torch {e['torch']}" for e in data.values()}))
              + ". Source versions: " + ", ".join(sorted({e["code"] for e in data.values()})) + ".", ""]
    atomic_write_text(REPORTS / "audit_workers.md", "\n".join(lines))


if __name__ == "__main__":
    main()
