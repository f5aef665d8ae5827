"""Open-world audits on a real model: for edits outside the knowledge graph's relations, the share of
core rules an audit can measure and on how many items; and, on edits inside the graph where ground
truth exists, how often the open world's references (the model's belief) agree with the graph.

1. coverage: the 50 edits of benchmarks/real_models/open_world_edits.jsonl whose relation the graph
   lacks, completed as ``ripple audit`` completes them (graph first, then the open world): per core
   rule, measured or not, items, the minimum met or not; and ``--audits N`` of them audited end to
   end with ROME (the verdict, each rule's status);
2. agreement: ``--facts N`` facts of the graph that the model knows (drawn with a fixed seed over the
   relations), each turned into an edit and completed by the open world alone (as if the graph were
   absent): the model-belief references compared with the graph's truth: the old answer, the
   neighbours (said to share the old answer), the other relations (specificity answers).

    python -m benchmarks audit/open_world --model smollm2 [--audits 3] [--facts 40]
    python -m benchmarks audit/open_world --model gemma3-270m

Writes reports/audit_any_edit/open_world_{model}.json (resumable: a rerun with the same settings
goes on where it stopped).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EDITS = ROOT / "benchmarks" / "real_models" / "open_world_edits.jsonl"
OUT = ROOT / "reports" / "audit_any_edit"
CORE = ("efficacy", "paraphrase", "neighborhood", "relation_specificity", "unintended_changes", "perplexity_ratio")


def _save(path: Path, obj: dict) -> None:
    from ripple.io import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj)


def coverage_row(lab, edit: dict) -> dict:
    """One edit completed as the audit completes it, and what each core rule would rest on."""
    from ripple.auditing.policy import DEFAULT_POLICY
    from ripple.editing.requests import parse_request

    t0 = time.perf_counter()
    given = {k: edit[k] for k in ("prompt", "subject", "target_new", "target_true")}  # as a request file holds it
    request = lab.setup.complete([parse_request(given)])[0]
    n = {"efficacy": 1, "paraphrase": len(request.paraphrase_prompts),
         "neighborhood": len(request.neighborhood_prompts), "relation_specificity": len(request.specificity_prompts)}
    rules = {}
    for metric, items in n.items():
        rule = DEFAULT_POLICY.rule(metric)
        rules[metric] = {"n": items, "measured": items > 0, "minimum_met": items >= rule.min_items}
    for metric in ("unintended_changes", "perplexity_ratio"):  # need no request: measured on every audit
        rules[metric] = {"n": None, "measured": True, "minimum_met": True}
    return {"prompt": edit["prompt"], "subject": edit["subject"], "label": edit["relation"],
            "target_true_given": edit.get("target_true"), "target_true": request.target_true,
            "sources": dict(request.sources), "rules": rules, "seconds": round(time.perf_counter() - t0, 2)}


def audit_row(lab, edit: dict) -> dict:
    """The edit audited end to end with ROME: the verdict and each core rule's finding."""
    t0 = time.perf_counter()
    report = lab.audit("rome", [{k: edit[k] for k in ("prompt", "subject", "target_new", "target_true")}],
                       quiet=True)
    findings = {f.metric: {"status": f.status, "value": f.value, "n": f.n, "source": f.source, "note": f.note}
                for f in report.findings if f.metric in CORE}
    return {"prompt": edit["prompt"], "subject": edit["subject"], "verdict": report.verdict, "findings": findings,
            "seconds": round(time.perf_counter() - t0, 1)}


def agreement_row(lab, fact: tuple[str, str], rng: random.Random) -> dict | None:
    """One known fact of the graph edited to another object of its type, completed by the open world
    alone; its references checked against the graph."""
    from ripple.editing.open_world import complete_open, relation_library
    from ripple.editing.requests import EditRequest

    world = lab.world
    subject, rel = fact
    relation = world.relations[rel]
    true = [world.name(o) for o in world.objects(subject, rel)]
    others = [e.name for e in world.of_type(relation.object_type) if e.name not in true]
    if not others:
        return None
    request = EditRequest(relation.templates[0], world.name(subject), rng.choice(sorted(others)))
    done = complete_open(lab.model, lab.tokenizer, request)

    def truth(subject_name: str, relation_name: str) -> list[str] | None:
        try:
            sid = world.id_of(subject_name)
        except KeyError:
            return None
        if relation_name not in world.relations:
            return None
        objects = world.objects(sid, relation_name)
        return [n for o in objects for n in (world.name(o), *world.entities[o].aliases)] or None

    neighbours = []
    answers = done.neighborhood_answers or (done.target_true,) * len(done.neighborhood_prompts)
    head, tail = request.prompt.split("{}", 1)
    for prompt, answer in zip(done.neighborhood_prompts, answers):
        name = prompt[len(head):len(prompt) - len(tail)] if prompt.startswith(head) and prompt.endswith(tail) else None
        t = truth(name, rel) if name else None
        if t is not None:
            neighbours.append(answer in t)
    lib = relation_library()
    spec = []
    for template, answer in zip(done.specificity_prompts, done.specificity_answers):
        name = next((r.name for r in lib.values() if r.templates[0] == template), None)
        t = truth(world.name(subject), name) if name else None
        if t is not None:
            spec.append(answer in t)
    return {"subject": world.name(subject), "relation": rel, "target_new": request.target_new,
            "true": true, "belief_old": done.target_true, "old_agrees": done.target_true in true,
            "neighbours_checked": len(neighbours), "neighbours_agree": sum(neighbours),
            "specificity_checked": len(spec), "specificity_agree": sum(spec), "sources": dict(done.sources)}


def main(argv=None) -> int:
    from benchmarks.common import known_facts, resumable, set_threads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--audits", type=int, default=3, help="edits audited end to end with ROME")
    ap.add_argument("--facts", type=int, default=40, help="known graph facts for the agreement check")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    import ripple
    from ripple.world.real import REAL_RELATIONS

    path = OUT / f"open_world_{args.model}.json"
    config = {"model": args.model, "audits": args.audits, "facts": args.facts}
    state = resumable(path, config, coverage=[], audits=[], agreement=[])
    edits = [json.loads(line) for line in EDITS.read_text(encoding="utf-8").splitlines()]
    outside = [e for e in edits if e["relation"] not in REAL_RELATIONS]
    lab = ripple.load(args.model)
    for edit in outside[len(state["coverage"]):]:
        state["coverage"].append(coverage_row(lab, edit))
        _save(path, state)
        print(f"coverage {len(state['coverage'])}/{len(outside)}", flush=True)
    for edit in outside[len(state["audits"]):args.audits]:
        state["audits"].append(audit_row(lab, edit))
        _save(path, state)
        print(f"audit {len(state['audits'])}/{args.audits}: {state['audits'][-1]['verdict']}", flush=True)
    if len(state["agreement"]) < args.facts:
        rng = random.Random(0)
        facts = sorted(known_facts(lab.setup))
        rng.shuffle(facts)
        rows, k = [], 0
        while len(rows) < args.facts and k < len(facts):
            row = agreement_row(lab, facts[k], random.Random(k))
            k += 1
            if row is not None:
                rows.append(row)
                if len(rows) > len(state["agreement"]):
                    state["agreement"].append(row)
                    _save(path, state)
        state["known_facts"] = len(facts)
    _save(path, state)
    cov = state["coverage"]
    measured = sum(r["rules"][m]["measured"] for r in cov for m in CORE)
    print(f"{args.model}: {measured}/{len(cov) * len(CORE)} core rules measurable over {len(cov)} edits; "
          f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
