"""The flat metric dict an audit's policy judges, keyed by the policy's rule names.

:data:`AUDIT_METRICS` names every metric an audit measures, with what it is; the default
policy's rules (:data:`ripple.auditing.policy.DEFAULT_POLICY`) and any policy file name metrics
from it. A value of None means "not measurable here" (no world, no lm-eval tasks).

>>> "efficacy" in AUDIT_METRICS and "ripple_overall" in AUDIT_METRICS
True
"""

from __future__ import annotations

from ripple.editing.metrics import aggregate
from ripple.evaluate.ripple_scores import RIPPLE_CATEGORIES, category_totals

_CF = {"efficacy": "the new object beats the old on the rewrite prompt (share of requests)",
       "paraphrase": "the same race on paraphrased prompts",
       "neighborhood": "neighbouring subjects keep their true object (the race the other way)"}
AUDIT_METRICS: dict[str, str] = {
    **_CF,
    **{f"{k}_top1": f"{v}, counted only when the winner is the greedy answer" for k, v in _CF.items()},
    "unintended_changes": "probe facts answered right before the edit and wrong after, neither edited nor "
                          "required to change",
    "perplexity_ratio": "mean per-sentence perplexity on general sentences, after over before",
    "update_norm_ratio": "the largest ||dW||/||W|| of an edited matrix",
    "task_acc_drop": "the largest fall of an lm-eval task's acc, before minus after (audit --tasks)",
    **{cat: f"RippleEdits {cat.replace('_', ' ')} accuracy (world ground truth)" for cat in RIPPLE_CATEGORIES},
    "ripple_overall": "RippleEdits accuracy over every category (world ground truth)",
}


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
    metrics = {name: cf.get(name) for name in (*_CF, *(f"{k}_top1" for k in _CF))}
    metrics.update({
        "unintended_changes": len(changes.unintended),
        "perplexity_ratio": mean(after.perplexities) / mean(before.perplexities),
        "update_norm_ratio": max(norms.values()) if norms else 0.0,
        "task_acc_drop": task_acc_drop(before.tasks, after.tasks) if with_tasks else None,
    })
    for cat in RIPPLE_CATEGORIES:
        metrics[cat] = ripple["categories"][cat]["accuracy"] if ripple else None
    metrics["ripple_overall"] = ripple["overall"] if ripple else None
    return metrics
