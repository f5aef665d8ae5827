"""Which probe items an organism edit rewrites and which it must change, from the world.

>>> # doctest: +SKIP
>>> edit = world_edit(world, request)          # (subject, relation, new, old) entity ids, or None
>>> expected_changes(world, edit, items)       # ids of items the ground truth says must change
"""

from __future__ import annotations


def world_edit(world, request) -> tuple[str, str, str, str] | None:
    """``(subject, relation, new, old)`` entity ids of an organism request (case_id
    ``subject|relation|new``; old: the current object named ``target_true``, else the first)."""
    if world is None or not request.case_id or request.case_id.count("|") != 2:
        return None
    subject, relation, new = request.case_id.split("|")
    olds = world.objects(subject, relation) if subject in world.entities else []
    if not olds:
        return None
    named = [o for o in olds if world.name(o) == request.target_true]
    return subject, relation, new, (named or olds)[0]


def expected_changes(world, edit, items) -> set[str]:
    """Ids of probe items that the world's ground truth says the edit must change."""
    from ripple.world.ground_truth import ripple_ground_truth

    if edit is None:
        return set()
    gt = ripple_ground_truth(world, *edit)
    keys = {(q.subject, q.relation) for q in gt if q.must_change}
    return {item.id for item in items if (item.subject, item.relation) in keys}
