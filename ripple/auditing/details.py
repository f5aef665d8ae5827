"""The JSON-ready details of an audit that the report shows (beside the verdict's metrics):
per-edit metrics, ripple categories, the GIE profile, the most affected probe items, perplexity,
update norms and lm-eval scores. :mod:`ripple.auditing.render` turns them into Markdown and HTML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import networkx as nx

from ripple.auditing.metrics import mean
from ripple.editing.metrics import aggregate
from ripple.evaluate.ripple_scores import category_totals
from ripple.interactive.graph import item_role
from ripple.probes.sets import ProbeItem

if TYPE_CHECKING:
    from ripple.auditing.measure import Measurement
    from ripple.evaluate.changes import AuditPlan, Changes

MOST_AFFECTED = 12


def most_affected(graph: nx.Graph, items: list[ProbeItem], edited: set[str], expected: set[str],
                  swaps: set[str], unintended: set[str], n: int = MOST_AFFECTED) -> list[dict]:
    """The ``n`` probe items the edit moved most: changed answers first, then by |Δ log p| and drift."""
    rendered = {item.id: item.rendered for item in items}
    rows = []
    for node, d in graph.nodes(data=True):
        role = item_role(node, d, edited, expected, swaps, unintended)
        rows.append({"id": node, "prompt": rendered[node], "answer": d["answer"],
                     "before": d["answer_before"], "after": d["answer_after"], "changed": d["changed"],
                     "role": role, "delta_logp": round(d["delta_logp"], 4), "drift": round(d["drift"], 5),
                     "hops": d["hops"]})
    rows.sort(key=lambda r: (not r["changed"], -abs(r["delta_logp"]), -r["drift"], r["id"]))
    return rows[:n]


@dataclass
class Audited:
    """What one audit measured, for its report: the editing ``mode``, the requests, the plan, both
    sides' measurements, the classified changes, the GIE graphs and profiles (one per edited item),
    the update norms and where drift was read (``position``)."""

    mode: str
    requests: list
    plan: AuditPlan
    before: Measurement
    after: Measurement
    changes: Changes
    graphs: list[nx.Graph]
    profiles: list[dict]
    norms: dict
    position: str
    modes: object = None  # the ripple.evaluate.generated.Modes scored (None: teacher-forced only)


def report_details(run: Audited, metrics: dict, k: int, world, bridge=None) -> dict:
    """The report's details of one audit (see the module docstring)."""
    mode, requests, plan, before, after = run.mode, run.requests, run.plan, run.before, run.after
    changes, graphs, profiles, norms, position = run.changes, run.graphs, run.profiles, run.norms, run.position
    ripple_sum = category_totals(after.ripple) if after.ripple else None
    first = profiles[0]
    return {
        "mode": mode,
        "per_edit": [{"case_id": r.case_id, "subject": r.subject, "prompt": r.rendered, "target_new": r.target_new,
                      "target_true": r.target_true, "before": b, "after": a}
                     for r, b, a in zip(requests, before.requests, after.requests)],
        "edit_metrics": {"before": aggregate(before.requests), "after": aggregate(after.requests)},
        "ripple": None if ripple_sum is None else {
            **ripple_sum, "per_edit": [{"case_id": r["case_id"], "categories": r["categories"]} for r in after.ripple]},
        "gie": {"n_probes": len(plan.items), "layer": first["layer"], "position": position, "k": k,
                "edited_ids": plan.target_ids, "expected": sorted(plan.expected), "unintended": changes.unintended,
                "n_changed": len(changes.changed), "answer_swaps": sorted(changes.swaps),
                "wrong_answer_flips": changes.wrong_flips, "by_hop": first["by_hop"],
                "by_sim_rank": first["by_sim_rank"],
                "per_edit": [{"edited_id": p["edited_id"], **p["summary"]} for p in profiles]},
        "most_affected": most_affected(graphs[0], plan.items, set(plan.target_ids), plan.expected, changes.swaps,
                                       set(changes.unintended)),
        "perplexity": {"n_sentences": len(before.perplexities), "source": "world" if world is not None and world.kind == "synthetic" else "english",
                       "before": mean(before.perplexities), "after": mean(after.perplexities),
                       "ratio": metrics["perplexity_ratio"]},
        "update_norms": norms,
        "lm_eval": None if bridge is None else {"tasks": bridge.tasks, "before": before.tasks, "after": after.tasks},
        "answers": answers_details(run, metrics),
    }


#: The metrics shown side by side per answer mode (the race's key first).
MODE_ROWS = ("efficacy", "paraphrase", "neighborhood", "relation_specificity", "unintended_changes")


def answers_details(run: Audited, metrics: dict) -> dict | None:
    """The answer modes scored, each core metric under each, and the generated texts shown before
    and after (None: only the teacher-forced scores were measured)."""
    modes = run.modes
    if modes is None or not modes.generate:
        return None
    names = modes.names
    key = lambda metric, mode: metric if mode == "race" else f"{metric}_{mode}"  # noqa: E731
    by_mode = {m: {mode: metrics.get(key(m, mode)) for mode in names} for m in MODE_ROWS}
    for greedy in ("relation_specificity", "unintended_changes"):  # teacher-forced, these are top-1 figures
        by_mode[greedy]["top1"] = by_mode[greedy].pop("race")
    shown = [{"prompt": b["prompt"], "chat": b["chat"], "before": b["text"], "after": a["text"]}
             for b, a in zip(run.before.generated.get("texts", []), run.after.generated.get("texts", []))]
    from ripple.evaluate.generated import CHAT_SCOPE  # lazy: start-up

    reasons = run.after.generated.get("chat_reasons") or []
    note = "; ".join(([modes.note] if modes.note else []) + [f"chat: {r}" for r in reasons]) or None
    return {"modes": list(names), "note": note, "scope": CHAT_SCOPE if modes.chat else None,
            "by_mode": by_mode, "texts": shown}
