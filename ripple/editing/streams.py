"""A stream of N sequential organism edits, longer than the world's supply of distinct facts.

The organism's world has 640 editable (subject, relation) facts. Past that, the stream goes round
again: each round edits every fact once more (in a new random order) to a new object, different
from the world's and from the previous edit's; ``target_true`` is then the object the fact holds
at that point (the previous edit's target), so efficacy races the new object against it.

::

    stream = edit_stream(world, 1000, seed=0)
    latest_edits(stream[:700])      # one request per fact: the last one made
"""

from __future__ import annotations

import random
from dataclasses import replace

from ripple.editing.from_world import EDITABLE, request_for
from ripple.editing.requests import EditRequest
from ripple.world.edits import WorldEdit
from ripple.world.generate import World


def fact_of(request: EditRequest) -> tuple[str, str]:
    """The fact a request rewrites: (subject id, relation) for a world edit (case_id
    ``subject|relation|new``), else (subject, prompt)."""
    edit = WorldEdit.of(request)
    return edit.fact if edit is not None else (request.subject, request.prompt)


def edit_stream(world: World, n: int, seed: int = 0, relations=None, pairs=None) -> list[EditRequest]:
    """``n`` edits: rounds over every editable fact (each round in its own random order);
    ``relations``: the organism's :data:`EDITABLE` by default, every relation of a real-world graph;
    ``pairs``: only these ``(subject, relation)`` facts (RLEdit's evaluation half)."""
    rng = random.Random(seed)
    if relations is None:
        relations = EDITABLE if world.kind == "synthetic" else tuple(world.relations)
    allowed = set(pairs) if pairs is not None else None
    pairs = sorted({(f.subject, f.relation) for f in world.facts if f.relation in relations
                    and (allowed is None or (f.subject, f.relation) in allowed)})
    current = {p: world.objects(*p)[0] for p in pairs}
    out: list[EditRequest] = []
    while len(out) < n:
        order = list(pairs)
        rng.shuffle(order)
        for subject, relation in order[: n - len(out)]:
            taken = set(world.objects(subject, relation)) | {current[(subject, relation)]}
            cands = [e.id for e in world.of_type(world.relations[relation].object_type) if e.id not in taken]
            new = rng.choice(cands)
            req = request_for(world, subject, relation, new)
            if current[(subject, relation)] != world.objects(subject, relation)[0]:
                req = replace(req, target_true=world.name(current[(subject, relation)]))
            current[(subject, relation)] = new
            out.append(req)
    return out


def latest_edits(requests: list[EditRequest]) -> list[EditRequest]:
    """The last request made for each fact, in order of first edit."""
    last: dict[tuple[str, str], EditRequest] = {}
    for r in requests:
        last[fact_of(r)] = r
    return list(last.values())
