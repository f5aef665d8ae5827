"""How often an audit passes a fix (a fact the model answers wrong, edited to the truth) on a real model.

How often does an audit pass a fix on a real model? The fixes: facts of the real-world graph
the model answers wrong (greedy answer on the probe template, named as an entity of the graph),
a seeded sample of them, each audited alone with the defaults (``ripple audit --model M --method
METHOD --prompt ... --subject ... --target TRUE``): the verdict, the rules' values, and the
unintended changes. Rows go to ``reports/real_fixes_<model>.json`` after every fix (a rerun goes
on from there); the table to ``reports/real_fixes_<model>.md``; each audit's report directory to
``runs/real_fixes/<model>/<case>``.

    python -m benchmarks real_models/fixes --model smollm2 --fixes 12
"""

from __future__ import annotations

import argparse
import random
import time

from benchmarks.common import REPORTS, load_json, matching, md_row, md_table, set_threads

RULES = ("efficacy", "paraphrase", "neighborhood", "relation_specificity", "unintended_changes", "perplexity_ratio")


def wrong_facts(setup) -> list[tuple[str, str, str]]:
    """``(subject, relation, said)``: the graph's one-answer facts the model gets wrong, ``said``
    being a graph entity of the relation's object type (its wrong answer)."""
    from ripple.editing.setup import greedy_text, said_answer
    from ripple.scoring import query_correct
    from ripple.tokens import fill
    from ripple.world.queries import fact_query

    world = setup.world
    keys = sorted({(f.subject, f.relation) for f in world.facts if len(world.objects(f.subject, f.relation)) == 1})
    hits = query_correct(setup.model, setup.tok, [fact_query(world, s, r, world.relations[r].templates[0])
                                                  for s, r in keys])
    out = []
    for (s, r), hit in zip(keys, hits):
        if hit:
            continue
        rel = world.relations[r]
        names = {e.name for e in world.of_type(rel.object_type)}
        said = said_answer(greedy_text(setup.model, setup.tok, fill(rel.templates[0], world.name(s))), names)
        if said in names:
            out.append((s, r, said))
    return out


def main(argv=None) -> None:
    from ripple.auditing.measure import AuditInputs
    from ripple.auditing.policy import DEFAULT_POLICY
    from ripple.auditing.run import AuditConfig, run_audit
    from ripple.editing.requests import EditRequest
    from ripple.editing.setup import load_setup
    from ripple.evaluate.perplexity import general_sentences_for
    from ripple.io import atomic_write_json, atomic_write_text
    from ripple.probes.sets import probe_items

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--method", default="rome")
    ap.add_argument("--fixes", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="runs/real_fixes")
    args = ap.parse_args(argv)
    set_threads()
    setup = load_setup(args.model, args.method)
    world = setup.world
    candidates = wrong_facts(setup)
    chosen = random.Random(args.seed).sample(candidates, min(args.fixes, len(candidates)))
    items = probe_items(None, world)
    sentences = general_sentences_for(world)
    name = args.model.replace(".", "_")
    path = REPORTS / f"real_fixes_{name}.json"
    REPORTS.mkdir(parents=True, exist_ok=True)
    rows = matching(load_json(path, {"rows": []})["rows"], {"method": args.method, "seed": args.seed})
    for s, r, said in chosen:
        rel = world.relations[r]
        case = f"{s}|{r}|{world.objects(s, r)[0]}"
        if any(row["case"] == case for row in rows):
            continue
        req = EditRequest(prompt=rel.templates[0], subject=world.name(s), target_new=world.name(world.objects(s, r)[0]))
        setup.requests = setup.complete([req])
        t0 = time.perf_counter()
        report = run_audit(AuditInputs(setup, items, sentences), setup.requests, AuditConfig(DEFAULT_POLICY, args.model),
                           f"{args.runs}/{name}/{case.replace('|', '_')}")
        found = {f["metric"]: f for f in report["verdict"]["findings"]}
        rows.append({"case": case, "method": args.method, "seed": args.seed, "said": said,
                     "prompt": setup.requests[0].rendered, "target": req.target_new,
                     "verdict": report["verdict"]["status"],
                     **{m: found[m]["value"] for m in RULES if m in found},
                     "statuses": {m: found[m]["status"] for m in found},
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(rows[-1], flush=True)
        atomic_write_json(path, {"model": args.model, "candidates": len(candidates), "rows": rows})
    verdicts = [r["verdict"] for r in rows]
    lines = [f"# Fixes audited on {args.model}", "",
             f"Reproduce: `python -m benchmarks real_models/fixes --model {args.model} --method {args.method} "
             f"--fixes {args.fixes} --seed {args.seed}`", "",
             f"{len(rows)} fixes (seed {args.seed}) drawn from the {len(candidates)} one-answer facts of the real-world "
             f"graph that {args.model} answers wrong with another entity of the graph; each audited alone with "
             f"{args.method} and the defaults. Verdicts: " + ", ".join(f"{v} {verdicts.count(v)}" for v in
                                                                       ("pass", "warn", "fail")) + ".", "",
             *md_table(["fix", "model said", "verdict", *RULES])]

    def cell(x):
        return "-" if x is None else (f"{x:.3g}" if isinstance(x, float) else str(x))

    lines += [md_row([f"{r['prompt']} → {r['target']}", r["said"], r["verdict"].upper(),
                      *(cell(r.get(m)) for m in RULES)]) for r in rows]
    atomic_write_text(REPORTS / f"real_fixes_{name}.md", "\n".join(lines) + "\n")
    print(REPORTS / f"real_fixes_{name}.md")


if __name__ == "__main__":
    main()
