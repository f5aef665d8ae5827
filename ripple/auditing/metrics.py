"""The flat metric dict an audit's policy judges, keyed by the policy's rule names.

:data:`AUDIT_METRICS` names every metric an audit measures, with what it is; the default
policy's rules (:data:`ripple.auditing.policy.DEFAULT_POLICY`) and any policy file name metrics
from it. A value of None means "not measurable here" (no world, no lm-eval tasks).

>>> "efficacy" in AUDIT_METRICS and "ripple_overall" in AUDIT_METRICS
True
"""

from __future__ import annotations

from dataclasses import dataclass

from ripple.editing.metrics import aggregate
from ripple.evaluate.ripple_scores import RIPPLE_CATEGORIES, category_totals

_CF = {"efficacy": "the new object beats the old on the rewrite prompt (share of requests)",
       "paraphrase": "the same race on paraphrased prompts",
       "neighborhood": "neighbouring subjects keep their true object (the race the other way)"}
#: The answer modes besides the race, as metric suffixes: top-1, generated completion, chat reply.
MODE_SUFFIXES = {"top1": "counted only when the winner is the greedy answer",
                 "gen": "scored on the generated completion (it begins with the answer)",
                 "chat": "scored on the reply to the relation's chat question (its first sentence names the answer "
                         "before the rival)"}
AUDIT_METRICS: dict[str, str] = {
    **_CF,
    **{f"{k}_{m}": f"{v}, {how}" for m, how in MODE_SUFFIXES.items() for k, v in _CF.items()},
    **{f"relation_specificity_{m}": f"the edited subject's other facts kept, {MODE_SUFFIXES[m]}" for m in ("gen", "chat")},
    "unintended_changes_gen": f"probe facts right before and wrong after, {MODE_SUFFIXES['gen']}",
    "unintended_changes": "probe facts answered right before the edit and wrong after, neither edited nor "
                          "required to change",
    "perplexity_ratio": "mean per-sentence perplexity on general sentences, after over before",
    "update_norm_ratio": "the largest ||dW||/||W|| of an edited matrix",
    "task_acc_drop": "the largest fall of an lm-eval task's acc, before minus after (audit --tasks)",
    **{cat: f"RippleEdits {cat.replace('_', ' ')} accuracy (world ground truth)" for cat in RIPPLE_CATEGORIES},
    "ripple_overall": "RippleEdits accuracy over every category (world ground truth)",
    **{f"{cat}_gen": f"RippleEdits {cat.replace('_', ' ')} accuracy, {MODE_SUFFIXES['gen']}"
       for cat in RIPPLE_CATEGORIES if cat != "relation_specificity"},
    "ripple_overall_gen": f"RippleEdits accuracy over every category, {MODE_SUFFIXES['gen']}",
}


@dataclass(frozen=True)
class Basis:
    """What a measured figure rests on: ``n`` items, where their reference answers come from
    (``source``: the graph's ground truth, the model's own belief, the user's file...), and for
    a figure that could not be measured, ``reason``."""

    n: int | None = None
    source: str | None = None
    reason: str | None = None


def task_acc_drop(before: dict, after: dict) -> float | None:
    """The largest fall of any task's ``acc`` (before minus after); None without tasks."""
    drops = [before[t]["acc"] - after[t]["acc"] for t in before if "acc" in before[t] and "acc" in after.get(t, {})]
    return max(drops) if drops else None


def mean(xs) -> float:
    return sum(xs) / len(xs)


def policy_metrics(before, after, changes, norms: dict, with_tasks: bool) -> dict:
    """Every metric of :data:`AUDIT_METRICS` from the two measurements (``before``/``after``:
    :class:`~ripple.auditing.measure.Measurement`), the classified changes and the update norms."""
    cf = aggregate(after.requests)
    ripple = category_totals(after.ripple) if after.ripple else None
    metrics = {name: cf.get(name) for name in (*_CF, *(f"{k}_{m}" for m in MODE_SUFFIXES for k in _CF))}
    metrics.update({
        "unintended_changes": len(changes.unintended),
        "perplexity_ratio": mean(after.perplexities) / mean(before.perplexities),
        "update_norm_ratio": max(norms.values()) if norms else 0.0,
        "task_acc_drop": task_acc_drop(before.tasks, after.tasks) if with_tasks else None,
    })
    for cat in RIPPLE_CATEGORIES:
        metrics[cat] = ripple["categories"][cat]["accuracy"] if ripple else None
    metrics["ripple_overall"] = ripple["overall"] if ripple else None
    if metrics["relation_specificity"] is None and getattr(after, "specificity", None):  # open world: model belief
        metrics["relation_specificity"] = mean(after.specificity)
    metrics.update(generated_metrics(before, after, changes, ripple))
    return metrics


def _kept(before: list, after: list) -> float | None:
    """The share right after among those right before (None: none was right before)."""
    pairs = [b for a, b in zip(before, after) if a]
    return mean(pairs) if pairs else None


def generated_metrics(before, after, changes, ripple: dict | None) -> dict:
    """The generated-answer metrics not in the requests' rows: relation specificity, unintended
    changes among the probe items, the RippleEdits categories (None where not measured)."""
    gb, ga = getattr(before, "generated", {}) or {}, getattr(after, "generated", {}) or {}
    out = {}
    for m in ("gen", "chat"):
        spec = _kept(gb.get(f"specificity_{m}", []), ga.get(f"specificity_{m}", []))
        cat = ripple["categories"]["relation_specificity"].get("accuracy_gen") if ripple and m == "gen" else None
        out[f"relation_specificity_{m}"] = cat if cat is not None else spec
    pb, pa = gb.get("probe_gen", []), ga.get("probe_gen", [])
    out["unintended_changes_gen"] = (sum(1 for i, (b, a) in enumerate(zip(pb, pa)) if b and a is False
                                         and i not in changes.allowed) if any(x is not None for x in pb) else None)
    for cat in RIPPLE_CATEGORIES:
        if cat != "relation_specificity":
            out[f"{cat}_gen"] = ripple["categories"][cat].get("accuracy_gen") if ripple else None
    out["ripple_overall_gen"] = ripple.get("overall_gen") if ripple else None
    return out


def _source(requests, field: str, default: str) -> str:
    """The sources of ``field`` over the requests, joined (``default``: where none was recorded)."""
    return "; ".join(dict.fromkeys(r.source(field) or default for r in requests))


def rule_basis(requests, plan, before, after, changes, world, norms: dict) -> dict[str, Basis]:
    """What each core figure rests on (items, reference source) and, where it could not be
    measured, why: the verdict says it (:func:`ripple.auditing.policy.judge`)."""
    truth = "world ground truth" if world is not None and world.kind == "synthetic" else "knowledge graph ground truth"
    n_req = len(requests)
    no_request = "no edit request given (pass --edit FILE: what the edit was meant to do)"
    n_para = sum(len(r.paraphrase_prompts) for r in requests)
    n_neigh = sum(len(r.neighborhood_prompts) for r in requests)
    out = {
        "efficacy": Basis(n_req, "the edit requests", None if n_req else no_request),
        "paraphrase": Basis(n_para, _source(requests, "paraphrase", "the request file") if n_para else None,
                            None if n_para else no_request if not n_req else
                            "no paraphrase prompts: the request gives none and none could be built for its relation"),
        "neighborhood": Basis(n_neigh, _source(requests, "neighborhood", "the request file") if n_neigh else None,
                              None if n_neigh else no_request if not n_req else
                              "no neighbourhood prompts: the request gives none and no neighbour of its subject "
                              "was found"),
    }
    ripple = category_totals(after.ripple)["categories"]["relation_specificity"] if after.ripple else None
    if ripple is not None and ripple["n"]:
        out["relation_specificity"] = Basis(ripple["n"], truth)
    elif after.specificity:
        out["relation_specificity"] = Basis(len(after.specificity), _source(requests, "specificity", "the request file"))
    else:
        out["relation_specificity"] = Basis(0, None, no_request if not n_req else
                                            "no other relation of the edited subject could be asked (none in the "
                                            "knowledge graph, none the model answers confidently)")
    generated = getattr(after, "generated", None) or {}
    not_generated = "generated answers not scored (generate=False)"
    chat_n = generated.get("chat_n")
    for name in ("efficacy", "paraphrase", "neighborhood"):
        b = out[name]
        out[f"{name}_gen"] = b if generated else Basis(b.n, b.source, not_generated)
        if chat_n is None:
            out[f"{name}_chat"] = Basis(None, None, generated.get("chat_off") or not_generated)
        else:
            why = "; ".join(generated.get("chat_reasons") or []) or (
                "no neighbour's subject and relation could be read back from its prompt" if name == "neighborhood"
                else "no chat question could be asked")
            out[f"{name}_chat"] = Basis(chat_n[name], "the relation library's chat questions",
                                        None if chat_n[name] else why)
    allowed = len(set(plan.expected) | set(plan.target_ids))
    out["unintended_changes"] = Basis(len(plan.items) - allowed, f"probe set, {truth}")
    out["perplexity_ratio"] = Basis(len(before.perplexities), "general sentences")
    out["task_acc_drop"] = Basis(None, "lm-eval tasks", None if before.tasks is not None else "no lm-eval tasks "
                                 "asked for (--tasks)")
    out["update_norm_ratio"] = Basis(len(norms), "the weight update")
    return out
