"""Exact ground truth for an edit: which queries must change, to what, and which must not.

Given an edit (subject, relation, new object), :func:`ripple_ground_truth` returns the
queries of the six RippleEdits categories (Cohen et al., 2023) plus the edit itself on
every template and the CounterFact-style neighbourhood:

========================  ===========  ==================================================
category                  must change  example, after "X citizen_of B"
========================  ===========  ==================================================
edit                      yes          every template of the edited fact -> B
logical_generalization    yes          symmetric/inverse facts (spouse of the new spouse)
compositionality_1        yes          two-hops through the new object: capital of X's country -> capital(B)
compositionality_2        yes          other subjects chained through the edit (edit of a capital)
subject_aliasing          yes          the edited fact asked with X's alias -> B
preservation              no           other objects of a one-to-many relation survive
relation_specificity      no           X's other relations keep their objects
neighbourhood             no           other subjects with the same relation and old object
========================  ===========  ==================================================

Each query lists its ``conditions``: the facts the model must have known before the edit
for the query to count (RippleEdits counts only those).

>>> from ripple.world import build_world
>>> w = build_world()
>>> p = w.persons[0]
>>> gt = ripple_ground_truth(w, p.id, "citizen_of", "country:3")
>>> sorted({q.category for q in gt})  # doctest: +NORMALIZE_WHITESPACE
['compositionality_1', 'edit', 'neighbourhood', 'relation_specificity', 'subject_aliasing']
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ripple.errors import RippleError
from ripple.tokens import fill
from ripple.world.generate import Fact, World

MUST_CHANGE = ("edit", "logical_generalization", "compositionality_1", "compositionality_2", "subject_aliasing")
MUST_KEEP = ("preservation", "relation_specificity", "neighbourhood")
CATEGORIES = MUST_CHANGE + MUST_KEEP


@dataclass(frozen=True)
class GroundTruthQuery:
    category: str
    prompt: str
    subject: str
    relation: str
    answers: tuple[str, ...]  # what the model should answer after the edit
    old_answers: tuple[str, ...]  # what the world said before the edit
    conditions: tuple[Fact, ...] = field(default=())

    @property
    def must_change(self) -> bool:
        return self.category in MUST_CHANGE


def _check_edit(world: World, subject: str, relation: str, new_object: str, old_object: str | None) -> str:
    if subject not in world.entities:
        raise RippleError(f"unknown subject {subject!r}; use an entity id such as {world.persons[0].id!r}")
    relations = world.relations
    if relation not in relations:
        raise RippleError(f"unknown relation {relation!r}; known: {', '.join(relations)}")
    rel = relations[relation]
    if not rel.takes(world.entities[subject].type):
        raise RippleError(f"relation {relation!r} takes a {rel.subject_type} subject, not {subject!r}")
    if new_object not in world.entities or world.entities[new_object].type != rel.object_type:
        raise RippleError(f"new object {new_object!r} must be a {rel.object_type} entity id")
    olds = world.objects(subject, relation)
    if not olds:
        raise RippleError(f"{subject!r} has no {relation!r} fact to edit")
    if new_object in olds:  # a fix: the graph already holds the fact the model gets wrong
        if world.kind == "synthetic":
            raise RippleError(f"{subject!r} already has {relation!r} {new_object!r}; the edit changes nothing")
        return new_object
    old = old_object or olds[0]
    if old not in olds:
        raise RippleError(f"{old!r} is not a current {relation!r} object of {subject!r}")
    return old


def ripple_ground_truth(world: World, subject: str, relation: str, new_object: str,
                        old_object: str | None = None, max_per_category: int = 10) -> list[GroundTruthQuery]:
    """All ground-truth queries for the edit (entity ids in, names in the queries).

    On a real-world graph an edit may be a *fix*: ``new_object`` is what the graph already says
    (the model answers it wrong). Its queries are the same, asking for what the graph says: the
    inverse and two-hop facts through the right object must hold after the fix too."""
    old = _check_edit(world, subject, relation, new_object, old_object)
    fix = old == new_object
    rel, n = world.relations[relation], world.name
    s_name, new_name, old_name = n(subject), n(new_object), n(old)
    out: list[GroundTruthQuery] = []

    def add(cat, template, subj_text, r, answers, olds, conds=()):
        out.append(GroundTruthQuery(cat, fill(template, subj_text), subj_text, r, tuple(answers), tuple(olds),
                                    tuple(conds)))

    for t in rel.templates:
        add("edit", t, s_name, relation, [new_name], [old_name])

    # logical generalization: the symmetric or inverse fact now points back at the subject
    if rel.kind == "symmetric":
        for t in rel.templates:
            add("logical_generalization", t, n(new_object), relation, [s_name],
                [n(o) for o in world.objects(new_object, relation)])
    if rel.inverse and (fix or subject not in world.objects(new_object, rel.inverse)):
        inv = world.relations[rel.inverse]
        for t in inv.templates:
            add("logical_generalization", t, new_name, rel.inverse, [s_name],
                [n(o) for o in world.objects(new_object, rel.inverse)])

    _compositionality(world, subject, relation, new_object, old, fix, max_per_category, add)

    # subject aliasing: the edited fact under each alias
    for alias in world.entities[subject].aliases:
        for t in rel.templates:
            add("subject_aliasing", t, alias, relation, [new_name], [old_name])

    _unchanged(world, subject, relation, new_object, old, max_per_category, add)
    return out


def _compositionality(world: World, subject: str, relation: str, new_object: str, old: str, fix: bool,
                      max_per_category: int, add) -> None:
    """The two-hop queries the edit changes: the subject's through the new object (I), and other
    subjects' whose two-hop passes through the edited fact (II, at most ``max_per_category`` of them)."""
    n, s_name, new_name = world.name, world.name(subject), world.name(new_object)
    # compositionality I: the subject's two-hops through the new object
    for th in world.two_hops.values():
        if th.first != relation:
            continue
        new_ans = [n(o) for o in world.objects(new_object, th.second)]
        old_ans = [n(o) for o in world.two_hop_answers(subject, th.name)]
        if new_ans and (fix or set(new_ans) != set(old_ans)):
            conds = [Fact(new_object, th.second, o) for o in world.objects(new_object, th.second)]
            for t in th.templates:
                add("compositionality_1", t, s_name, th.name, new_ans, old_ans, conds)
    # compositionality II: other subjects whose two-hop passes through the edited fact
    for th in world.two_hops.values():
        if th.second != relation:
            continue
        for other in sorted(world.subjects_with(th.first, subject))[:max_per_category]:
            new_ans = sorted({n(o) for o in world.objects(subject, relation) if o != old} | {new_name})
            old_ans = [n(o) for o in world.two_hop_answers(other, th.name)]
            for t in th.templates:
                add("compositionality_2", t, n(other), th.name, new_ans, old_ans, [Fact(other, th.first, subject)])


def _unchanged(world: World, subject: str, relation: str, new_object: str, old: str, max_per_category: int, add) -> None:
    """The queries whose answers must not change: a one-to-many relation's other objects, the
    subject's other relations, and other subjects sharing the relation and the old object."""
    rel, n, s_name, new_name = world.relations[relation], world.name, world.name(subject), world.name(new_object)
    # preservation: other objects of a one-to-many relation stay
    if rel.kind == "one_to_many":
        kept = [n(o) for o in world.objects(subject, relation) if o != old]
        for t in rel.templates:
            add("preservation", t, s_name, relation, kept + [new_name], [n(o) for o in world.objects(subject, relation)],
                [Fact(subject, relation, o) for o in world.objects(subject, relation) if o != old])
    # relation specificity: the subject's other relations keep their objects
    for r2 in sorted({f.relation for f in world.facts_of(subject)} - {relation}):
        objs = [n(o) for o in world.objects(subject, r2)]
        for t in world.relations[r2].templates:
            add("relation_specificity", t, s_name, r2, objs, objs,
                [Fact(subject, r2, o) for o in world.objects(subject, r2)])
    # neighbourhood: other subjects sharing the relation and the old object
    neigh = sorted(s for s in world.subjects_with(relation, old) if s != subject)
    for other in neigh[:max_per_category]:
        objs = [n(o) for o in world.objects(other, relation)]
        t = rel.templates[0]
        add("neighbourhood", t, n(other), relation, objs, objs, [Fact(other, relation, o) for o in world.objects(other, relation)])
