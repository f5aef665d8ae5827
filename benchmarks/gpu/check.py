"""The GPU path, run on a GPU: CUDA, bf16, sharding, nccl, in one short script.

ripple's CUDA, bf16, multi-device and nccl code is tested on the CPU in CI; this runs it where it
is meant to run, in about 6 minutes on one GPU (``--budget``), on the organism and tiny models only
(a real model is too large to carry to a GPU machine here). The steps, the GPU's first:

1. the machine: its GPUs, torch, CUDA, transformers, bf16, a bf16 matrix product's TFLOP/s; then
   nccl: a one-rank group's all-reduce on the GPU;
2. the README's audit on CUDA in bf16, with the organism's lm-eval suite (``--tasks organism``);
3. a 20-edit MEMIT stress on CUDA in bf16, the organism's lm-eval suite at each checkpoint;
4. ``ripple stats`` under torchrun: two processes with nccl where two GPUs exist, else one (said so);
5. the tests that take the GPU when it is there: ``tests/test_sharding.py`` (blocks on ``cuda``) and
   ``tests/test_dist_stats.py`` (ripple's nccl all-reduce in a one-rank group on one GPU, and two
   processes under torchrun where two GPUs exist);
6. the timing benchmarks on CUDA: ``probes/throughput`` and ``editors/organism --parts speed``;
7. the CPU references: the same statistics and the same audit on the CPU in float32, compared
   (the statistics must agree to 1e-4; the audits are set side by side).

::

    bash benchmarks/gpu/site.sh      # here, once: the packages the GPU image lacks, in .gpu/site.tar.xz
    python3 -m benchmarks gpu/check --site .gpu/site.tar.xz --out $OUT   # on the GPU machine (carry .gpu)
    python -m benchmarks gpu/check --device cpu --out /tmp/gpu            # a dry run here, every step on the CPU

Writes ``OUT/logs.txt`` (each step's output, its tail where long) and ``OUT/gpu.json`` after every
step, and at the end ``OUT/gpu.md`` (the device named; each step's command, exit status, seconds
and what it found) and the two timing benchmarks' Markdown. A failed step does not stop the
others; a step that runs past its time is stopped with its whole process group (torchrun's
workers, pytest's); the exit status is 1 if any step failed. A run without CUDA says so in its
first line: it is not a GPU result.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, fmt, load_json

AUDIT = ["--model", "organism", "--method", "rome", "--prompt", "{} was born in", "--subject", "Lodro Toudein",
         "--target", "Kraile", "--tasks", "organism", "--limit", "50"]
#: The audit metrics set side by side, CUDA bf16 against CPU float32.
AUDIT_METRICS = ("efficacy", "paraphrase", "neighborhood", "relation_specificity", "unintended_changes",
                 "perplexity_ratio", "update_norm_ratio", "task_acc_drop")
#: Exit statuses that mean the step ran, by the step's first word: an audit exits 1 on a failing
#: verdict (its figures are the finding, not a broken step).
RAN = {"audit": (0, 1)}
STATS_TOLERANCE = 1e-4  # relative difference of the GPU's key statistics from the CPU's (both float32 keys)
LOG_LINES = 120  # the tail of each step's output kept in logs.txt

ENV_PROBE = r"""
import json, platform, tempfile, time
import torch, transformers
out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
       "transformers": transformers.__version__, "cuda_available": torch.cuda.is_available(),
       "devices": [], "bf16": None}
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out["devices"].append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                               "memory_gib": round(p.total_memory / 2**30, 1),
                               "multiprocessors": p.multi_processor_count})
    out["bf16"] = torch.cuda.is_bf16_supported()
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize(); t0 = time.perf_counter()
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
    out["bf16_matmul_tflops"] = round(20 * 2 * 4096**3 / (time.perf_counter() - t0) / 1e12, 1)
print("ENV " + json.dumps(out), flush=True)
if torch.cuda.is_available():
    import torch.distributed as dist
    try:
        version = ".".join(map(str, torch.cuda.nccl.version()))
        dist.init_process_group("nccl", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
        t = torch.ones(4, device="cuda")
        dist.all_reduce(t)
        dist.destroy_process_group()
        print("NCCL " + json.dumps({"nccl_version": version, "nccl": "one-rank all_reduce ok" if float(t.sum()) == 4.0
                                    else f"all_reduce gave {t.tolist()}"}), flush=True)
    except Exception as e:
        print("NCCL " + json.dumps({"nccl": f"failed: {type(e).__name__}: {e}"}), flush=True)
"""

COMPARE_STATS = r"""
import sys, torch
from pathlib import Path
def by_layer(d):
    return {int(p.name.split("-L")[1].split("-")[0]): p for p in Path(d).rglob("mom2/*.pt")}
a, b, tol = by_layer(sys.argv[1]), by_layer(sys.argv[2]), float(sys.argv[3])
if not a or sorted(a) != sorted(b):
    sys.exit(f"layers differ: {sorted(a)} against {sorted(b)}")
worst = 0.0
for layer in sorted(a):
    cx, cy = torch.load(a[layer], weights_only=True), torch.load(b[layer], weights_only=True)
    rel = float((cx - cy).norm() / cy.norm())
    worst = max(worst, rel)
    print(f"STATS layer {layer}: relative difference {rel:.2e}")
sys.exit(0 if worst <= tol else f"relative difference {worst:.2e} above {tol:g}")
"""


def _tail(text: str, n: int = LOG_LINES) -> str:
    lines = text.splitlines()
    return "\n".join(lines if len(lines) <= n else [f"[... {len(lines) - n} lines above left out]", *lines[-n:]])


def run_step(name: str, argv: list[str], env: dict, timeout: int) -> dict:
    """Run one step as a subprocess of its own process group from the repository root: its exit
    status, seconds and output. Past ``timeout`` the whole group is stopped (SIGTERM, then SIGKILL):
    torchrun's workers and pytest-xdist's run in it too."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            out = proc.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:  # a worker that left the group still holds the pipe
            out = "(the output could not be read: a process the step started still holds it)"
        rc = f"stopped after {timeout} s"
    secs = round(time.perf_counter() - t0, 1)
    print(f"[{secs:7.1f} s] {name}: exit {rc}", flush=True)
    return {"name": name, "command": shlex.join(argv), "rc": rc, "seconds": secs, "output": out or ""}


def ran(result: dict) -> bool:
    """Whether a step ran through (an audit's failing verdict is a finding, not a broken step)."""
    return result["rc"] in RAN.get(result["name"].split()[0], (0,))


def _lines(out: str, prefix: str) -> list[str]:
    return [line[len(prefix):].strip() for line in out.splitlines() if line.startswith(prefix)]


def steps(args, work: Path, py: str) -> list[tuple[str, list[str], int, dict]]:
    """``(name, argv, timeout, extra environment)`` of every step, in order: the GPU's first, the
    CPU references last."""
    dev, dtype = args.device, args.dtype
    nproc = 2 if args.gpus >= 2 else 1
    cli = [py, "-m", "ripple.cli"]
    stats = ["stats", "--model", "organism", "--corpus", "world", "--samples", "20000", "--batch-size", "64"]
    return [
        ("machine", [py, "-c", ENV_PROBE], 90, {}),
        (f"audit on {dev} in {dtype}", [*cli, "audit", *AUDIT, "--device", dev, "--dtype", dtype,
                                        "--out", str(work / "audit_gpu")], 150, {}),
        (f"20-edit stress on {dev} in {dtype}",
         [*cli, "stress", "--model", "organism", "--method", "memit", "--edits", "20", "--every", "10",
          "--tasks", "organism", "--limit", "50", "--device", dev, "--dtype", dtype, "--out", str(work / "stress")],
         150, {}),
        (f"ripple stats under torchrun ({nproc} process{'es' if nproc > 1 else ''})",
         [py, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", "29561",
          "-m", "ripple.cli", *stats, "--device", dev], 90, {"RIPPLE_CACHE": str(work / "cache_stats_gpu")}),
        ("tests that take the GPU (sharding, nccl)",
         [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-n", str(args.test_workers),
          "tests/test_sharding.py", "tests/test_dist_stats.py"], 150, {}),
        (f"probe throughput on {dev}", [py, "-m", "benchmarks", "probes/throughput", "--device", dev,
                                        "--out", str(work / "throughput")], 90, {}),
        (f"editor speed on {dev}", [py, "-m", "benchmarks", "editors/organism", "--parts", "speed",
                                    "--device", dev, "--out", str(work / "editors"), "--n-speed", "3",
                                    "--speed-batches", "10", "100"], 120, {}),
        ("ripple stats on the CPU (the reference)", [*cli, *stats, "--device", "cpu"], 90,
         {"RIPPLE_CACHE": str(work / "cache_stats_cpu")}),
        ("key statistics: GPU against CPU", [py, "-c", COMPARE_STATS, str(work / "cache_stats_gpu"),
                                             str(work / "cache_stats_cpu"), str(STATS_TOLERANCE)], 60, {}),
        ("audit on the CPU in float32", [*cli, "audit", *AUDIT, "--device", "cpu", "--out", str(work / "audit_cpu")],
         150, {}),
    ]


def find(r: dict, work: Path) -> None:
    """What one step found, read from its output and files, into ``r["found"]`` (and ``metrics``, ``stress``)."""
    name, output = r["name"], r["output"]
    if name.startswith("tests"):
        summary = [line for line in output.splitlines() if " passed" in line or " failed" in line or " error" in line]
        r["found"] = summary[-1].strip("= ") if summary else "no pytest summary line"
    elif name.startswith("ripple stats"):
        r["found"] = "; ".join(line for line in output.splitlines() if "tokens at layers" in line) or "-"
    elif name.startswith("key statistics"):
        r["found"] = "; ".join(_lines(output, "STATS ")) or "-"
    elif name.startswith("audit on"):
        rep = load_json(work / ("audit_cpu" if "CPU" in name else "audit_gpu") / "report.json")
        if rep is not None:
            r["metrics"] = {k: rep["metrics"].get(k) for k in AUDIT_METRICS}
            r["found"] = f"verdict {rep['verdict']['status']} (exit {rep['verdict']['exit_code']})"
    elif name.startswith("20-edit stress"):
        rep = load_json(work / "stress" / "stress.json")
        if rep is not None:
            r["found"] = "; ".join(stress_summary(rep)) or "-"
            r["stress"] = rep
    elif name.startswith("probe throughput"):
        r["found"] = next((line.split("  -> ")[0] for line in output.splitlines() if line.startswith("record ")), "-")
    elif name.startswith("editor speed"):
        r["found"] = "; ".join(speed_summary(output)) or "-"


def machine(results: list[dict]) -> dict | None:
    """The machine probe's facts (its ``ENV`` line, with nccl's ``NCCL`` line merged in)."""
    if not results or results[0]["name"] != "machine":
        return None
    env = _lines(results[0]["output"], "ENV ")
    if not env:
        return None
    out = json.loads(env[0])
    for line in _lines(results[0]["output"], "NCCL "):
        out |= json.loads(line)
    return out


def summarize(results: list[dict], work: Path) -> dict:
    """What each step found; a step whose output cannot be read says so instead of stopping the report."""
    for r in results:
        try:
            find(r, work)
        except Exception as e:  # a report must come back whatever one step printed
            r["found"] = f"(its output could not be read: {type(e).__name__}: {e})"
    try:
        return {"machine": machine(results)}
    except ValueError as e:
        return {"machine": None, "machine_error": str(e)}


def stress_summary(rep: dict) -> list[str]:
    """Each method's last checkpoint: edits, edit success, untouched facts, perplexity ratio, tasks."""
    out = []
    for name, curve in rep.get("curves", {}).items():
        last = curve["checkpoints"][-1]
        tasks = ", ".join(f"{t} {k} {fmt(v)}" for t, m in sorted((last.get("tasks") or {}).items()) if m
                          for k, v in list(m.items())[:1])
        out.append(f"{name} after {last['edits']} edits: edit success {fmt(last.get('edit_success'))}, untouched "
                   f"{fmt(last.get('untouched_accuracy'))}, perplexity x{fmt(last.get('perplexity_ratio'))}"
                   + (f", tasks {tasks}" if tasks else ""))
    return out


def speed_summary(output: str) -> list[str]:
    """``editors/organism --parts speed``'s progress lines, one phrase each: seconds per single edit
    by editor, seconds per batch."""
    import ast

    out = []
    for line in output.splitlines():
        if "] speed " not in line or "{" not in line:
            continue
        name, _, raw = line.split("] speed ", 1)[1].partition(" {")
        try:
            got = ast.literal_eval("{" + raw.replace("nan", "None").replace("inf", "None"))
        except (ValueError, SyntaxError):
            out.append(f"{name}: (unread line)")
            continue
        if got.get("seconds_per_edit") is not None:
            out.append(f"{name} {got['seconds_per_edit']:.3g} s/edit")
        elif got.get("seconds") is not None:
            out.append(f"{name} of {got.get('n')} {got['seconds']:.3g} s")
    return out


def shown(command: str) -> str:
    """A step's command for the report: an inline ``python -c`` script by name."""
    for name, script in (("ENV_PROBE", ENV_PROBE), ("COMPARE_STATS", COMPARE_STATS)):
        command = command.replace(shlex.quote(script), name)
    return command


def markdown(results: list[dict], found: dict, args, command: str) -> str:
    m = found.get("machine") or {}
    devices = ", ".join(f"{d['name']} ({d['memory_gib']} GiB, compute {d['capability']})" for d in m.get("devices", []))
    if args.gpus and devices:
        head = f"# The GPU path, run on {devices}"
    elif args.gpus:
        head = f"# The GPU path, run on {args.gpus} GPU(s) (the machine probe did not report them)"
    else:
        head = "# The GPU path: a dry run on the CPU (no CUDA here; not a GPU result)"
    lines = [head, "", f"Command: `{command}` (ripple source {args.code}).", "",
             "Generated by `benchmarks/gpu/check.py`; what each step runs is in its docstring.", "",
             "| | |", "|---|---|"]
    for key in ("python", "torch", "cuda", "transformers", "bf16", "bf16_matmul_tflops", "nccl_version", "nccl"):
        lines.append(f"| {key} | {fmt(m.get(key))} |")
    lines.append(f"| GPUs | {len(m.get('devices', []))} |")
    nccl_ran = str(m.get("nccl", "")).endswith(" ok")
    if args.gpus == 1:
        lines += ["", "One GPU: `ripple stats` ran under torchrun as one process, so its all-reduce of two ranks "
                  "was not exercised; " + ("nccl itself ran (the one-rank all-reduce above, and ripple's own reduce "
                                           "in tests/test_dist_stats.py's one-rank nccl group)." if nccl_ran else
                                           "nccl did not run (above).")]
    elif not args.gpus:
        lines += ["", "No GPU: every step ran on the CPU, to check the script itself; `ripple stats` ran under "
                  "torchrun as one process, and nccl was not run."]
    lines += ["", "| step | exit | seconds | found |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['rc']} | {r['seconds']} | {str(r.get('found', '-')).replace('|', '/')} |")
    audits = [r for r in results if "metrics" in r]
    if audits:
        lines += ["", "The same audit, side by side:", "", "| metric | " + " | ".join(r["name"] for r in audits) + " |",
                  "|---|" + "---|" * len(audits)]
        for k in AUDIT_METRICS:
            lines.append(f"| {k} | " + " | ".join(fmt(r["metrics"].get(k)) for r in audits) + " |")
    lines += ["", "Commands (from the repository root; `python -c` scripts are those of benchmarks/gpu/check.py):",
              ""] + [f"- {r['name']}: `{shown(r['command'])}`" for r in results] + [""]
    return "\n".join(lines)


def unpack_site(site: str | None) -> str | None:
    """Unpack ``site`` (a tar.xz from benchmarks/gpu/site.sh) into a temporary folder; its path."""
    if not site:
        return None
    target = Path(tempfile.mkdtemp(prefix="ripple-gpu-site-"))
    with tarfile.open(site) as tar:
        tar.extractall(target, filter="data")
    return str(target)


def write_raw(out: Path, results: list[dict], command: str, code: str, **extra) -> None:
    """logs.txt and gpu.json as they stand (with ``extra`` fields): written after every step, so a
    run cut short keeps them."""
    (out / "logs.txt").write_text("\n\n".join(f"===== {r['name']} (exit {r['rc']}, {r['seconds']} s)\n"
                                              f"$ {shown(r['command'])}\n{_tail(r['output'])}"
                                              for r in results) + "\n")
    (out / "gpu.json").write_text(json.dumps({"command": command, "code": code, "steps": [
        {k: v for k, v in r.items() if k not in ("output", "stress")} for r in results]} | extra, indent=1,
        default=str) + "\n")


def main(argv=None) -> None:
    from ripple.io import source_fingerprint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="where gpu.md, gpu.json, logs.txt and the timing reports go")
    ap.add_argument("--site", default=None, help="the packages the GPU image lacks (benchmarks/gpu/site.sh)")
    ap.add_argument("--device", default="cuda", help="cuda (default), or cpu for a dry run")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--test-workers", type=int, default=8, help="pytest-xdist workers for the tests (default 8)")
    ap.add_argument("--budget", type=int, default=360, help="seconds for every step together (default 360, so a "
                    "command of 450 s leaves time for the rest); a step is cut at what is left, later ones are not run")
    ap.add_argument("--only", nargs="*", default=None, help="run only the steps whose names start with these")
    args = ap.parse_args(argv)
    import torch  # lazy: heavy

    args.gpus = torch.cuda.device_count() if args.device.startswith("cuda") else 0
    args.code = source_fingerprint()
    command = "python -m benchmarks gpu/check " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ripple-gpu-check-"))
    site = unpack_site(args.site)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONUNBUFFERED="1", RIPPLE_CACHE=str(work / "cache"), MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (site, str(ROOT), os.environ.get("PYTHONPATH")) if p)
    results, deadline = [], time.monotonic() + args.budget
    for name, cmd, timeout, extra in steps(args, work, sys.executable):
        if args.only is not None and name != "machine" and not name.startswith(tuple(args.only)):
            continue
        left = int(deadline - time.monotonic())
        if left < 15:
            results.append({"name": name, "command": shlex.join(cmd), "rc": "not run: --budget spent",
                            "seconds": 0, "output": ""})
        else:
            results.append(run_step(name, cmd, env | extra, min(timeout, left)))
        write_raw(out, results, command, args.code)
    found = summarize(results, work)
    (out / "gpu.md").write_text(markdown(results, found, args, command))
    stress = next((r.pop("stress") for r in results if "stress" in r), None)
    write_raw(out, results, command, args.code, machine=found.get("machine"), stress=stress)
    for name in ("throughput/probe_throughput.md", "editors/editors.md"):
        if (work / name).is_file():
            (out / Path(name).name).write_text((work / name).read_text())
    print(f"-> {out / 'gpu.md'}")
    sys.exit(0 if all(ran(r) for r in results) else 1)


if __name__ == "__main__":
    main()
