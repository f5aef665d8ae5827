"""Edit sweeps: each configuration (method + hyperparameter overrides) over the same random edits.

Where and how can the organism be edited? Each configuration (method + hyperparameter
overrides) edits ``--edits`` random facts, each alone on a fresh model, scored on efficacy,
paraphrase, neighbourhood and relation specificity (the subject's other facts, from the
world's ground truth). Writes ``reports/edit_sweep_<name>.md`` and ``.json``.

    python -m benchmarks editors/sweep --name layers --edits 20 --grid rome:fact_token=subject_last,last:layers=(0,),(1,),(2,),(3,),(4,),(5,)
    python -m benchmarks editors/sweep --name lam --edits 20 --grid memit:lam=1,10,100,1000,15000
    python -m benchmarks editors/sweep --model smollm2 --name smollm2_layers --edits 30 --grid 'rome:layers=(2,),(4,)'

On a real model (no world.json) the edits are drawn from the real-world graph's facts the model
answers right (ripple.world.real), with paraphrases, neighbourhood and relation specificity from it.

A grid is ``method:key=v1,v2:key=v1,v2`` (values with commas inside parentheses stay whole);
every combination is run.

``--value-cache``: target values through ``$RIPPLE_CACHE/values``
(:class:`ripple.editing.value_cache.ValueCache`), so configurations that change nothing the value
optimization reads (the statistics' samples, ``lam``, the solver) optimize each edit's value once.
``seconds_per_edit`` still counts a reused value at the seconds it took when it was computed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import known_facts, load_json, matching, md_table, set_threads


def parse_grid(grid: str) -> list[tuple[str, list[str]]]:
    """``"rome:layers=(0,),(1,):v_steps=20"`` -> [("rome", ["layers=(0,)", "v_steps=20"]), ...]."""
    import itertools
    import re

    method, *axes = grid.split(":")
    options = []
    for axis in axes:
        key, values = axis.split("=", 1)
        options.append([f"{key}={v}" for v in re.findall(r"\([^)]*\)|[^,]+", values)])
    return [(method, list(combo)) for combo in itertools.product(*options)]


def run_sweep(setup, requests, configs, extra=(), on_row=None) -> list[dict]:
    from ripple.editing.from_world import specificity_queries
    from ripple.editing.metrics import aggregate, request_metrics
    from ripple.editing.session import edited
    from ripple.scoring import query_correct

    model, tok, world = setup.model, setup.tok, setup.world
    spec_q = {r.case_id: specificity_queries(world, r) for r in requests}
    known = {cid: query_correct(model, tok, qs) for cid, qs in spec_q.items()}
    rows = []
    for method, overrides in configs:
        hp = setup.hparams_for(method, [*extra, *overrides])
        metrics, kept, guarded, reused, t0 = [], [], 0, 0.0, time.perf_counter()
        for r in requests:
            with edited(setup.ctx, method, [r], hp, force=True) as run:
                guarded += max(run.deltas[0].info["norm_ratios"].values()) > hp.max_update_ratio
                reused += sum(d.info.get("timing", {}).get("values_reused", 0.0) for d in run.deltas)
                metrics.append(request_metrics(model, tok, r))
                after = query_correct(model, tok, spec_q[r.case_id])
            kept += [a for a, k in zip(after, known[r.case_id]) if k]
        agg = aggregate(metrics)
        agg["relation_specificity"] = round(sum(kept) / len(kept), 4) if kept else None
        agg["specificity_n"] = len(kept)
        rows.append({"method": method, "config": " ".join(overrides), **agg, "over_norm_guard": guarded,
                     "seconds_per_edit": round((time.perf_counter() - t0 + reused) / len(requests), 3)})
        print(rows[-1], flush=True)
        if on_row is not None:
            on_row(rows)
    return rows


def main(argv=None) -> None:
    from ripple.editing.from_world import sample_edits
    from ripple.editing.setup import load_setup
    from ripple.io import atomic_write_json, atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="organism")
    ap.add_argument("--name", required=True, help="report name: reports/edit_sweep_NAME.md")
    ap.add_argument("--grid", nargs="+", required=True, help="method:key=v1,v2:... (see above)")
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--out", default="reports")
    ap.add_argument("--set", nargs="*", default=[], help="extra hyperparameter overrides")
    ap.add_argument("--stats-corpus", default=None, help="the statistics corpus (default: the model's default)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--value-cache", action="store_true",
                    help="optimize each edit's target value once across configurations (see above)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows of reports/edit_sweep_NAME.json measured on the same edits; run the rest")
    args = ap.parse_args(argv)
    set_threads()
    setup = load_setup(args.model, stats_corpus_file=args.stats_corpus)
    if args.value_cache:
        from ripple.editing.stats import cache_dir
        from ripple.editing.value_cache import ValueCache

        setup.ctx.value_cache = ValueCache(cache_dir() / "values")
    pairs = known_facts(setup) if setup.world.kind == "real" else None
    requests = sample_edits(setup.world, args.edits, seed=args.seed, pairs=pairs)
    configs = [c for g in args.grid for c in parse_grid(g)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["method", "config", "efficacy", "efficacy_top1", "paraphrase", "neighborhood", "relation_specificity",
            "specificity_n", "over_norm_guard", "seconds_per_edit"]
    grids = " ".join(f"'{g}'" for g in args.grid)
    model = "" if args.model == "organism" else f" --model {args.model}"

    def write(rows: list[dict]) -> None:  # after every configuration: a stopped sweep keeps its rows
        atomic_write_json(out / f"edit_sweep_{args.name}.json", rows)
        lines = [f"# Edit sweep: {args.name}", "",
                 f"Reproduce: `python -m benchmarks editors/sweep{model} --name {args.name} --edits {args.edits} "
                 f"--grid {grids}" + (f" --set {' '.join(args.set)}" if args.set else "")
                 + (f" --stats-corpus {args.stats_corpus}" if args.stats_corpus else "")
                 + (" --value-cache" if args.value_cache else "") + "`", "",
                 (f"{args.edits} random person-fact edits (seed {args.seed})" if pairs is None else
                  f"{args.edits} random edits (seed {args.seed}) of real-world facts the model answers right on the "
                  f"probe template ({len(pairs)} such facts in the graph; every relation)")
                 + f", statistics corpus {setup.corpus.source} ({setup.corpus.passages} passages)"
                 + ", each applied alone to a fresh model. Efficacy, "
                 "paraphrase and neighbourhood are CounterFact's probability races"
                 + ("" if pairs is None else " (where no other fact of the graph has the old object, the neighbours "
                    "are the relation's other subjects, each raced with its own answer)")
                 + "; relation specificity is the share "
                 "of the subject's other facts (known before the edit) still answered correctly after it."
                 + (f" {len(rows)} of {len(configs)} configurations measured so far." if len(rows) < len(configs)
                    else ""), "",
                 *md_table(cols, [[r.get(c) for c in cols] for r in rows])]
        atomic_write_text(out / f"edit_sweep_{args.name}.md", "\n".join(lines) + "\n")

    done = []
    tag = {"model": args.model, "edits": args.edits, "seed": args.seed, "set": list(args.set)}
    if args.resume:
        done = [r for r in matching(load_json(out / f"edit_sweep_{args.name}.json", []), tag, lenient=True)
                if (r["method"], r["config"].split()) in [(m, o) for m, o in configs]]
    todo = [(m, o) for m, o in configs if not any((r["method"], r["config"].split()) == (m, o) for r in done)]
    print(f"{len(done)} configurations kept from the previous run, {len(todo)} to measure", flush=True)
    if done:
        write(done)
    run_sweep(setup, requests, todo, args.set,
              on_row=lambda rows: write(done + [{**tag, **r} for r in rows]))


if __name__ == "__main__":
    main()
