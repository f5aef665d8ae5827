"""Two speed-ups of the value optimization, each against the code without it, on the same
requests of the unedited model; prints steps, final NLL, the deltas' relative difference and
seconds per request.

* ``padding``: left-padded rows (commit 50a9b03), the old ``optimize_delta`` read from git at
  1fd83ef against the current one;
* ``replay``: the blocks before the site computed once (``optimize_delta(replay=False)`` against
  the default).

    python benchmarks/value_speed.py gemma3-270m rome 3 padding
    python benchmarks/value_speed.py smollm2 memit 3 replay
    python benchmarks/value_speed.py organism memit 5 replay
"""

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
OLD = "1fd83ef"


def main() -> None:
    from ripple.arch import act_name
    from ripple.editing.compute import optimize_delta, token_requests
    from ripple.editing.setup import load_setup

    name, method, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(int(os.environ.get("RIPPLE_THREADS", "1")))
    if mode == "padding":
        old_optimize = old_module().optimize_delta
    elif mode == "replay":
        def old_optimize(*a):
            return optimize_delta(*a, replay=False)
    else:
        raise SystemExit(f"mode {mode!r}: padding or replay")
    s = load_setup(name)
    hp = s.hparams_for(method)
    layers = hp.layers_for(s.ctx.n_layers())
    site = act_name(layers[0], "mlp.out") if method == "rome" else act_name(layers[-1], "out")
    contexts = s.ctx.contexts(hp)
    if name == "organism":
        from ripple.editing.streams import edit_stream

        reqs = edit_stream(s.world, n, seed=0)
    else:
        from real_editors import counterfact_edits

        reqs, _ = counterfact_edits(s, n)
    reqs = token_requests(s.tok, reqs, hp.fact_token)[:n]
    t_old = t_new = 0.0
    for r in reqs:
        t = time.perf_counter()
        a = old_optimize(s.model, s.tok, s.spec, r, site, hp, contexts)
        t_old += time.perf_counter() - t
        t = time.perf_counter()
        b = optimize_delta(s.model, s.tok, s.spec, r, site, hp, contexts)
        t_new += time.perf_counter() - t
        rel = float((a["delta"] - b["delta"]).norm() / a["delta"].norm().clamp(min=1e-12))
        print(f"{r.case_id}: steps {a['steps']} / {b['steps']}, nll {a['nll'][-1]} / {b['nll'][-1]}, "
              f"relative difference {rel:.2e}", flush=True)
    print(f"{name} {method} ({mode}): without {t_old / len(reqs):.2f} s, with {t_new / len(reqs):.2f} s per request")


def old_module():
    """``ripple.editing.compute`` as it was at commit ``OLD``."""
    src = subprocess.run(["git", "show", f"{OLD}:ripple/editing/compute.py"], cwd=HERE.parent, check=True,
                         capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("old_compute", f.name)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    return old


if __name__ == "__main__":
    main()
