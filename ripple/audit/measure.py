"""Audit one proposed edit (or several applied together) in a sandbox: measure, edit, measure,
restore the weights bit-exactly, and return everything the report and the verdict need.

Measured on the unedited and the edited model:

* the CounterFact metrics of each request (efficacy, paraphrase, neighbourhood);
* the RippleEdits categories from the world's ground truth (models with a ``world.json``);
* the GIE ripple graph over a probe set (drift by hop, answers that changed, unintended changes:
  changed answers that are neither the edited fact nor something the ground truth says must change);
* mean per-sentence perplexity on fixed general sentences (the collapse indicator);
* the relative size of the weight update.

>>> # doctest: +SKIP
>>> result = audit_edits(setup, "rome", [request], items, sentences)
>>> result.metrics["efficacy"], result.metrics["perplexity_ratio"]
(1.0, 1.01)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ripple.editing.metrics import aggregate, request_metrics
from ripple.editing.session import run_edits
from ripple.errors import RippleError
from ripple.evaluate.perplexity import sentence_perplexities
from ripple.evaluate.ripple_scores import RIPPLE_CATEGORIES, category_totals, plan_ripple, score_ripple
from ripple.gie.graph import build_graph, ripple_profile
from ripple.gie.measure import measure_items
from ripple.gie.run import drift_position, find_edited_item
from ripple.gie.targets import expected_changes, world_edit
from ripple.probes.sets import ProbeItem
from ripple.progress import Stages

#: Editors that solve for one request at a time: several requests go in one after another.
ONE_AT_A_TIME = ("rome", "ft")
MOST_AFFECTED = 12


@dataclass
class AuditResult:
    """What :func:`audit_edits` measured: the JSON-ready parts and the GIE graphs (for figures)."""

    metrics: dict  # the flat metrics the policy judges (None: not measurable here)
    details: dict  # JSON-ready: per-edit metrics, ripple categories, GIE profile, perplexity, norms
    graphs: list[nx.Graph] = field(default_factory=list)
    profiles: list[dict] = field(default_factory=list)


def edit_mode(method: str, n: int) -> str:
    if n == 1:
        return "single"
    return "sequential" if method in ONE_AT_A_TIME else "batch"


def edited_items(items: list[ProbeItem], requests, world) -> tuple[list[ProbeItem], list[str]]:
    """The probe item each request rewrites (added to the items when the probe set lacks it)."""
    items = list(items)
    ids = []
    for i, req in enumerate(requests):
        edit = world_edit(world, req)
        hint = "|".join(edit[:2] + edit[3:]) if edit else None
        try:
            ids.append(find_edited_item(items, req, hint if hint in {it.id for it in items} else None))
        except RippleError:
            answer = req.target_true or req.target_new
            item = ProbeItem(id=f"edit-{i + 1}:{req.subject}", subject=req.subject, relation="edited",
                             prompt=req.prompt, answer=answer)
            items.append(item)
            ids.append(item.id)
    return items, ids


def answer_swaps(items: list[ProbeItem], before, after) -> set[str]:
    """Ids of items whose greedy answer changed from one right answer to another right answer of
    the same prompt (a one-to-many relation such as a country's languages): not damage."""
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item.rendered, []).append(i)
    out = set()
    for idx in groups.values():
        if any(before.correct[i] for i in idx) and any(after.correct[i] for i in idx):
            out |= {items[i].id for i in idx if before.greedy[i] != after.greedy[i]}
    return out


def _most_affected(graph: nx.Graph, items: list[ProbeItem], edited: set[str], expected: set[str],
                   swaps: set[str]) -> list[dict]:
    rendered = {item.id: item.rendered for item in items}
    rows = []
    for node, d in graph.nodes(data=True):
        role = "edited" if node in edited else "expected" if node in expected else (
            "answer swap" if node in swaps else "unintended" if d["changed"] else "kept")
        rows.append({"id": node, "prompt": rendered[node], "answer": d["answer"],
                     "before": d["answer_before"], "after": d["answer_after"], "changed": d["changed"],
                     "role": role, "delta_logp": round(d["delta_logp"], 4), "drift": round(d["drift"], 5),
                     "hops": d["hops"]})
    rows.sort(key=lambda r: (not r["changed"], -abs(r["delta_logp"]), -r["drift"], r["id"]))
    return rows[:MOST_AFFECTED]


def task_acc_drop(before: dict, after: dict) -> float | None:
    """The largest fall of any task's ``acc`` (before minus after); None without tasks."""
    drops = [before[t]["acc"] - after[t]["acc"] for t in before if "acc" in before[t] and "acc" in after.get(t, {})]
    return max(drops) if drops else None


def audit_edits(setup, method: str, requests, items, sentences: list[str], k: int = 5, force: bool = False,
                quiet: bool = True, desc: str = "audit", bridge=None) -> AuditResult:
    """Audit ``requests`` applied together with ``method`` on ``setup``'s model (an
    :class:`~ripple.commands.edit.EditSetup`); the model is restored exactly before returning,
    also when a measurement fails or the run is interrupted."""
    model, tok, spec, hp, world, ctx = setup.model, setup.tok, setup.spec, setup.hp, setup.world, setup.ctx
    requests = list(requests)
    mode = edit_mode(method, len(requests))
    items, target_ids = edited_items(items, requests, world)
    expected = set()
    for req in requests:
        expected |= expected_changes(world, world_edit(world, req), items)
    expected -= set(target_ids)
    with_world = world is not None and all(world_edit(world, r) is not None for r in requests)
    stages = ["before", "edit", "after", "restore"]
    with Stages(stages, desc=desc, quiet=quiet) as bar:
        bar.next("measuring the unedited model")
        before_rows = [request_metrics(model, tok, r) for r in requests]
        ppl_before = sentence_perplexities(model, tok, sentences)
        states_before = measure_items(model, tok, spec, items)
        plans = [plan_ripple(model, tok, world, r) for r in requests] if with_world else []
        tasks_before = bridge.evaluate() if bridge is not None else None
        bar.next(f"editing ({method}, {mode})")
        run = run_edits(ctx, method, requests, hp, mode="batch" if mode != "sequential" else "sequential",
                        force=force)
        try:
            bar.next("measuring the edited model")
            after_rows = [request_metrics(model, tok, r) for r in requests]
            ppl_after = sentence_perplexities(model, tok, sentences)
            states_after = measure_items(model, tok, spec, items)
            ripple = [score_ripple(model, tok, p) for p in plans]
            tasks_after = bridge.evaluate() if bridge is not None else None
        finally:
            bar.next("restoring the weights")
            run.restore(ctx)
    norms = run.total.norm_ratios(model)

    edit_layers = hp.layers_for(spec.n_layers(model))
    position = drift_position(hp)
    graphs, profiles = [], []
    for target in target_ids:
        g = build_graph(items, states_before, states_after, target, k=k, edit_layers=edit_layers,
                        position=position)
        g.graph["method"] = method
        graphs.append(g)
        profiles.append(ripple_profile(g, expected | (set(target_ids) - {target})))
    changed = [i for i, (a, b) in enumerate(zip(states_before.greedy, states_after.greedy)) if a != b]
    swaps = answer_swaps(items, states_before, states_after)
    unintended = sorted(items[i].id for i in changed
                        if items[i].id not in expected | set(target_ids) and items[i].id not in swaps)

    before, after = aggregate(before_rows), aggregate(after_rows)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    ripple_sum = category_totals(ripple) if ripple else None
    metrics = {
        "efficacy": after.get("efficacy"), "paraphrase": after.get("paraphrase"),
        "neighborhood": after.get("neighborhood"),
        "efficacy_top1": after.get("efficacy_top1"), "paraphrase_top1": after.get("paraphrase_top1"),
        "neighborhood_top1": after.get("neighborhood_top1"),
        "unintended_changes": len(unintended),
        "perplexity_ratio": mean(ppl_after) / mean(ppl_before),
        "update_norm_ratio": max(norms.values()) if norms else 0.0,
        "task_acc_drop": task_acc_drop(tasks_before, tasks_after) if bridge is not None else None,
    }
    for cat in RIPPLE_CATEGORIES:
        metrics[cat] = ripple_sum["categories"][cat]["accuracy"] if ripple_sum else None
    metrics["ripple_overall"] = ripple_sum["overall"] if ripple_sum else None
    details = {
        "mode": mode,
        "per_edit": [{"case_id": r.case_id, "subject": r.subject, "prompt": r.rendered, "target_new": r.target_new,
                      "target_true": r.target_true, "before": b, "after": a}
                     for r, b, a in zip(requests, before_rows, after_rows)],
        "edit_metrics": {"before": before, "after": after},
        "ripple": None if ripple_sum is None else {
            **ripple_sum, "per_edit": [{"case_id": r["case_id"], "categories": r["categories"]} for r in ripple]},
        "gie": {"n_probes": len(items), "layer": profiles[0]["layer"], "position": position, "k": k,
                "edited_ids": target_ids, "expected": sorted(expected), "unintended": unintended,
                "n_changed": len(changed), "answer_swaps": sorted(swaps), "by_hop": profiles[0]["by_hop"],
                "by_sim_rank": profiles[0]["by_sim_rank"],
                "per_edit": [{"edited_id": p["edited_id"], **p["summary"]} for p in profiles]},
        "most_affected": _most_affected(graphs[0], items, set(target_ids), expected, swaps),
        "perplexity": {"n_sentences": len(sentences), "source": "world" if world is not None else "english",
                       "before": mean(ppl_before), "after": mean(ppl_after),
                       "ratio": metrics["perplexity_ratio"]},
        "update_norms": norms,
        "lm_eval": None if bridge is None else {"tasks": bridge.tasks, "before": tasks_before, "after": tasks_after},
    }
    return AuditResult(metrics=metrics, details=details, graphs=graphs, profiles=profiles)
