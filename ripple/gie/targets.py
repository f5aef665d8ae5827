"""Which probe items an organism edit rewrites and which it must change, from the world.

::

    edit = world_edit(world, request)          # (subject, relation, new, old) entity ids, or None
    expected_changes(world, edit, items)       # ids of items the ground truth says must change
    edited_fact_id(world, request, items)      # the id of the probe item the request rewrites
"""

from __future__ import annotations

from ripple.world.edits import WorldEdit, fact_id
from ripple.world.ground_truth import ripple_ground_truth


def world_edit(world, request) -> tuple[str, str, str, str] | None:
    """``(subject, relation, new, old)`` entity ids of an organism request (case_id
    ``subject|relation|new``; old: the current object named ``target_true``, else the first)."""

    edit = WorldEdit.of(request)
    if world is None or edit is None:
        return None
    subject, relation, new = edit.subject, edit.relation, edit.new
    olds = world.objects(subject, relation) if subject in world.entities else []
    if not olds:
        return None
    named = [o for o in olds if world.name(o) == request.target_true]
    return subject, relation, new, (named or olds)[0]


def expected_changes(world, edit, items) -> set[str]:
    """Ids of probe items that the world's ground truth says the edit must change."""

    if edit is None:
        return set()
    gt = ripple_ground_truth(world, *edit)
    keys = {(q.subject, q.relation) for q in gt if q.must_change}
    return {item.id for item in items if (item.subject, item.relation) in keys}


def edited_fact_id(world, request, items) -> str | None:
    """The id of the world fact ``request`` rewrites (``subject|relation|old``) when ``items`` has
    that item, else None."""
    edit = world_edit(world, request)
    if edit is None:
        return None

    fid = fact_id(edit[0], edit[1], edit[3])
    return fid if fid in {item.id for item in items} else None
