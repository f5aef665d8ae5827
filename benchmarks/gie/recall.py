"""GIE's efficiency: how much of what an edit broke each ranker finds, against its share of the cost.

How much of what an edit broke each ranker finds, against the share of the full evaluation's time
it costs (its own time counted).

For each of ``--edits`` random edits (every relation of the model's world; on a real model, facts
it knows) and each ``--methods`` editor, the edit is applied alone and undone; every probe item is
measured before and after (after: by incremental re-evaluation, which a test shows equals the
full evaluation bit for bit). Truth: *damaged* items as the audit defines them (answered right
before, wrong after, neither edited nor required to change by the ground truth), and separately
every *changed* greedy answer but the edited items'. Each ranker of ripple.gie.rankers orders the
other items from the unedited model's probe, the key cache and the edit; recall at share F is the
truth found in the top F of every edit's ranking, pooled over edits.

Cost at share F: (the ranker's time on that edit + the time to evaluate the top F items) / the time
to evaluate all items, with the top F evaluated by a plain forward pass or incrementally (from the
first edited layer, from the residual stream cached before the edit). Evaluation times are
measured once per model on subsets of 1% .. 100% of the items (median of 3) and interpolated. The
key cache is built once per model and method (reported apart: one-off, shared by every edit).

Rows are appended to ``reports/gie_recall_<name>.json`` after every edit, so a stopped run goes on
from there; ``--render`` writes reports/gie.md, its plots, and reports/gie_recall.json (the
expected recall per budget that ``--budget`` reports quote). The package reads that table from
ripple/data/gie_recall.json, which no run writes: ``--install`` copies it there, a step of its own.

    python -m benchmarks gie/recall --model organism --methods rome --edits 300
    python -m benchmarks gie/recall --model smollm2 --methods memit --edits 200 --name smollm2
    python -m benchmarks gie/recall --render
    python -m benchmarks gie/recall --install       # reports/gie_recall.json -> ripple/data/gie_recall.json
    python -m benchmarks gie/recall --model smollm2 --methods rome --verify 0 30 140   # stored rows, recomputed
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from benchmarks.common import (
    REPORTS,
    ROOT,
    known_facts,
    md_row,
    md_table,
    median_seconds,
    resumable,
    set_threads,
    write_rows,
)

RECALL_TABLE = REPORTS / "gie_recall.json"  # written by render(); --install copies it to INSTALLED
INSTALLED = ROOT / "ripple" / "data" / "gie_recall.json"  # what ripple.gie.budget reads
SHARES = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
CURVE = tuple(sorted({*SHARES, *(i / 200 for i in range(1, 201))}))
BUDGETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
GOAL_RECALL, GOAL_COST = 0.9, 0.2


def ranks_of(order: list[int], ids, truth: set[str]) -> list[int]:
    """0-based positions in ``order`` (item indices) of the ``truth`` ids."""
    return sorted(pos for pos, i in enumerate(order) if ids[i] in truth)


def eval_times(setup, items, resume, shares=SHARES, repeats=3) -> dict:
    """Seconds to evaluate the first ``share`` of the items (a plain forward pass, and incremental
    re-evaluation from ``resume``), median of ``repeats``; item order: the probe set's."""
    from ripple.gie.measure import measure_items

    model, tok, spec = setup.model, setup.tok, setup.spec
    out = {"plain": {}, "incremental": {}}
    for share in shares:
        part = items[: max(1, round(share * len(items)))]
        out["plain"][str(share)] = median_seconds(lambda: measure_items(model, tok, spec, part), repeats)
        out["incremental"][str(share)] = median_seconds(
            lambda: measure_items(model, tok, spec, part, resume=resume), repeats)
    return out


def light_plan(world, req, items):
    """The audit's plan without its RippleEdits queries (which score the model): the edited items
    and the items the ground truth says must change."""
    from ripple.auditing.measure import AuditPlan, edited_items
    from ripple.gie.targets import expected_changes, world_edit

    items2, target_ids = edited_items(items, [req], world)
    expected = expected_changes(world, world_edit(world, req), items2) - set(target_ids)
    return AuditPlan(items2, target_ids, expected, [])


def run_method(setup, items, method, requests, path: Path, config: dict, rankers, log=print) -> None:
    from ripple.auditing.measure import classify_changes
    from ripple.editing.editor import get_editor
    from ripple.gie.keys import KeyCache
    from ripple.gie.measure import measure_items, prepare_resume
    from ripple.gie.pipeline import drift_position
    from ripple.gie.rankers import RANKERS, RankInput
    from ripple.io import source_fingerprint

    model, tok, spec, ctx = setup.model, setup.tok, setup.spec, setup.ctx
    code = source_fingerprint()
    hp = setup.hparams_for(method, [])
    layers = hp.layers_for(ctx.n_layers())
    data = resumable(path, config)
    done = {r["case_id"] for r in data["rows"]}
    before, resume = prepare_resume(model, tok, spec, items, min(layers))
    if "times" not in data:
        t0 = time.perf_counter()
        full = measure_items(model, tok, spec, items)
        data["first_full_seconds"] = time.perf_counter() - t0
        assert full.greedy == before.greedy
        data["times"] = eval_times(setup, items, resume)
        write_rows(path, data)
    cache = KeyCache.build(model, tok, spec, items, layers)
    data["cache_seconds"] = cache.seconds
    data |= {"layers": list(layers), "position": drift_position(hp), "n_items": len(items)}
    ids = before.ids
    for req in requests:
        if req.case_id in done:
            continue
        plan = light_plan(setup.world, req, items)
        if len(plan.items) != len(items):
            log(f"{req.case_id}: the probe set lacks the edited fact; skipped")
            continue
        edited = tuple(ids.index(t) for t in plan.target_ids)
        t0 = time.perf_counter()
        delta = get_editor(method).compute(ctx, [req], hp)
        edit_seconds = time.perf_counter() - t0
        with delta.applied(model):
            t0 = time.perf_counter()
            after = measure_items(model, tok, spec, items, resume=resume)
            inc_seconds = time.perf_counter() - t0
        changes = classify_changes(plan, before, after)
        damaged = set(changes.unintended)
        changed = {ids[i] for i in changes.changed} - set(plan.target_ids)
        inp = RankInput(before, edited, max(layers), drift_position(hp), items, cache, delta, spec, model, tok, [req])
        row = {"case_id": req.case_id, "relation": req.case_id.split("|")[1], "n_damaged": len(damaged),
               "known": all(before.correct[e] for e in edited),
               "n_changed": len(changed), "edited_took": all(before.greedy[e] != after.greedy[e] for e in edited),
               "edit_seconds": edit_seconds, "incremental_seconds": inc_seconds, "rank_seconds": {}, "damaged": {},
               "changed": {}, "damaged_ids": sorted(damaged), "changed_ids": sorted(changed), "code": code}
        for name in rankers:
            t0 = time.perf_counter()
            order = RANKERS.get(name).rank(inp)
            row["rank_seconds"][name] = time.perf_counter() - t0
            row["damaged"][name] = ranks_of(order, ids, damaged)
            row["changed"][name] = ranks_of(order, ids, changed)
        data["rows"].append(row)
        write_rows(path, data)
        log(f"{len(data['rows'])} {method} {req.case_id}: damaged {len(damaged)} changed {len(changed)}; "
            f"edit {edit_seconds:.1f}s eval {inc_seconds:.1f}s", flush=True)


def verify(setup, items, method, requests, path: Path, rows: list[int]) -> None:
    """Recompute stored rows into a scratch file (the stored timings reused) and compare them."""
    import tempfile

    stored = json.loads(path.read_text())
    want = [stored["rows"][i] for i in rows]
    ids = {r["case_id"] for r in want}
    scratch = Path(tempfile.mkdtemp()) / path.name
    scratch.write_text(json.dumps({k: stored[k] for k in ("config", "times", "first_full_seconds")} | {"rows": []}))
    run_method(setup, items, method, [r for r in requests if r.case_id in ids], scratch, stored["config"],
               stored["config"]["rankers"])
    new = {r["case_id"]: r for r in json.loads(scratch.read_text())["rows"]}
    for i, r in zip(rows, want):
        n = new[r["case_id"]]
        diff = [k for k in ("n_damaged", "n_changed", "damaged_ids", "changed_ids", "damaged", "changed", "edited_took")
                if r[k] != n[k]]
        print(f"row {i} {r['case_id']}: " + ("identical" if not diff else f"differs in {', '.join(diff)}"), flush=True)


# ---------------------------------------------------------------- analysis


def interp(times: dict, share: float) -> float:
    """Seconds to evaluate ``share`` of the items, linear between the measured shares (0 at 0)."""
    pts = [(0.0, 0.0)] + sorted((float(k), v) for k, v in times.items())
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if share <= x1:
            return y0 + (y1 - y0) * (share - x0) / (x1 - x0)
    return pts[-1][1]


def curve(data: dict, ranker: str, truth: str, mode: str) -> list[tuple[float, float, float]]:
    """``(share, cost, recall)`` over :data:`CURVE` for ``ranker`` (``"random"``: the expectation),
    with the top share evaluated ``mode`` (plain | incremental); cost as a share of the full time."""
    rows, times = data["rows"], data["times"]
    full = times["plain"]["1.0"]
    total = sum(r[f"n_{truth}"] for r in rows)
    m = data["n_items"] - 1
    out = []
    for share in CURVE:
        k = math.ceil(share * m)
        rank_s = 0.0 if ranker == "random" else sum(r["rank_seconds"][ranker] for r in rows) / len(rows)
        cost = (rank_s + interp(times[mode], share)) / full
        if ranker == "random":
            found = sum(r[f"n_{truth}"] * min(1.0, k / m) for r in rows)
        else:
            found = sum(sum(p < k for p in r[truth][ranker]) for r in rows)
        out.append((share, cost, found / total if total else float("nan")))
    return out


def at_cost(points, cost: float) -> float:
    """The best recall reached at no more than ``cost``."""
    ok = [rec for _, c, rec in points if c <= cost + 1e-12]
    return max(ok) if ok else 0.0


def at_share(points, share: float) -> float:
    return next(rec for s, _, rec in points if s >= share - 1e-12)


def one_off(ranker: str, data: dict) -> str:
    """What a ranker needs beyond the probe's own forward pass (which records keys and margins):
    the grad-enabled pass and backward of its gradient kind, as a share of one full evaluation."""
    from ripple.gie.rankers import RANKERS

    if ranker == "random":
        return "-"
    kinds = [k for k in RANKERS.get(ranker).needs if k in ("margin", "logp")]
    if not kinds:
        return "none"
    c = data.get("cache_seconds", {})
    secs = c.get("forward", 0.0) + sum(c.get(k, 0.0) for k in kinds)
    return f"{', '.join(kinds)}: {secs:.1f} s ({_pct(secs / data['times']['plain']['1.0'])})"


def load_runs() -> dict:
    runs = {}
    for path in sorted(REPORTS.glob("gie_recall_*.json")):
        data = json.loads(path.read_text())
        if data.get("rows"):
            runs[path.stem.removeprefix("gie_recall_")] = data
    return runs


def _pct(x) -> str:
    return "-" if x is None or x != x else f"{100 * x:.0f}%"


def render() -> None:
    import matplotlib

    from benchmarks.common import source_versions

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ripple.gie.budget import DEFAULT_RANKER
    from ripple.io import atomic_write_bytes, atomic_write_json, atomic_write_text

    runs = load_runs()
    lines = ["# GIE's efficiency: finding what an edit broke with a fraction of the evaluation", "",
             "Rendered by `python -m benchmarks gie/recall --render` from reports/gie_recall_*.json (each run's command "
             "below). Truth: *damaged* items as `ripple audit` counts them (answered right before the edit, wrong after, "
             "neither edited nor required to change by the ground truth), and separately every *changed* greedy answer "
             "(the edited items' excepted). Recall at a share F: the truth found among the top F of each edit's "
             "ranking, pooled over all edits of the run (every relation, not a subset). Cost: (the ranker's own time "
             "for the edit + evaluating the top F items) / evaluating all items, with the top F evaluated by a plain "
             "forward pass, or incrementally (only the blocks from the first edited one, from the residual stream "
             "cached before the edit). The key cache (keys and gradients of every probe item at the edited layers) "
             "is built once per model and method and shared by every edit; its one-off time is given beside each "
             "run. Random: the expected recall of k items drawn uniformly.", ""]
    summary = md_table(["run", "edits", "damaged", "changed", "ranker", "recall at 5% of items", "10%", "20%",
                        "recall at 20% of the cost (plain)", "(incremental)", "goal met"])
    expected = {}
    body = []
    for name, data in runs.items():
        cfg, rows = data["config"], data["rows"]
        rankers = cfg["rankers"]
        n_dmg, n_chg = sum(r["n_damaged"] for r in rows), sum(r["n_changed"] for r in rows)
        times, full = data["times"], data["times"]["plain"]["1.0"]
        cache = data.get("cache_seconds", {})
        cmd = (f"python -m benchmarks gie/recall --model {cfg['model']} --methods {cfg['method']} --edits "
               f"{cfg['edits']} --seed {cfg['seed']}" + (f" --name {name}" if name != cfg["default_name"] else ""))
        best, best_rec = None, -1.0
        scored = {}
        for rk in rankers + ["random"]:
            pts = {mode: curve(data, rk, "damaged", mode) for mode in ("plain", "incremental")}
            scored[rk] = pts
            rec = max(at_cost(pts["plain"], GOAL_COST), at_cost(pts["incremental"], GOAL_COST))
            if rk != "random" and rec > best_rec:
                best, best_rec = rk, rec
            summary.append(md_row([name, len(rows), n_dmg, n_chg, rk, _pct(at_share(pts["plain"], 0.05)),
                                   _pct(at_share(pts["plain"], 0.1)), _pct(at_share(pts["plain"], 0.2)),
                                   _pct(at_cost(pts["plain"], GOAL_COST)), _pct(at_cost(pts["incremental"], GOAL_COST)),
                                   "yes" if rec >= GOAL_RECALL else "no"]))
        inc_cost = times["incremental"]["1.0"] / full
        body += ["", f"## {name}: {cfg['method']} on {cfg['model']}", "", f"`{cmd}`", "",
                 f"{len(rows)} edits" + (f" (of the {cfg['edits']} asked: the run is under way)"
                                         if len(rows) < cfg["edits"] else "") + f", {n_dmg} damaged items in {sum(r['n_damaged'] > 0 for r in rows)} edits, {n_chg} "
                 f"changed answers; {data['n_items']} probe items; edited layers {data['layers']} at "
                 f"`{data['position']}`; the edit took (greedy answer changed) in "
                 f"{sum(r['edited_took'] for r in rows)}; the edited fact was answered right before in "
                 f"{sum(r.get('known', True) for r in rows)} (a real model's edits: first the facts it knows, then "
                 f"others). Evaluating all items: {full:.2f} s; incremental re-evaluation "
                 f"of all: {times['incremental']['1.0']:.2f} s ({_pct(inc_cost)} of it, recall 100%). The benchmark's key cache, "
                 "built once (a grad-enabled pass, then one backward pass per gradient kind; `--budget` takes the keys "
                 "and margins from the probe's own before-edit pass instead): "
                 + ", ".join(f"{k} {v:.1f} s" for k, v in cache.items())
                 + f" ({_pct(sum(cache.values()) / full)} of one full evaluation). Mean edit time "
                 f"{sum(r['edit_seconds'] for r in rows) / len(rows):.2f} s. {source_versions(rows)}", "",
                 *md_table(["ranker", "own time per edit (s)", "one-off backward pass",
                            "damaged found at 5% / 10% / 20% / 50% of items", "changed found at 5% / 10% / 20% / 50%",
                            "best recall of damage at 20% of the cost, plain / incremental"])]
        for rk, pts in scored.items():
            chg = curve(data, rk, "changed", "plain")
            own = 0.0 if rk == "random" else sum(r["rank_seconds"][rk] for r in rows) / len(rows)
            body.append(md_row([rk, f"{own:.3f}", one_off(rk, data),
                                " / ".join(_pct(at_share(pts["plain"], s)) for s in (.05, .1, .2, .5)),
                                " / ".join(_pct(at_share(chg, s)) for s in (.05, .1, .2, .5)),
                                f"{_pct(at_cost(pts['plain'], GOAL_COST))} / "
                                f"{_pct(at_cost(pts['incremental'], GOAL_COST))}"]))
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, mode in zip(axes, ("plain", "incremental")):
            for i, (rk, pts) in enumerate(scored.items()):
                ax.plot([c for _, c, _ in pts[mode]], [r for _, _, r in pts[mode]], label=rk,
                        lw=2.2 if rk == DEFAULT_RANKER else 1.1, ls="--" if rk == "random" else "-",
                        color="k" if rk == "random" else plt.cm.tab20(i % 20))
            ax.scatter([inc_cost], [1.0], marker="*", s=120, color="k", zorder=5, label="incremental, all items")
            ax.axvline(GOAL_COST, color="grey", lw=0.6)
            ax.axhline(GOAL_RECALL, color="grey", lw=0.6)
            ax.set(xlim=(0, 1.05), ylim=(0, 1.02), xlabel="share of the full evaluation's time",
                   ylabel="share of damaged items found", title=f"{name}: top share evaluated {mode}")
        axes[0].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write_bytes(REPORTS / f"gie_recall_{name}.png", buf.getvalue())
        body += ["", f"![recall against cost, {name}](gie_recall_{name}.png)"]
        expected[name] = {"model": cfg["model"], "method": cfg["method"], "edits": len(rows), "damaged": n_dmg,
                          "best_at_20pct_cost": best,  # what --budget quotes: the recall of the ranker it uses
                          "recall_at_budget": {rk: {str(b): round(at_share(pts["plain"], b), 4) for b in BUDGETS}
                                               for rk, pts in scored.items() if rk != "random"}}
    if not runs:
        lines += ["No runs yet."]
    notes = REPORTS / "gie_notes.md"
    if notes.is_file():
        lines += [notes.read_text().strip(), ""]
    lines += ["## Summary", "", *summary, *body, *examples_section()]
    atomic_write_text(REPORTS / "gie.md", "\n".join(lines) + "\n")
    atomic_write_json(RECALL_TABLE, expected)


def install() -> None:
    """Copy the recall table render() wrote (reports/gie_recall.json) into the package
    (ripple/data/gie_recall.json, which ``--budget`` reports quote), as it is."""
    from ripple.io import atomic_write_bytes

    if not RECALL_TABLE.is_file():
        raise SystemExit(f"no {RECALL_TABLE}: render it first (python -m benchmarks gie/recall --render)")
    atomic_write_bytes(INSTALLED, RECALL_TABLE.read_bytes())
    print(f"{RECALL_TABLE} -> {INSTALLED}")


def run_examples(methods, log=print) -> None:
    """Example ``ripple graph`` runs on the organism (one edit, each method) into reports/gie_examples_*,
    their commands in reports/gie_examples.json (render() shows them)."""
    import tempfile

    from ripple.cli import main as cli_main
    from ripple.editing.from_world import sample_edits
    from ripple.io import atomic_write_json, atomic_write_text
    from ripple.organism.evaluate import load_world
    from ripple.outputs import copy_run

    req = sample_edits(load_world(), 1, seed=5)[0]
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
        copy_run(tmp / d, REPORTS / d)  # plain files in reports/
        for big in ("graph.json", "graph.graphml"):  # megabytes each; the figures and summary.json stay
            (REPORTS / d / big).unlink(missing_ok=True)
        examples[m] = {"dir": d, "case_id": req.case_id,
                       "command": "ripple " + " ".join({str(edit_path): "edit.json", str(tmp / d): f"reports/{d}"}
                                                         .get(a, a) for a in argv)}
    atomic_write_json(REPORTS / "gie_examples.json", examples)


def examples_section() -> list[str]:
    path = REPORTS / "gie_examples.json"
    if not path.is_file():
        return []
    lines = ["", "## Example ripple graphs", ""]
    for m, ex in json.loads(path.read_text()).items():
        lines += [f"`{ex['command']}` (edit `{ex['case_id']}`)", "", f"![{m} ripple graph]({ex['dir']}/ripple_graph.png)",
                  "", f"![{m} drift by hop]({ex['dir']}/drift_by_hop.png)", ""]
    return lines + ["## Ripple scores per editor", "",
                    "RippleEdits categories and multi-hop accuracy of every editor: [ripple_eval.md](ripple_eval.md)."]


def main(argv=None) -> None:
    from ripple.gie.rankers import RANKERS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="organism")
    ap.add_argument("--methods", nargs="+", default=["rome", "memit"])
    ap.add_argument("--edits", type=int, default=200)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--name", default=None, help="reports/gie_recall_NAME_METHOD.json (default: the model's name)")
    ap.add_argument("--rankers", nargs="+", default=list(RANKERS.names()))
    ap.add_argument("--render", action="store_true", help="only write reports/gie.md and reports/gie_recall.json from "
                    "reports/gie_recall_*.json")
    ap.add_argument("--install", action="store_true", help="only copy reports/gie_recall.json into the package "
                    "(ripple/data/gie_recall.json)")
    ap.add_argument("--verify", nargs="+", type=int, default=None, metavar="ROW",
                    help="recompute these stored rows of reports/gie_recall_NAME_METHOD.json (one method) with the "
                         "current code and say whether each comes out identical (timings aside)")
    ap.add_argument("--examples", nargs="+", default=None, metavar="METHOD",
                    help="only write the example ripple graphs (organism) for these methods")
    args = ap.parse_args(argv)
    if args.examples:
        run_examples(args.examples)
        render()
        return
    if args.install:
        install()
        return
    if args.render:
        render()
        return
    set_threads()
    from ripple.editing.from_world import sample_edits
    from ripple.editing.setup import load_setup
    from ripple.probes.sets import world_probe_set

    setup = load_setup(args.model)
    items = world_probe_set(setup.world)
    relations = tuple(setup.world.relations)
    if setup.world.kind == "real":  # facts the model knows; past those, facts it does not (said in the report)
        known = known_facts(setup)
        requests = sample_edits(setup.world, min(args.edits, len(known)), seed=args.seed, pairs=known,
                                relations=relations)
        if args.edits > len(known):
            others = sorted({(f.subject, f.relation) for f in setup.world.facts} - set(known))
            requests += sample_edits(setup.world, args.edits - len(known), seed=args.seed, pairs=others,
                                     relations=relations)
        requests = setup.complete(requests)
    else:
        requests = setup.complete(sample_edits(setup.world, args.edits, seed=args.seed, relations=relations))
    base = Path(args.model).stem.replace(".", "_")
    if args.verify:
        (method,) = args.methods
        verify(setup, items, method, requests, REPORTS / f"gie_recall_{args.name or base}_{method}.json", args.verify)
        return
    for method in args.methods:
        name = f"{args.name or base}_{method}"
        config = {"version": 1, "model": args.model, "method": method, "edits": args.edits, "seed": args.seed,
                  "rankers": args.rankers, "probes": len(items), "default_name": f"{base}_{method}"}
        run_method(setup, items, method, requests, REPORTS / f"gie_recall_{name}.json", config, args.rankers)
    render()


if __name__ == "__main__":
    main()
