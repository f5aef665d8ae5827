"""Edit requests drawn from a world (the organism's, or the real-world graph), with paraphrase and
neighbourhood prompts filled in from the world automatically, and the world's text as the
statistics corpus.

>>> from ripple.world import build_world
>>> reqs = sample_edits(build_world(), 3, seed=0)
>>> reqs[0].prompt.count("{}"), bool(reqs[0].paraphrase_prompts), reqs[0].target_new != reqs[0].target_true
(1, True, True)
"""

from __future__ import annotations

import random
from dataclasses import replace

from ripple.editing.requests import EditRequest
from ripple.errors import RippleError
from ripple.tokens import fill
from ripple.world.corpus import CorpusConfig, training_text
from ripple.world.edits import WorldEdit, slug
from ripple.world.generate import Entity, World
from ripple.world.ground_truth import ripple_ground_truth

EDITABLE = ("born_in", "citizen_of", "works_for", "studied_at")


def request_for(world: World, subject: str, relation: str, new_object: str, max_neighbours: int = 10) -> EditRequest:
    """The CounterFact-style request for one world edit (entity ids in)."""
    rel = world.relations[relation]
    old = world.objects(subject, relation)[0]
    name = world.name(subject)
    paraphrases = [fill(t, name) for t in rel.templates[1:] + rel.heldout_templates]
    neighbours = [(s, relation) for s in sorted(world.subjects_with(relation, old)) if s != subject]
    if world.kind == "real":  # CounterFact's neighbourhood: prompts whose answer is the old object
        neighbours += sorted((f.subject, f.relation) for f in world.facts
                             if f.object == old and f.relation != relation and f.subject != subject)
    prompts = [fill(world.relations[r].templates[0], world.name(s)) for s, r in neighbours[:max_neighbours]]
    answers: tuple[str, ...] = ()
    if not prompts and world.kind == "real":  # nothing else answers the old object (Havana)
        prompts, answers = same_relation_neighbours(world, subject, relation, new_object, max_neighbours)
    return EditRequest(prompt=rel.templates[0], subject=name, target_new=world.name(new_object),
                       target_true=world.name(old), paraphrase_prompts=tuple(paraphrases),
                       neighborhood_prompts=tuple(prompts), neighborhood_answers=answers,
                       case_id=WorldEdit(subject, relation, new_object).case_id)


def same_relation_neighbours(world: World, subject: str, relation: str, new_object: str,
                             n: int = 10) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The neighbourhood where no other fact has the old answer: the relation's other subjects
    (never one whose answer is ``new_object``), each prompt with its own true answer, which must
    not turn into the new one (the capital of Cuba moved to Caracas must leave Athens Greece's)."""
    others = sorted({f.subject: f for f in world.facts if f.relation == relation and f.subject != subject
                     and new_object not in world.objects(f.subject, relation)}.values(), key=lambda f: f.subject)[:n]
    tpl = world.relations[relation].templates[0]
    return tuple(fill(tpl, world.name(f.subject)) for f in others), tuple(world.name(f.object) for f in others)


def relation_of_prompt(world: World, prompt: str, subject_type: str):
    """The relation ``prompt`` asks of a ``subject_type`` subject: the one with ``prompt`` among its
    phrasings, else the only one with a phrasing that reads the same after the subject ("The {} is
    located in the city of" asks what "{} is located in the city of" asks); None when none or several."""
    rels = [r for r in world.relations.values() if r.takes(subject_type)]
    exact = [r for r in rels if prompt in r.paraphrases]
    if exact:
        return exact[0]
    tail = prompt.split("{}", 1)[1]
    same = [r for r in rels if any(t.split("{}", 1)[1] == tail for t in r.paraphrases)]
    if len(same) == 1:
        return same[0]
    if world.kind == "real":  # another phrasing of a graph relation: the relation library's match
        from ripple.editing.open_world import match_relation  # lazy: heavy

        name = match_relation(prompt).relation
        if name in world.relations and world.relations[name].takes(subject_type):
            return world.relations[name]
    return None


def in_graph(world: World, request: EditRequest) -> bool:
    """Whether the graph holds the request's subject and its prompt's relation (ground truth exists)."""
    try:
        subject = world.id_of(request.subject)
    except KeyError:
        return False
    return relation_of_prompt(world, request.prompt, world.entities[subject].type) is not None


def complete_from_world(world: World, request: EditRequest) -> EditRequest:
    """Fill a request's missing ``target_true``, paraphrases and neighbourhood from the world, when
    its subject is a world entity and its prompt one of the world's templates; else return it as is."""

    try:
        subject = world.id_of(request.subject)
    except KeyError:
        return request
    rel = relation_of_prompt(world, request.prompt, world.entities[subject].type)
    named = [e for e in world.entities.values() if e.name == request.target_new]
    if not named and rel is not None and world.kind == "real":  # a new object the graph lacks

        key = slug(request.target_new) or "new"
        while key in world.entities:
            key += "_"
        world.add_entity(Entity(key, rel.object_type, request.target_new))
        named = [world.entities[key]]
    new = next((e.id for e in named if rel is not None and e.type == rel.object_type), None)
    if rel is not None and named and new is None:
        example = world.name(world.of_type(rel.object_type)[0].id)
        raise RippleError(f"target {request.target_new!r} is a {named[0].type}, but {request.prompt!r} asks for a "
                          f"{rel.object_type}; give a {rel.object_type} (e.g. {example!r})")
    if rel is None or new is None or not world.objects(subject, rel.name):
        return request
    if new in world.objects(subject, rel.name):  # a fix of a fact the model gets wrong (a real-world graph)
        return _sourced(world, request, complete_fix(world, request, subject, rel, new))
    full = request_for(world, subject, rel.name, new)
    return _sourced(world, request, replace(request, target_true=request.target_true or full.target_true,
                   paraphrase_prompts=request.paraphrase_prompts or full.paraphrase_prompts,
                   neighborhood_prompts=request.neighborhood_prompts or full.neighborhood_prompts,
                   neighborhood_answers=request.neighborhood_answers or (
                       () if request.neighborhood_prompts else full.neighborhood_answers),
                   case_id=request.case_id or full.case_id))


def _sourced(world: World, given: EditRequest, done: EditRequest) -> EditRequest:
    """``done`` with the sources of the fields the world filled (those ``given`` lacked)."""
    graph = "the world" if world.kind == "synthetic" else "the knowledge graph"
    sources = dict(done.sources)
    for field, key, what in (("paraphrase_prompts", "paraphrase", f"{graph}'s phrasings of the relation"),
                             ("neighborhood_prompts", "neighborhood", f"{graph}'s ground truth")):
        if getattr(done, field) and not getattr(given, field):
            sources.setdefault(key, what)
    if done.target_true and not given.target_true:
        sources.setdefault("target_true", f"{graph}'s ground truth")
    return replace(done, sources=tuple(sources.items()))


def complete_fix(world: World, request: EditRequest, subject: str, rel, new: str,
                 max_neighbours: int = 10) -> EditRequest:
    """A request that makes the model say what the graph already says (``target_true``: what the
    model says now, given or filled in by :meth:`ripple.editing.setup.EditSetup.complete`): the
    graph's paraphrases, and as neighbourhood the facts whose answer is that wrong answer (they
    must keep it: fixing "the capital of Turkey is Istanbul" must leave the Hagia Sophia in Istanbul).
    When that wrong answer is not an object of the graph ("the"), the neighbourhood is the same
    relation's other subjects, each with its own true answer, which must not turn into the new one."""

    if world.kind == "synthetic":
        raise RippleError(f"{request.subject!r} already has {rel.name!r} {request.target_new!r}; the edit "
                          "changes nothing")
    name = world.name(subject)
    paraphrases = [fill(t, name) for t in rel.templates[1:] + rel.heldout_templates]
    neighbours: list[str] = []
    if request.target_true is not None:
        try:
            wrong = world.id_of(request.target_true)
        except KeyError:
            wrong = None
        neighbours = [fill(world.relations[f.relation].templates[0], world.name(f.subject))
                      for f in sorted(world.facts, key=lambda f: (f.relation != rel.name, f.subject, f.relation))
                      if wrong is not None and f.object == wrong and f.subject != subject][:max_neighbours]
    answers: tuple[str, ...] = ()
    if not neighbours and not request.neighborhood_prompts:
        neighbours, answers = same_relation_neighbours(world, subject, rel.name, new, max_neighbours)
    return replace(request, paraphrase_prompts=request.paraphrase_prompts or tuple(paraphrases),
                   neighborhood_prompts=request.neighborhood_prompts or tuple(neighbours),
                   neighborhood_answers=request.neighborhood_answers or tuple(answers),
                   case_id=request.case_id or WorldEdit(subject, rel.name, new).case_id)


def sample_edits(world: World, n: int, seed: int = 0, relations=None, pairs=None) -> list[EditRequest]:
    """``n`` random counterfactual edits of distinct facts (never the same subject and relation
    twice), preferring distinct subjects; a one-line error if the world has fewer such facts.
    ``relations``: the editable relations (the organism's :data:`EDITABLE` by default; every
    relation of a real-world graph); ``pairs``: only these ``(subject, relation)`` facts (those a
    model knows). A real-world edit's new object is another object of the same relation."""
    rng = random.Random(seed)
    if relations is None:
        relations = EDITABLE if world.kind == "synthetic" else tuple(world.relations)
    allowed = set(pairs) if pairs is not None else None
    pairs = sorted({(f.subject, f.relation) for f in world.facts if f.relation in relations
                    and (allowed is None or (f.subject, f.relation) in allowed)})
    if n > len(pairs):
        raise RippleError(f"the world has only {len(pairs)} editable facts ({', '.join(relations)}); ask for at most that")
    rng.shuffle(pairs)
    seen_subjects: set[str] = set()
    first = [p for p in pairs if not (p[0] in seen_subjects or seen_subjects.add(p[0]))]
    chosen = first[:n] + [p for p in pairs if p not in set(first)][: max(0, n - len(first))]
    out = []
    for subject, relation in chosen:
        if world.kind == "synthetic":
            pool = [e.id for e in world.of_type(world.relations[relation].object_type)]
        else:
            pool = sorted({f.object for f in world.facts if f.relation == relation})
        cands = [o for o in pool if o not in world.objects(subject, relation)]
        out.append(request_for(world, subject, relation, rng.choice(cands)))
    return out


def specificity_queries(world: World, request: EditRequest):
    """Ground truth for relation specificity: the subject's other relations, one core template
    each (the request's ``case_id`` is ``subject|relation|new_object``, as :func:`request_for` makes)."""

    edit = WorldEdit.require(request)
    qs = [q for q in ripple_ground_truth(world, edit.subject, edit.relation, edit.new)
          if q.category == "relation_specificity"]
    return qs[:: len(world.relations[edit.relation].templates)]  # five templates per relation, in order: the first of each


def world_corpus(world: World) -> list[str]:
    """The world's text (what the organism was trained on), for second-moment statistics."""
    return training_text(world, CorpusConfig())
