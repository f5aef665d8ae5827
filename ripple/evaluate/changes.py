"""What an edit changed among the probe items, read against the ground truth: the plan fixed on the
unedited model (:func:`plan_audit`: the items each request rewrites, those the world says must
change, the RippleEdits queries) and the classification of changed answers (:func:`classify_changes`:
intended, a swap between right answers, or damage). The audit and SIR both read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ripple.errors import RippleError
from ripple.evaluate.ripple_scores import plan_ripple
from ripple.gie.measure import ItemState
from ripple.gie.run import find_edited_item
from ripple.gie.targets import edited_fact_id, expected_changes, world_edit
from ripple.probes.sets import ProbeItem


@dataclass
class AuditPlan:
    """What the audit looks for, fixed on the unedited model."""

    items: list[ProbeItem]  # the probe set, plus an item for each edited fact it lacks
    target_ids: list[str]  # the item each request rewrites
    expected: set[str]  # items the ground truth says must change (the edited ones excluded)
    ripple_plans: list[dict]  # RippleEdits queries per request (empty without a world)


@dataclass
class Changes:
    """Probe items whose greedy answer changed, and what each change is."""

    changed: list[int]  # indices into the plan's items
    swaps: set[str]  # ids: one right answer of a one-to-many relation traded for another
    unintended: list[str]  # ids: answered right before, wrong after, and neither edited nor expected
    wrong_flips: list[str] = field(default_factory=list)  # ids: wrong before, and changed (not counted)
    #: indices of the items the edit may change (edited, expected): a generated answer lost elsewhere is damage
    allowed: set[int] = field(default_factory=set, compare=False)


def edited_items(items: list[ProbeItem], requests, world) -> tuple[list[ProbeItem], list[str]]:
    """The probe item each request rewrites (added to the items when the probe set lacks it)."""
    items = list(items)
    ids = []
    for i, req in enumerate(requests):
        try:
            ids.append(find_edited_item(items, req, edited_fact_id(world, req, items)))
        except RippleError:
            answer = req.target_true or req.target_new
            item = ProbeItem(id=f"edit-{i + 1}:{req.subject}", subject=req.subject, relation="edited",
                             prompt=req.prompt, answer=answer)
            items.append(item)
            ids.append(item.id)
    return items, ids


def plan_audit(model, tok, world, requests, items, generate: bool = False) -> AuditPlan:
    """The audit's plan for ``requests`` (see :class:`AuditPlan`), on the unedited model;
    ``generate``: the RippleEdits plans also read generated answers."""
    items, target_ids = edited_items(items, requests, world)
    expected = set()
    for req in requests:
        expected |= expected_changes(world, world_edit(world, req), items)
    expected -= set(target_ids)
    with_world = world is not None and all(world_edit(world, r) is not None for r in requests)
    plans = [plan_ripple(model, tok, world, r, generate=generate) for r in requests] if with_world else []
    return AuditPlan(items, target_ids, expected, plans)


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


def classify_changes(plan: AuditPlan, before: ItemState, after: ItemState) -> Changes:
    """Which answers changed and which of those changes nobody asked for: damage is a fact the
    model answered right before the edit and no longer does (a real model answers many probes
    wrong; a wrong answer that moves is reported apart, ``wrong_flips``, and not counted)."""
    items = plan.items
    changed = [i for i, (a, b) in enumerate(zip(before.greedy, after.greedy)) if a != b]
    swaps = answer_swaps(items, before, after)
    allowed = plan.expected | set(plan.target_ids) | swaps
    others = [i for i in changed if items[i].id not in allowed]
    return Changes(changed, swaps, sorted(items[i].id for i in others if before.correct[i] and not after.correct[i]),
                   sorted(items[i].id for i in others if not before.correct[i]),
                   {i for i, item in enumerate(items) if item.id in plan.expected | set(plan.target_ids)})
