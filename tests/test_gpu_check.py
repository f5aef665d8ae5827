"""The prepared GPU check (benchmarks/gpu/check.py) stays runnable while no GPU is lent: every ripple
command it runs parses with today's options, every benchmark it runs exists with the options it
passes, and its report names the device or says plainly that it is a CPU dry run."""

import argparse
import json

import pytest

from benchmarks.__main__ import benchmarks
from benchmarks.gpu import check
from ripple.cli import build_parser


def args(device="cuda", gpus=1):
    return argparse.Namespace(device=device, dtype="bfloat16", gpus=gpus, test_workers=8, code="abc",
                              speed_args=[])


@pytest.mark.parametrize("gpus", [1, 2])
def test_every_step_names_commands_and_options_that_exist(tmp_path, gpus):
    parser, known = build_parser(), benchmarks()
    steps = check.steps(args(gpus=gpus), tmp_path, "python")
    for name, argv, timeout, extra in steps:
        assert 0 < timeout <= 300
        if "ripple.cli" in argv:
            parser.parse_args(argv[argv.index("ripple.cli") + 1:])  # argparse exits on an unknown option
        if argv[1:3] == ["-m", "benchmarks"]:
            assert argv[3] in known, argv
            if argv[3] == "editors/organism":
                from benchmarks.editors.organism import parse_args

                assert parse_args(argv[4:]).parts == ["speed"]
        for path in (a for a in argv if a.startswith("tests/")):
            assert (check.ROOT / path).is_file(), path
    torchrun = next(argv for name, argv, *_ in steps if "torch.distributed.run" in argv)
    assert torchrun[torchrun.index("--nproc_per_node") + 1] == str(min(gpus, 2))


def test_the_report_names_the_gpu_or_says_it_is_a_dry_run(tmp_path):
    machine = {"python": "3.12.3", "torch": "2.11.0", "cuda": "13.0", "transformers": "5.17.0", "cuda_available": True,
               "devices": [{"name": "NVIDIA H100 80GB HBM3", "capability": "9.0", "memory_gib": 79.2,
                            "multiprocessors": 132}], "bf16": True}
    speed = ("[   53.3s] speed rome {'seconds_per_edit': 0.2513, 'n': 3}\n"
             "[  119.6s] speed memit batch {'requested': 10, 'n': 10, 'seconds': 2.621}\n")
    results = [{"name": "machine", "command": "python -c x", "rc": 0, "seconds": 9.0,
                "output": "ENV " + json.dumps(machine) + "\nNCCL " + json.dumps({"nccl": "one-rank all_reduce ok"})},
               {"name": "editor speed on cuda", "command": "python -m benchmarks editors/organism", "rc": 0,
                "seconds": 60.0, "output": speed},
               {"name": "audit on cuda in bfloat16", "command": "ripple audit", "rc": "not run: --budget spent",
                "seconds": 0, "output": ""}]
    found = check.summarize(results, tmp_path)
    md = check.markdown(results, found, args(), "python -m benchmarks gpu/check --out x")
    assert md.startswith("# The GPU path, run on NVIDIA H100 80GB HBM3 (79.2 GiB, compute 9.0)")
    assert "rome 0.251 s/edit; memit batch of 10 2.62 s" in md
    assert "| audit on cuda in bfloat16 | not run: --budget spent |" in md
    assert "One GPU" in md and "nccl itself ran" in md  # the reduce of two ranks not exercised, said so
    assert check.ran(results[1]) and not check.ran(results[2])
    assert check.ran({"name": "audit on cuda in bfloat16", "rc": 1})  # a failing verdict is a finding
    dry = check.markdown(results[:1], {"machine": machine | {"cuda_available": False, "devices": []}},
                         args(device="cpu", gpus=0), "python -m benchmarks gpu/check --device cpu --out x")
    assert dry.startswith("# The GPU path: a dry run on the CPU (no CUDA here; not a GPU result)")


def test_the_statistics_comparison_fails_past_its_tolerance(tmp_path):
    import subprocess
    import sys

    import torch

    c = torch.eye(4, dtype=torch.float64) + 0.1
    for name, scale in (("gpu", 1 + 1e-6), ("cpu", 1.0), ("off", 1.01)):
        for layer in (3, 5):
            (tmp_path / name / "mom2").mkdir(parents=True, exist_ok=True)
            torch.save(c * scale, tmp_path / name / "mom2" / f"abc123-L{layer}-def456-n20000.pt")

    def compare(a, b):
        return subprocess.run([sys.executable, "-c", check.COMPARE_STATS, str(tmp_path / a), str(tmp_path / b),
                               str(check.STATS_TOLERANCE)], capture_output=True, text=True)

    ok, off = compare("gpu", "cpu"), compare("off", "cpu")
    assert ok.returncode == 0 and check._lines(ok.stdout, "STATS ")[0].startswith("layer 3: relative difference")
    assert off.returncode != 0 and "above 0.0001" in off.stderr


def test_a_step_past_its_time_is_stopped_with_its_process_group():
    """torchrun's and pytest-xdist's workers are children of the step: they go with it."""
    import os
    import sys
    from pathlib import Path

    script = ("import subprocess, sys, time; p = subprocess.Popen(['sleep', '60']); print(p.pid, flush=True); "
              "time.sleep(60)")
    r = check.run_step("sleeper", [sys.executable, "-c", script], dict(os.environ), timeout=3)
    assert r["rc"] == "stopped after 3 s"
    child = Path(f"/proc/{int(r['output'].split()[0])}/status")
    assert not child.exists() or "zombie" in child.read_text()  # killed (reaped, or waiting to be)
