"""GIE's efficiency claim on the organism: does ranking probe items by similarity to the edited item
find the facts an edit really changes, with a fraction of the scoring work?

For each of ``--n`` edits (``sample_edits(world, n, seed=0)``) and each method, every item of the
organism's probe set is measured before and after the edit (the model is restored after each edit,
so "before" is measured once and reused). Truly changed facts: items whose greedy answer changed,
the edited item itself excluded. GIE's estimate: the other items ranked by cosine similarity to the
edited item's hidden state before the edit (at the method's edit position and last edited layer;
also at subject_last on the middle layer); recall@k = changed items in the top k / all changed items
(pooled over edits). Random baseline: k items drawn uniformly (expected k / (N-1), and an empirical
mean over 20 draws). Time share: wall time of ``measure_items`` on k items / on all items (median
of 3). Writes ``OUT/gie.md`` and ``OUT/gie_estimate.json``, and two example ``ripple graph`` runs.

    RIPPLE_THREADS=2 python benchmarks/gie_estimate.py --n 30 --methods rome memit --out reports
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # timing, beside this file

from timing import median_seconds  # noqa: E402

N_RANDOM_DRAWS = 20


def recall_counts(ranked: Sequence[str], changed: set[str], ks: Sequence[int]) -> dict[int, int]:
    """For each k: how many of ``changed`` are among the first k of ``ranked``."""
    return {k: len(changed & set(ranked[:k])) for k in ks}


def pooled_recall(found: int, changed: int) -> float | None:
    """Total found / total changed (None when nothing changed)."""
    return None if changed == 0 else found / changed


def random_found(ids: Sequence[str], changed: set[str], k: int, draws: int, rng: random.Random) -> float:
    """Mean number of ``changed`` among ``k`` ids drawn uniformly without replacement, over ``draws``."""
    k = min(k, len(ids))
    return sum(len(changed & set(rng.sample(list(ids), k))) for _ in range(draws)) / draws


def evaluate_method(setup, items, method: str, requests, ks, ranker: str = "similarity", log=print) -> dict:
    from ripple.editing.session import edited
    from ripple.gie.measure import measure_items
    from ripple.gie.rankers import RANKERS
    from ripple.gie.run import drift_position, find_edited_item
    from ripple.gie.targets import edited_fact_id

    model, tok, spec = setup.model, setup.tok, setup.spec
    rank = RANKERS.get(ranker).rank
    n_layers = spec.n_layers(model)
    hp = setup.hparams_for(method)
    edit_layer = max(hp.layers_for(n_layers))
    mid_layer = n_layers // 2
    rankings = {"gie_edit": (edit_layer, drift_position(hp)), "gie_subject_mid": (mid_layer, "subject_last")}
    layers = sorted({edit_layer, mid_layer})
    ids = [item.id for item in items]
    index = {i: n for n, i in enumerate(ids)}
    before = measure_items(model, tok, spec, items, layers)
    rng = random.Random(0)
    found = {name: {k: 0 for k in ks} for name in rankings}
    found_random = {k: 0.0 for k in ks}
    per_edit, first_ranked = [], None
    t_start = time.perf_counter()
    for req in requests:
        edited_id = edited_fact_id(setup.world, req, items) or find_edited_item(items, req)
        e = index[edited_id]
        with edited(setup.ctx, method, [req], hp, force=True):
            after = measure_items(model, tok, spec, items, layers)
        changed = {ids[i] for i in range(len(ids)) if i != e and before.greedy[i] != after.greedy[i]}
        row = {"case_id": req.case_id, "edited_id": edited_id, "edited_changed": before.greedy[e] != after.greedy[e],
               "n_changed": len(changed), "changed": sorted(changed), "found": {}}
        for name, (layer, pos) in rankings.items():
            ranked = [ids[i] for i in rank(before, e, layer, pos)[: max(ks)]]
            if first_ranked is None and name == "gie_edit":
                first_ranked = ranked
            counts = recall_counts(ranked, changed, ks)
            row["found"][name] = counts
            for k in ks:
                found[name][k] += counts[k]
        others = [i for i in ids if i != edited_id]
        for k in ks:
            found_random[k] += random_found(others, changed, k, N_RANDOM_DRAWS, rng)
        per_edit.append(row)
        log(f"{method} {req.case_id}: {len(changed)} changed, found@{ks[-1]} {row['found']['gie_edit'][ks[-1]]}")
    seconds_per_edit = (time.perf_counter() - t_start) / max(1, len(requests))
    total_changed = sum(r["n_changed"] for r in per_edit)
    n_other = len(ids) - 1
    # scoring time: measure_items on the top-k items vs on all items (unedited model, first edit's ranking)
    t_all = median_seconds(lambda: measure_items(model, tok, spec, items, layers))
    by_id = {item.id: item for item in items}
    t_k = {k: median_seconds(lambda k=k: measure_items(model, tok, spec, [by_id[i] for i in first_ranked[:k]],
                                                        layers)) for k in ks}
    table = [{"k": k, "share_of_items": k / n_other,
              "found": {name: found[name][k] for name in rankings},
              "recall": {name: pooled_recall(found[name][k], total_changed) for name in rankings},
              "recall_random_expected": min(1.0, k / n_other),
              "recall_random_empirical": pooled_recall(found_random[k], total_changed),
              "seconds": t_k[k], "time_share": t_k[k] / t_all} for k in ks]
    return {"method": method, "edit_layer": edit_layer, "edit_position": drift_position(hp), "mid_layer": mid_layer,
            "n_items": len(ids), "n_edits": len(requests), "edits_with_change": sum(r["n_changed"] > 0 for r in per_edit),
            "edited_item_changed": sum(r["edited_changed"] for r in per_edit), "total_changed": total_changed,
            "seconds_all_items": t_all, "seconds_per_edit": seconds_per_edit, "table": table, "per_edit": per_edit}


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def summary_line(r: dict, k: int) -> str:
    row = next((t for t in r["table"] if t["k"] == k), None)
    if row is None or r["total_changed"] == 0:
        return f"{r['method']}: no changed facts to find."
    return (f"{r['method']}: at k={k} ({_pct(row['share_of_items'])} of the other items, "
            f"{_pct(row['time_share'])} of the full scoring time) GIE's ranking at the edit position finds "
            f"{_pct(row['recall']['gie_edit'])} of the {r['total_changed']} changed facts "
            f"({row['found']['gie_edit']}), the subject_last/middle-layer ranking {_pct(row['recall']['gie_subject_mid'])}, "
            f"vs {_pct(row['recall_random_empirical'])} for random picks (expected {_pct(row['recall_random_expected'])}).")


def render(results: dict, command: str, n: int, examples: dict, plain_k: int) -> str:
    lines = ["# GIE as an estimator of an edit's ripple", "", f"Reproduce: `{command}`", "",
             f"{n} organism edits (`sample_edits(world, {n}, seed=0)`), each applied alone with the organism's "
             "hyperparameters and undone; every item of `probes/organism.jsonl` measured before and after. "
             "*Changed*: greedy answer changed (the edited item itself excluded). *GIE (edit pos.)*: the other items "
             "ranked by cosine similarity to the edited item's hidden state before the edit, at the method's edit "
             "position and last edited layer; *GIE (subj., mid)*: at subject_last on the middle layer. Recall@k: "
             "changed items in the top k / all changed items, pooled over edits. *Random*: empirical mean over "
             f"{N_RANDOM_DRAWS} uniform draws of k items (expected k/(N-1) in brackets). *Time share*: wall time "
             "of `measure_items` on the top-k items / on all items (median of 3).", "",
             "## What the numbers show", ""]
    lines += [f"- {summary_line(r, plain_k)}" for r in results.values()]
    for m, r in results.items():
        lines += ["", f"## {m}", "",
                  f"Edit layer {r['edit_layer']} @ {r['edit_position']}; middle layer {r['mid_layer']}. "
                  f"{r['n_edits']} edits, {r['edits_with_change']} with any changed fact besides the edited one, "
                  f"{r['total_changed']} changed items in total; the edited item's own answer changed in "
                  f"{r['edited_item_changed']}. Scoring all {r['n_items']} items: {r['seconds_all_items']:.2f} s.", "",
                  "| k | share of items | found (GIE edit pos.) | recall GIE (edit pos.) | recall GIE (subj., mid) "
                  "| recall random | time share |", "|---|---|---|---|---|---|---|"]
        for t in r["table"]:
            lines.append(f"| {t['k']} | {_pct(t['share_of_items'])} | {t['found']['gie_edit']}/{r['total_changed']} | "
                         f"{_pct(t['recall']['gie_edit'])} | {_pct(t['recall']['gie_subject_mid'])} | "
                         f"{_pct(t['recall_random_empirical'])} ({_pct(t['recall_random_expected'])}) | "
                         f"{_pct(t['time_share'])} |")
    if examples:
        lines += ["", "## Example ripple graphs", ""]
        for m, ex in examples.items():
            lines += [f"`{ex['command']}` (edit `{ex['case_id']}`)", "",
                      f"![{m} ripple graph]({ex['dir']}/ripple_graph.png)", "",
                      f"![{m} drift by hop]({ex['dir']}/drift_by_hop.png)", ""]
    lines += ["", "## Ripple scores per editor", "",
              "RippleEdits categories and multi-hop accuracy of every editor: [ripple_eval.md](ripple_eval.md)."]
    return "\n".join(lines) + "\n"


def run_examples(world, methods, out: Path, log=print) -> dict:
    from ripple.cli import main as cli_main
    from ripple.io import atomic_write_text
    from ripple.organism.edits import sample_edits
    from ripple.outputs import copy_run

    req = sample_edits(world, 1, seed=5)[0]
    tmp = Path(tempfile.mkdtemp(prefix="gie_example_"))
    edit_path = tmp / "edit.json"
    atomic_write_text(edit_path, json.dumps(req.to_dict()))
    examples = {}
    for m in methods:
        d = f"gie_examples_{m}"
        argv = ["graph", "--model", "organism", "--method", m, "--edit", str(edit_path), "--out", str(tmp / d),
                "--probes", "probes/organism.jsonl", "--force"]
        rc = cli_main(argv)
        if rc:
            log(f"ripple graph for {m} exited {rc}")
            continue
        copy_run(tmp / d, out / d)  # plain files in reports/
        examples[m] = {"dir": d, "case_id": req.case_id,
                       "command": "ripple " + " ".join({str(edit_path): "edit.json", str(tmp / d): str(out / d)}.get(a, a)
                                                         for a in argv)}
    return examples


def main(argv=None) -> None:
    from ripple.editing.setup import load_setup
    from ripple.io import atomic_write_json, atomic_write_text, prepare_out_dir
    from ripple.organism.edits import sample_edits
    from ripple.probes.sets import load_probe_set

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="organism")
    ap.add_argument("--n", type=int, default=30, help="edits per method")
    ap.add_argument("--methods", nargs="+", default=["rome", "memit"])
    ap.add_argument("--ks", nargs="+", type=int, default=[5, 10, 20, 50, 100, 200])
    ap.add_argument("--probes", default="probes/organism.jsonl")
    ap.add_argument("--examples", nargs="*", default=["rome", "memit"], help="methods for the example graphs")
    ap.add_argument("--out", default="reports")
    args = ap.parse_args(argv)
    ks = sorted(set(args.ks))
    torch.set_num_threads(int(os.environ.get("RIPPLE_THREADS", "1")))
    setup = load_setup(args.model)
    items = load_probe_set(args.probes)
    requests = sample_edits(setup.world, args.n, seed=0)
    out = prepare_out_dir(args.out)
    results = {m: evaluate_method(setup, items, m, requests, ks) for m in args.methods}
    examples = run_examples(setup.world, args.examples, out) if args.examples else {}
    command = (f"RIPPLE_THREADS={os.environ.get('RIPPLE_THREADS', '1')} python benchmarks/gie_estimate.py "
               f"--n {args.n} --methods {' '.join(args.methods)} --ks {' '.join(map(str, ks))} --out {args.out}")
    plain_k = 50 if 50 in ks else ks[len(ks) // 2]
    atomic_write_json(out / "gie_estimate.json", {"command": command, "n": args.n, "ks": ks, "probes": args.probes,
                                                  "methods": results, "examples": examples})
    atomic_write_text(out / "gie.md", render(results, command, args.n, examples, plain_k))


if __name__ == "__main__":
    main()
