"""How long a newcomer's first real-model audit takes, and the ones after it (issue 43, item 3).

    python -m benchmarks speed/first_audit [--models smollm2 gemma3-270m] [--later 2]

Each model gets an empty ``$RIPPLE_CACHE``, as on a fresh setup: the first ``ripple audit`` converts
the GGUF file, samples the statistics corpus from the model, computes the key statistics and
measures the unedited probe set, each once per model; the later ones find them cached. Every run
is the CLI as a user types it (default threads, corpus and policy; the one edit below), timed as
wall-clock seconds of the whole process. Writes reports/first_audit.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.common import ROOT, md_table
from ripple.io import source_fingerprint

EDIT = ["--method", "rome", "--prompt", "The capital of {} is", "--subject", "France", "--target", "Rome"]
#: The goals (seconds): a fresh setup's first audit, and later ones (issue 43, item 3).
GOALS = {"smollm2": (120, 45), "gemma3-270m": (240, None)}


def run_once(model: str, cache: str, out: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RIPPLE_THREADS"}  # the default a user gets
    env.update(RIPPLE_CACHE=cache, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    load = os.getloadavg()[0]
    t = time.perf_counter()
    got = subprocess.run([sys.executable, "-m", "ripple.cli", "audit", "--model", model, *EDIT, "--out", out],
                         env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if got.returncode not in (0, 1):
        raise SystemExit(f"ripple audit failed ({got.returncode}): {got.stderr.strip().splitlines()[-1:]}")
    report = json.loads(open(os.path.join(out, "report.json")).read())
    details = report.get("details", report)
    return {"seconds": round(seconds, 1), "verdict": got.stdout.strip().splitlines()[-1:] or got.stderr.strip().splitlines()[-1:],
            "stats_corpus": details.get("stats_corpus"), "load_before": round(load, 2)}


#: Measured by hand on the same 2-core machine before and while making the changes (issue 43, item 3).
NOTES = [
    "## Before, and what changed", "",
    "At 318ea36 (the commit before), the same SmolLM2 command on the same idle machine took **354.9 s** first "
    "(`/usr/bin/time`; under py-spy: converting the GGUF file 32 s, sampling 256 passages for the statistics 153 s, "
    "the audit itself the rest) and **137.5 s** later, on one thread. Three changes:", "",
    "- the default statistics corpus is 128 sampled passages (about 8,000 tokens, twice the larger plateau in "
    "reports/scale.md), not 256: half the sampling, half the statistics pass;",
    "- the default thread count is the machine's cores (at most 8, shared among `--workers`) for a model other "
    "than the organism, which stays on one thread: the later SmolLM2 audit took 88.7 s on two threads against "
    "137.5 s on one;",
    "- the unedited probe set's state (830 items' hidden states and answers on SmolLM2) is cached per model, "
    "items, layers and measuring code (`ripple.gie.state_cache`), as the unedited model's generated answers "
    "already were: a later audit skips that pass.", "",
    "## Where a later audit's time goes", "",
    "py-spy (25 samples a second) over one later SmolLM2 audit (74 s under the profiler, two threads): generating "
    "answers 47% (the 830 probe items' answers after the edit 21%, the report's generated texts 11%, the edit's "
    "own prompts' answers 9%, relation specificity in chat 5%), the probe pass after the edit 17%, the edit 7%, "
    "loading 7%, writing the report 4%, perplexity 3%, the rest under 3% each. Every forward pass there runs at the "
    "machine's speed (the probe pass reads about 360 tokens a second a thread, near a full forward's cost per "
    "token); what would cut it further is sharing the prompt pass between the teacher-forced scores and the "
    "generated answers, which ripple does not do yet.", ""]


def render(data: dict) -> str:
    table = []
    for r in data["rows"]:
        first, later = GOALS.get(r["model"], (None, None))
        goal = first if r["run"] == "first" else later
        corpus = r["stats_corpus"] or {}
        table.append((r["model"], r["run"], f"{r['seconds']:.1f}", "-" if goal is None else f"{goal}",
                      "-" if goal is None else ("yes" if r["seconds"] <= goal else "no"),
                      f"{corpus.get('source')} ({corpus.get('passages')} passages)", r["load_before"], r["code"]))
    return "\n".join(["# A first real-model audit, and the ones after it", "",
             "Made by `python -m benchmarks speed/first_audit --models MODEL... --later N` (one model at a time "
             f"keeps the other's rows) on a {data['cores']}-core CPU machine (no GPU). Each model starts from an empty "
             "`$RIPPLE_CACHE`, as a fresh setup does: the first audit converts the GGUF file, samples the statistics "
             "corpus from the model, computes the key statistics and measures the unedited probe set, once per model; "
             "the later audits read them from the cache. Each figure is one `ripple audit` process as a user types it "
             f"(`ripple audit --model MODEL {' '.join(EDIT)} --out DIR`: default threads, corpus and checks, generated "
             "and chat answers included), wall-clock seconds from start to exit. 'load' is the machine's one-minute "
             "load average just before the run (other work sharing the cores slows a run).", "",
             *md_table(["model", "audit", "seconds", "goal (s)", "met", "statistics corpus", "load", "code"], table), "",
             *NOTES])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["smollm2", "gemma3-270m"])
    ap.add_argument("--later", type=int, default=2, help="audits after the first, each timed")
    args = ap.parse_args(argv)
    path = ROOT / "reports" / "first_audit.json"
    old = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    code = source_fingerprint()
    rows = [r for r in old["rows"] if r["model"] not in args.models]
    for model in args.models:
        with tempfile.TemporaryDirectory(prefix="ripple-first-") as tmp:
            for i in range(1 + args.later):
                got = run_once(model, os.path.join(tmp, "cache"), os.path.join(tmp, f"out{i}"))
                rows.append({"model": model, "run": "first" if i == 0 else f"later {i}", **got, "code": code})
                print(rows[-1], flush=True)
    data = {"cores": os.cpu_count(), "edit": EDIT, "rows": rows}
    path.write_text(json.dumps(data, indent=1) + "\n")
    text = render(data)
    (ROOT / "reports" / "first_audit.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
