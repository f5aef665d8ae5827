"""SIR against the plain edit, RECT and AlphaEdit on the same edits (reports/sir.md).

SIR against the plain edit, RECT and AlphaEdit on the same edits: damaged items, drift, the
CounterFact metrics, relation specificity and the RippleEdits categories, and SIR's time.

For each case (``--batch`` random edits of the model's world, or of the real-world facts the
model knows; every editable relation), and each ``--methods`` editor:

* ``plain``: the editor's edit;
* ``sir``: the plain edit revised by SIR (ripple.mitigation: GIE -> SIR rounds);
* ``rect``: the editor with RECT (``rect=0.4``);
* ``alphaedit``: AlphaEdit on the same requests (its own layers: MEMIT's), once per case.

Damaged: probe items answered right before and wrong after, neither edited nor required to change
by the ground truth. Drift: mean cosine distance of the hidden state at the edited layer (at the
edit's position) over the items not required to change, and at the last layer. Rows are appended
to ``reports/sir_<name>.json`` after every case, so a stopped run keeps what it measured and a
rerun with the same arguments goes on from there; ``--render`` writes reports/sir.md from every
``reports/sir_*.json``.

    python -m benchmarks sir/compare --model organism --methods rome memit --edits 100
    python -m benchmarks sir/compare --model organism --methods memit --edits 100 --batch 10 --name organism_batch10
    python -m benchmarks sir/compare --model smollm2 --methods rome memit --edits 100
    python -m benchmarks sir/compare --model smollm2 --methods memit --edits 100 --name smollm2_memit_norm6 \
        --set max_norm_growth=6 --only CASE_ID ...       # a follow-up on a few cases
    python -m benchmarks sir/compare --render
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.common import REPORTS, known_facts, md_row, md_table, resumable, set_threads, write_rows

VARIANTS = ("plain", "sir", "rect", "alphaedit")


def drifts(before, after, items, skip: set[str], layer: int, position: str) -> dict:
    from ripple.probes.cache import row_distances

    keep = torch.tensor([item.id not in skip for item in items])
    last = max(before.layers)
    out = {}
    for name, L in (("drift", layer), ("drift_last_layer", last)):
        d = row_distances(before.rep(L, position), after.rep(L, position))["cosine_distance"]
        out[name] = float(d[keep].mean()) if keep.any() else None
    return out


def score(setup, delta, group, plan, before, ripple_plans, layer, position, states=None) -> dict:
    """Everything measured of one variant's delta."""
    from ripple.auditing.measure import classify_changes
    from ripple.editing.metrics import aggregate, request_metrics
    from ripple.evaluate.ripple_scores import category_totals, score_ripples
    from ripple.gie.measure import measure_items

    model, tok, spec = setup.model, setup.tok, setup.spec
    with delta.applied(model):
        if states is None:
            states = measure_items(model, tok, spec, plan.items)
        metrics = aggregate([request_metrics(model, tok, r) for r in group])
        ripple = category_totals(score_ripples(model, tok, ripple_plans))
    changes = classify_changes(plan, before, states)
    skip = plan.expected | set(plan.target_ids)
    cats = {c: {"n": v["n"], "correct": v["correct"]} for c, v in ripple["categories"].items()}
    return {"damaged": changes.unintended, "wrong_flips": len(changes.wrong_flips),
            **{k: metrics.get(k) for k in ("efficacy", "paraphrase", "neighborhood")},
            "relation_specificity": _share(cats["relation_specificity"]),
            "ripple": cats, **drifts(before, states, plan.items, skip, layer, position)}


def heldout_queries(world, item_ids: list[str]) -> list:
    """The facts of ``item_ids`` (``subject|relation|object``) asked with their relation's held-out
    wordings, which SIR never saw: does a repair carry over to other phrasings?"""
    from ripple.world.queries import fact_query

    out = []
    for item_id in item_ids:
        subject, relation = item_id.split("|")[:2]
        rel = world.relations.get(relation)
        if rel is not None and any(f.subject == subject for f in world.facts):
            out += [fact_query(world, subject, relation, t) for t in rel.heldout_templates]
    return out


def shape_queries(world, item_ids: list[str]) -> list:
    """The facts of ``item_ids`` asked in every held-out sentence shape of their relation
    (:func:`ripple.mitigation.phrasings.heldout_shapes`: the world's and the relation library's
    held-out templates and the library's questions), none of which SIR reads (issue 43, item 2)."""
    from ripple.mitigation.phrasings import heldout_shapes
    from ripple.world.queries import fact_query

    out, seen = [], set()
    for item_id in item_ids:
        subject, relation = item_id.split("|")[:2]
        if (subject, relation) in seen or not any(f.subject == subject for f in world.facts):
            continue
        seen.add((subject, relation))
        out += [fact_query(world, subject, relation, t, shape=k) for k, t in enumerate(heldout_shapes(world, relation))]
    return out


def heldout_repair(setup, queries, plain, revised) -> dict:
    """Among held-out wordings of the plain edit's damaged facts answered right before the edit:
    how many the plain edit breaks, and how many of those the revision answers right."""
    from ripple.scoring import query_correct

    model, tok = setup.model, setup.tok
    if not queries:
        return {"right_before": 0, "broken_by_plain": 0, "repaired": 0}
    before = query_correct(model, tok, queries)
    with plain.applied(model):
        after_plain = query_correct(model, tok, queries)
    with revised.applied(model):
        after_sir = query_correct(model, tok, queries)
    broken = [i for i, (b, p) in enumerate(zip(before, after_plain)) if b and not p]
    return {"right_before": sum(before), "broken_by_plain": len(broken), "repaired": sum(after_sir[i] for i in broken)}


def run_case(setup, method, group, items, before_all, hp_sir) -> dict:
    from ripple.auditing.measure import plan_audit
    from ripple.editing.editor import get_editor, with_rect
    from ripple.evaluate.ripple_scores import plan_ripple
    from ripple.gie.pipeline import Edit, ItemProbe, drift_position
    from ripple.mitigation.run import mitigate

    model, tok, world, ctx = setup.model, setup.tok, setup.world, setup.ctx
    hp = setup.hparams_for(method, [])
    plan = plan_audit(model, tok, world, group, items)
    # the edit's own items measured apart from the probe set's, as mitigate measures them after the edit
    before = before_all if len(plan.items) == len(items) else ItemProbe(ctx, plan.items, cached=len(items)).before()
    ripple_plans = [plan_ripple(model, tok, world, r) for r in group]
    layer, position = hp.layers_for(ctx.n_layers())[-1], drift_position(hp)
    row = {"method": method, "requests": [r.case_id for r in group]}
    plain = get_editor(method).compute(ctx, group, hp)
    t0 = time.perf_counter()
    out = mitigate(ctx, Edit(method, tuple(group), hp, delta=plain, force=True), items, world, hp=hp_sir, plan=plan,
                   before=before)
    sir_seconds = time.perf_counter() - t0
    row["plain"] = score(setup, plain, group, plan, before, ripple_plans, layer, position, out.states["plain"])
    row["sir"] = score(setup, out.revised, group, plan, before, ripple_plans, layer, position, out.states["revised"])
    row["sir"] |= {"stopped": out.stopped, "rounds": len(out.rounds) - 1, "chosen_round": out.chosen,
                   "norm_growth": out.rounds[out.chosen].get("norm_growth"),
                   "kl_items": sum(len(r.get("step", {}).get("kl_items", [])) > 0 for r in out.rounds[1:]),
                   "seconds": round(sir_seconds, 3), "revise_seconds": out.seconds["revise"],
                   "measure_seconds": out.seconds["measure"]}
    row["plain"]["seconds"] = plain.info.get("seconds")
    row["sir"]["heldout"] = heldout_repair(setup, heldout_queries(world, row["plain"]["damaged"]), plain, out.revised)
    row["sir"]["shapes"] = heldout_repair(setup, shape_queries(world, row["plain"]["damaged"]), plain, out.revised)
    rect = with_rect(ctx, plain, 0.4)  # the same as solving again with rect=0.4 (a test checks it)
    row["rect"] = score(setup, rect, group, plan, before, ripple_plans, layer, position)
    row["rect"]["seconds"] = rect.info.get("seconds")
    return row, plan, before, ripple_plans, layer, position


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="organism")
    ap.add_argument("--methods", nargs="+", default=["rome", "memit"])
    ap.add_argument("--edits", type=int, default=100)
    ap.add_argument("--batch", type=int, default=1, help="edits per solve (rome: 1)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--name", default=None, help="reports/sir_NAME.json (default: the model's name)")
    ap.add_argument("--set", nargs="*", default=[], help="SIR hyperparameter overrides, NAME=VALUE")
    ap.add_argument("--only", nargs="+", default=None, metavar="CASE_ID",
                    help="run only the cases whose first edit has one of these case ids (a follow-up on a few cases)")
    ap.add_argument("--render", action="store_true", help="only write reports/sir.md from reports/sir_*.json")
    args = ap.parse_args(argv)
    if args.render:
        render()
        return
    set_threads()
    from ripple.editing.editor import get_editor
    from ripple.editing.from_world import sample_edits
    from ripple.editing.hparams import apply_overrides
    from ripple.editing.setup import load_setup
    from ripple.gie.measure import measure_items
    from ripple.io import source_fingerprint
    from ripple.mitigation.sir import SirHParams
    from ripple.probes.sets import world_probe_set

    name = args.name or Path(args.model).stem.replace(".", "_")
    path = REPORTS / f"sir_{name}.json"
    hp_sir = apply_overrides(SirHParams(), args.set, "sir")
    setup = load_setup(args.model)
    items = world_probe_set(setup.world)
    pairs = known_facts(setup) if setup.world.kind == "real" else None
    requests = setup.complete(sample_edits(setup.world, args.edits, seed=args.seed, pairs=pairs))
    groups = [requests[i : i + args.batch] for i in range(0, len(requests), args.batch)]
    if args.only:
        unknown = set(args.only) - {g[0].case_id for g in groups}
        if unknown:
            raise SystemExit(f"--only: {sorted(unknown)[0]!r} is not among this run's cases; copy a case id from "
                             "reports/sir_NAME.json (rows[].requests[0])")
        groups = [g for g in groups if g[0].case_id in args.only]
    # version 4: SIR keeps each damaged fact in up to 10 phrasings of its relation; the held-out shapes measured
    config = {"version": 4, "model": args.model, "methods": args.methods, "edits": args.edits, "batch": args.batch,
              "seed": args.seed, "set": args.set, "sir": hp_sir.__dict__, "probes": len(items),
              "known_facts": len(pairs) if pairs is not None else None,
              "stats_corpus": setup.corpus.describe() if setup.corpus is not None else None}
    if args.only:
        config["only"] = sorted(args.only)
    rows = resumable(path, config)["rows"]
    done = {(r["method"], tuple(r["requests"])) for r in rows}
    code = source_fingerprint()
    older = sum(r.get("code") != code for r in rows)
    if older:
        print(f"note: {older} of the {len(rows)} rows so far were made by other versions of ripple's code (see "
              "'source versions' in reports/sir.md); delete the file to measure every row with this one", flush=True)
    before = measure_items(setup.model, setup.tok, setup.spec, items)
    for g in groups:
        alpha = None
        for method in args.methods:
            if (method, tuple(r.case_id for r in g)) in done:
                continue
            if get_editor(method).one_request_per_solve and len(g) > 1:
                continue
            row, plan, bef, rplans, layer, position = run_case(setup, method, g, items, before, hp_sir)
            if alpha is None:
                ahp = setup.hparams_for("alphaedit", [])
                delta = get_editor("alphaedit").compute(setup.ctx, g, ahp)
                alpha = score(setup, delta, g, plan, bef, rplans, layer, position)
                alpha["seconds"] = delta.info.get("seconds")
            row["alphaedit"] = alpha
            row["code"] = code
            rows.append(row)
            write_rows(path, {"config": config, "rows": rows})
            s = row["sir"]
            print(f"{len(rows)} {method} damaged plain {len(row['plain']['damaged'])} sir {len(s['damaged'])} "
                  f"rect {len(row['rect']['damaged'])} alpha {len(alpha['damaged'])}; eff {row['plain']['efficacy']}"
                  f"->{s['efficacy']} para {row['plain']['paraphrase']}->{s['paraphrase']}; {s['stopped']}; "
                  f"{s['seconds']:.0f}s", flush=True)
    render()


def _share(cell):
    return cell["correct"] / cell["n"] if cell["n"] else None


def pooled(parts: list[dict], category: str):
    """A RippleEdits category's accuracy over all the counted queries of ``parts``."""
    return _share({k: sum(p["ripple"][category][k] for p in parts) for k in ("n", "correct")})


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _fmt(x, digits=3):
    return "-" if x is None else (f"{x:.{digits}g}" if isinstance(x, float) else str(x))


def summarize(rows: list[dict], method: str) -> list[list]:
    """One line per variant over the rows of ``method``."""
    mine = [r for r in rows if r["method"] == method]
    damaged_plain = sum(len(r["plain"]["damaged"]) for r in mine)
    out = []
    for v in VARIANTS:
        parts = [r[v] for r in mine]
        dmg = sum(len(p["damaged"]) for p in parts)
        removed = (1 - dmg / damaged_plain) if damaged_plain and v != "plain" else None
        cases = sum(bool(p["damaged"]) for p in parts)
        out.append([v, len(mine), dmg, cases, _fmt(removed), _fmt(_mean([p["efficacy"] for p in parts])),
                    _fmt(_mean([p["paraphrase"] for p in parts])), _fmt(_mean([p["neighborhood"] for p in parts])),
                    _fmt(pooled(parts, "relation_specificity")), _fmt(_mean([p["drift"] for p in parts])),
                    _fmt(_mean([p["drift_last_layer"] for p in parts])),
                    _fmt(_mean([p.get("seconds") for p in parts]))])
    return out


def render() -> None:
    from benchmarks.common import source_versions
    from ripple.io import atomic_write_text

    lines = ["# SIR: selective impact revision, measured", "",
             "Rendered by `python -m benchmarks sir/compare --render` from reports/sir_*.json (each run's command below). "
             "Damaged: probe items answered right before the edit and wrong after it, neither edited nor required "
             "to change by the ground truth (the organism's world or the real-world graph); 'removed' is the share "
             "of the plain edit's damaged items that the variant does not damage (it can be negative). Efficacy, "
             "paraphrase and neighbourhood are CounterFact's probability races; relation specificity the share of "
             "the subject's other facts (known before) still right; drift the mean cosine distance of hidden states "
             "of the items not required to change (at the edited layer, and at the last layer). Seconds: the "
             "variant's edit; for sir, the whole GIE -> SIR loop after the plain edit.", ""]
    cols = ["variant", "cases", "damaged items", "cases with damage", "removed", "efficacy", "paraphrase",
            "neighbourhood", "relation specificity", "drift", "drift, last layer", "seconds"]
    for path in sorted(REPORTS.glob("sir_*.json")):
        data = json.loads(path.read_text())
        cfg, rows = data["config"], data["rows"]
        cmd = (f"python -m benchmarks sir/compare --model {cfg['model']} --methods {' '.join(cfg['methods'])} --edits "
               f"{cfg['edits']}" + (f" --batch {cfg['batch']}" if cfg["batch"] != 1 else "")
               + (f" --name {path.stem[4:]}" if path.stem[4:] != Path(cfg["model"]).stem else "")
               + (f" --set {' '.join(cfg['set'])}" if cfg["set"] else "")
               + (" --only " + " ".join(f"'{c}'" for c in cfg["only"]) if cfg.get("only") else ""))
        n_cases = len(cfg["only"]) if cfg.get("only") else -(-cfg["edits"] // cfg["batch"])
        what = (f"{n_cases} of the {cfg['edits']} random edits" if cfg.get("only") else
                f"{cfg['edits']} random edits")
        lines += [f"## {path.stem[4:]}", "", f"`{cmd}`: {what} (seed {cfg['seed']}"
                  + (f"; real-world facts the model knows, {cfg['known_facts']} of them" if cfg["known_facts"] else
                     "; every editable relation of the world")
                  + f"), {cfg['batch']} per solve, {cfg['probes']} probe items. {source_versions(rows)}", ""]
        for method in cfg["methods"]:
            mine = [r for r in rows if r["method"] == method]
            if not mine:
                continue
            done = "" if len(mine) >= n_cases else f" ({len(mine)} of {n_cases} cases measured so far)"
            lines += [f"**{method}**{done}", "", *md_table(cols, summarize(rows, method))]
            cats = list(mine[0]["plain"]["ripple"])
            lines += ["", "RippleEdits categories (accuracy over every counted query of these cases):", "",
                      *md_table(["variant", *cats])]
            lines += [md_row([v, *(_fmt(pooled([r[v] for r in mine], c)) for c in cats)]) for v in VARIANTS]
            sirs = [r["sir"] for r in mine]
            stops = {}
            for s in sirs:
                stops[s["stopped"]] = stops.get(s["stopped"], 0) + 1
            ratio = _mean([s["seconds"] / r["plain"]["seconds"] for s, r in zip(sirs, mine)
                           if r["plain"].get("seconds") and r["plain"]["damaged"]])
            rratio = _mean([s["revise_seconds"] / r["plain"]["seconds"] for s, r in zip(sirs, mine)
                            if r["plain"].get("seconds") and r["plain"]["damaged"]])
            held = {k: sum(s.get("heldout", {}).get(k, 0) for s in sirs) for k in ("broken_by_plain", "repaired")}
            lines += ["", f"Held-out wordings of the plain edit's damaged facts (the relation's held-out templates, "
                      f"which SIR never saw): the plain edit breaks {held['broken_by_plain']} that were right before; "
                      f"SIR answers {held['repaired']} of them right."]
            shaped = [s["shapes"] for s in sirs if "shapes" in s]
            if shaped:
                got = {k: sum(x[k] for x in shaped) for k in ("broken_by_plain", "repaired")}
                share = got["repaired"] / got["broken_by_plain"] if got["broken_by_plain"] else None
                lines += ["", f"Held-out sentence shapes ({len(shaped)} cases; per relation the world's and the relation "
                          "library's held-out templates and the library's questions asked as completions, none of which "
                          f"SIR reads): the plain edit breaks {got['broken_by_plain']} facts-in-a-shape that were right "
                          f"before; SIR answers {got['repaired']} of them right ({_fmt(share)}; the goal is 0.8)."]
            lines += ["", f"SIR stopped: {', '.join(f'{k} {v}' for k, v in sorted(stops.items()))}. On cases with "
                      f"damage, SIR's time is {_fmt(ratio)}x the edit's with its measurements, {_fmt(rratio)}x "
                      "for the revisions alone.", ""]
    notes = REPORTS / "sir_notes.md"  # what the figures show, written by hand after reading them
    if notes.exists():
        lines += ["## What it shows", "", notes.read_text().strip(), ""]
    atomic_write_text(REPORTS / "sir.md", "\n".join(lines).rstrip() + "\n")


if __name__ == "__main__":
    main()
