"""The phrasings SIR reads for a damaged fact, and the sentence shapes it is judged on, kept apart.

SIR keeps a damaged fact in many phrasings of its relation (:func:`sir_phrasings`): the world's
training templates, then the relation library's own templates (``ripple/data/relations.json``,
where the library has the relation). A repair is judged on :func:`heldout_shapes`, which SIR never
reads: the world's held-out templates, the library's held-out templates and the library's
questions, asked as a completion (``"Question: What is the capital of {}?\\nAnswer:"``).

>>> from ripple.world.real import build_real_world
>>> w = build_real_world()
>>> read, judged = sir_phrasings(w, "capital"), heldout_shapes(w, "capital")
>>> len(read), len(judged), set(read) & set(judged)
(10, 7, set())
>>> judged[-1]
'Question: What city serves as the seat of government of {}?\\nAnswer:'
"""

from __future__ import annotations

#: How a library question is asked as a completion prompt (a base model answers after "Answer:").
QUESTION = "Question: {question}\nAnswer:"


def _library(world, relation: str):
    """The library's relation of that name, for a world of real facts (the organism's synthetic
    world shares some relation names, not the library's wordings)."""
    if getattr(world, "kind", None) == "synthetic":
        return None
    from ripple.editing.open_world import relation_library  # lazy: heavy

    return relation_library().get(relation)


def _world_relation(world, relation: str):
    return (getattr(world, "relations", None) or {}).get(relation)


def heldout_shapes(world, relation: str) -> tuple[str, ...]:
    """The sentence shapes a repair of a ``relation`` fact is judged on, none of which SIR reads:
    the world's held-out templates, the library's held-out templates, its questions as completions."""
    rel, lib = _world_relation(world, relation), _library(world, relation)
    out = list(getattr(rel, "heldout_templates", ()) or ())
    if lib is not None:
        out += list(lib.heldout) + [QUESTION.format(question=q) for q in lib.questions]
    return tuple(dict.fromkeys(t for t in out if t.count("{}") == 1))


def sir_phrasings(world, relation: str, n: int | None = None) -> tuple[str, ...]:
    """The phrasings of ``relation`` SIR reads (at most ``n``): the world's training templates, then
    the library's templates; never a shape of :func:`heldout_shapes`."""
    rel, lib = _world_relation(world, relation), _library(world, relation)
    out = list(getattr(rel, "train_templates", ()) or ())
    if lib is not None:
        out += list(lib.templates)
    judged = set(heldout_shapes(world, relation))
    got = tuple(dict.fromkeys(t for t in out if t.count("{}") == 1 and t not in judged))
    return got if n is None else got[:n]
