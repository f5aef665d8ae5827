"""How much record()'s hooks cost, against the same forward with HF's hidden states (target <= 10%).

How much do record()'s hooks cost? Times ``record`` (site ``out`` at every layer, positions
subject_last and last) against ``plain_hidden_states`` (the same forward with HF's
``output_hidden_states`` and no hooks) on a probe set; target overhead <= 10%. Writes
``reports/probe_throughput.md`` and ``.json``.

    python -m benchmarks probes/throughput                          # the organism, all of probes/organism.jsonl
    python -m benchmarks probes/throughput --limit 64 --out /tmp/pt # a quick check

One warm-up of each, then ``--repeats`` runs of each, interleaved; the medians are compared. Both
include tokenization and locating the subject (timed alone as ``encode``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from benchmarks.common import md_table, set_threads


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(model, tok, spec, items, batch_size: int, repeats: int) -> dict:
    from ripple.probes.record import encode_items, plain_hidden_states, record

    runs = {"record": lambda: record(model, tok, spec, items, batch_size=batch_size),
            "plain_hidden_states": lambda: plain_hidden_states(model, tok, items, batch_size=batch_size),
            "encode": lambda: encode_items(tok, items)}
    for fn in runs.values():
        fn()  # warm-up
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn))
    median = {name: statistics.median(ts) for name, ts in times.items()}
    return {"seconds": times, "median_seconds": median,
            "overhead_pct": 100 * (median["record"] / median["plain_hidden_states"] - 1)}


def markdown(res: dict, cmd: str) -> str:
    m, ok = res["median_seconds"], res["overhead_pct"] <= 10
    return "\n".join([
        "# Probe recording throughput", "", f"Reproduce: `{cmd}`", "",
        f"{res['n_items']} items of `{res['probes']}` on `{res['model']}` ({res['n_layers']} layers), batch "
        f"{res['batch_size']}, {res['threads']} torch thread(s), {res['device']}; median of {res['repeats']} runs "
        "after a warm-up. `record`: site `out` at every layer, positions subject_last and last, one hooked "
        "forward per batch, stopped after the last block (so it skips the final norm and the LM head, which "
        "the baseline computes). `plain_hidden_states`: the same batches through HF's `output_hidden_states`, "
        "no hooks. Both include tokenizing and locating the subject (`encode`).",
        "", *md_table(["run", "median s", "items/s"], [(n, f"{m[n]:.4f}", f"{res['n_items'] / m[n]:.0f}") for n in m]),
        "", f"**Overhead of record over plain_hidden_states: {res['overhead_pct']:+.1f}%** "
        f"(target <= 10%: {'met' if ok else 'NOT met'}).", ""])


def main(argv=None) -> None:
    from ripple.io import atomic_write_json, atomic_write_text, prepare_out_dir
    from ripple.loading import load_model
    from ripple.probes.sets import load_probe_set

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="organism")
    ap.add_argument("--probes", default="probes/organism.jsonl")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N items")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="reports")
    args = ap.parse_args(argv)
    threads = set_threads()
    model, tok, spec = load_model(args.model, device=args.device)
    items = load_probe_set(args.probes)[: args.limit]
    res = measure(model, tok, spec, items, args.batch_size, args.repeats)
    res |= {"model": args.model, "probes": args.probes, "n_items": len(items), "n_layers": spec.depth,
            "batch_size": args.batch_size, "repeats": args.repeats, "threads": threads, "device": args.device}
    cmd = "python -m benchmarks probes/throughput " + " ".join(argv if argv is not None else sys.argv[1:])
    out = prepare_out_dir(args.out)
    atomic_write_json(out / "probe_throughput.json", res | {"command": cmd.strip()})
    atomic_write_text(out / "probe_throughput.md", markdown(res, cmd.strip()))
    m = res["median_seconds"]
    print(f"record {m['record']:.4f}s  plain_hidden_states {m['plain_hidden_states']:.4f}s  encode {m['encode']:.4f}s"
          f"  overhead {res['overhead_pct']:+.1f}%  ({len(items)} items)  -> {Path(out) / 'probe_throughput.md'}")


if __name__ == "__main__":
    main()
