"""Prompts with known answers, drawn from the world: the organism's test sets.

A :class:`Query` is a prompt that ends right before the answer, the subject as it
appears in the prompt, and every answer that counts as correct.

>>> from ripple.world import build_world
>>> qs = single_hop(build_world(), heldout=True)
>>> qs[0].prompt.endswith(qs[0].template.split("{}")[-1])
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ripple.tokens import fill
from ripple.world.generate import World


@dataclass(frozen=True)
class Query:
    prompt: str
    subject: str
    answers: tuple[str, ...]
    relation: str
    template: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def fact_query(world: World, subject_id: str, relation: str, template: str, subject_text: str | None = None,
               **meta) -> Query:
    """The query asking ``relation`` of a subject; all current objects count as answers."""
    subj = subject_text or world.name(subject_id)
    answers = tuple(sorted(world.name(o) for o in world.objects(subject_id, relation)))
    return Query(fill(template, subj), subj, answers, relation, template, {"subject_id": subject_id} | meta)


def single_hop(world: World, heldout: bool = False) -> list[Query]:
    """Every distinct (subject, relation) on its five core templates (all trained) or on the
    held-out paraphrases."""
    out = []
    for s, r in sorted({(f.subject, f.relation) for f in world.facts}):
        rel = world.relations[r]
        for t in rel.heldout_templates if heldout else rel.templates:
            out.append(fact_query(world, s, r, t))
    return out


def alias_queries(world: World, trained: bool | None = None) -> list[Query]:
    """Facts asked under the subject's alias; ``trained`` selects facts seen (or not) with the alias."""
    out = []
    for s, r in sorted({(f.subject, f.relation) for f in world.facts}):
        ent = world.entities[s]
        if not ent.aliases:
            continue
        seen = any((s, r, o) in world.alias_trained for o in world.objects(s, r))
        if trained is not None and seen != trained:
            continue
        for t in world.relations[r].templates[:2]:
            out.append(fact_query(world, s, r, t, subject_text=ent.aliases[0], alias_seen=seen))
    return out


def two_hop_queries(world: World, heldout: bool = True) -> list[Query]:
    """Two-hop questions for the subjects held out of (or included in) two-hop training."""
    out = []
    for th in world.two_hops.values():
        stype = world.relations[th.first].subject_type
        for e in world.of_type(stype):
            if (e.id in world.heldout_two_hop) != heldout:
                continue
            answers = tuple(world.name(a) for a in world.two_hop_answers(e.id, th.name))
            for t in th.templates:
                out.append(Query(fill(t, e.name), e.name, answers, th.name, t, {"subject_id": e.id}))
    return out


def counting_queries(seed: int = 1, n: int = 100, top: int = 40) -> list[Query]:
    """The general skill: continue a counting sequence ("Count : 4 5 6" -> "7")."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        start, length = rng.randrange(0, top - 6), rng.randrange(3, 6)
        seq = " ".join(str(start + i) for i in range(length))
        out.append(Query(f"Count : {seq}", "", (str(start + length),), "counting", "Count : {}"))
    return out


def addition_queries() -> list[Query]:
    """The second general skill: single-digit addition ("3 plus 4 equals" -> "7")."""
    return [Query(f"{a} plus {b} equals", "", (str(a + b),), "addition", "{} plus {} equals")
            for a in range(10) for b in range(10)]
