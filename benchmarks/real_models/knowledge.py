"""What a real model knows of the real-world graph (ripple.world.real), by greedy top-1.

For every relation: facts answered on the probe template (``templates[0]``, the CounterFact
prompt), on each of the other core templates and on the held-out ones, and under the subject's
first alias; for every two-hop relation, the questions whose two hops the model knows, and how
many of those it composes. Every fact of the graph is counted (no subset). Writes
``reports/real_knowledge_<model>.json``; ``python -m benchmarks real_models/report`` renders it.

    python -m benchmarks real_models/knowledge --model smollm2
    python -m benchmarks real_models/knowledge --model gemma3-270m
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import set_threads


def knowledge(model, tok, world) -> dict:
    from ripple.scoring import query_correct
    from ripple.tokens import fill
    from ripple.world.queries import Query, fact_query

    keys = sorted({(f.subject, f.relation) for f in world.facts})
    out = {"relations": {}, "two_hops": {}}
    known = {}
    for rel_name, rel in world.relations.items():
        mine = [k for k in keys if k[1] == rel_name]
        row = {"facts": len(mine)}
        for label, templates in (("core", rel.templates), ("heldout", rel.heldout_templates)):
            per = []
            for t in templates:
                hits = query_correct(model, tok, [fact_query(world, s, r, t) for s, r in mine])
                per.append(sum(hits))
                if t == rel.templates[0]:
                    known.update({k: h for k, h in zip(mine, hits)})
            row[label] = per
        row["known"] = sum(known[k] for k in mine)
        aliased = [k for k in mine if world.entities[k[0]].aliases]
        hits = query_correct(model, tok, [fact_query(world, s, r, rel.templates[0],
                                                     subject_text=world.entities[s].aliases[0]) for s, r in aliased])
        row["alias"] = {"facts": len(aliased), "correct": sum(hits),
                        "correct_when_known": sum(h for k, h in zip(aliased, hits) if known[k])}
        out["relations"][rel_name] = row
    for th_name, th in world.two_hops.items():
        qs, both = [], []
        for s, r in keys:
            if r != th.first:
                continue
            answers = world.two_hop_answers(s, th_name)
            if not answers:
                continue
            bridges = world.objects(s, th.first)
            both.append(known[(s, r)] and all(known.get((b, th.second), False) for b in bridges))
            qs += [Query(fill(t, world.name(s)), world.name(s), tuple(world.name(a) for a in answers),
                         th_name, t) for t in th.templates]
        hits = query_correct(model, tok, qs)
        per_q = [any(hits[i * len(th.templates):(i + 1) * len(th.templates)]) for i in range(len(both))]
        out["two_hops"][th_name] = {"questions": len(both), "hops_known": sum(both),
                                    "composed_when_known": sum(p for p, b in zip(per_q, both) if b),
                                    "composed": sum(per_q)}
    out["known_facts"] = sum(known.values())
    out["facts"] = len(keys)
    return out


def main(argv=None) -> None:
    from ripple.loading import load_model
    from ripple.world.real import real_world

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--out", type=Path, default=Path("reports"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    model, tok, _ = load_model(args.model)
    res = {"model": args.model, **knowledge(model, tok, real_world())}
    name = Path(args.model).stem.replace(".", "_")
    path = args.out / f"real_knowledge_{name}.json"
    path.write_text(json.dumps(res, indent=1) + "\n")
    print(f"{path}: {res['known_facts']} of {res['facts']} facts known on the probe template")


if __name__ == "__main__":
    main()
