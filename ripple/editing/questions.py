"""Chat questions for an edit request: what a chat model is asked, and the answers that count.

Each relation of the library (:func:`ripple.editing.open_world.relation_library`) has three
direct questions ("What is the capital of {}?"). For a request whose relation is known (the
graph's, or the library's match for its prompt), :func:`chat_questions` asks:

* efficacy: the first question of the relation about the subject, answered with ``target_new``
  before ``target_true``;
* paraphrase: the other two questions;
* neighbourhood: each neighbour whose subject and relation can be read back from its prompt
  (the prompt is a phrasing of a library relation, the edit's own tried first), asked that
  relation's first question and answered with its own answer before ``target_new``;
* relation specificity: the first question of each specificity prompt's relation, answered
  with the answer it must keep before ``target_new``.

The edit itself is still computed on the completion prompt; chat questions only measure it.

>>> from ripple.editing.requests import EditRequest
>>> q = chat_questions(EditRequest("The capital of {} is", "France", "Lyon", "Paris",
...                                neighborhood_prompts=("The capital of Spain is",)))
>>> q.relation, q.efficacy[0].prompt, q.efficacy[0].answers, q.efficacy[0].rivals
('capital', 'What is the capital of France?', ('Lyon',), ('Paris',))
>>> q.neighborhood[0].prompt, q.neighborhood[0].answers
('What is the capital of Spain?', ('Paris',))
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ripple.editing.open_world import match_relation, relation_library
from ripple.editing.requests import EditRequest
from ripple.generation import Ask
from ripple.tokens import fill


@dataclass(frozen=True)
class ChatQuestions:
    """The chat :class:`~ripple.generation.Ask` items of one request (empty: none could be asked,
    ``reason`` says why)."""

    relation: str | None
    efficacy: tuple[Ask, ...] = ()
    paraphrase: tuple[Ask, ...] = ()
    neighborhood: tuple[Ask, ...] = ()
    specificity: tuple[Ask, ...] = ()
    reason: str | None = None


def relation_of(prompt: str, world=None) -> str | None:
    """The library relation a template asks (the world's own where its graph has the prompt)."""
    if world is not None and world.kind == "real":
        for rel in world.relations.values():
            if prompt in rel.paraphrases and rel.name in relation_library():
                return rel.name
    got = match_relation(prompt)
    return got.relation if got.how != "none" else None


def _subject_in(prompt: str, templates) -> str | None:
    """The subject of a filled ``prompt`` read back through any of ``templates`` (None: none fits)."""
    for tpl in templates:
        head, _, tail = tpl.partition("{}")
        m = re.fullmatch(re.escape(head) + r"(.+?)" + re.escape(tail), prompt.strip())
        if m and m.group(1).strip():
            return m.group(1).strip()
    return None


def read_back(prompt: str, first: str | None = None, template: str | None = None) -> tuple[str, str] | None:
    """``(relation, subject)`` of a filled ``prompt``: the first library relation (``first``, with
    ``template``, tried before the others) one of whose phrasings it fills (None: none).

    >>> read_back("Louvre is located in the city of")
    ('in_city', 'Louvre')
    """
    library = relation_library()
    order = ([first] if first in library else []) + [r for r in library if r != first]
    for name in order:
        extra = (template,) if name == first and template else ()
        subject = _subject_in(prompt, (*extra, *library[name].phrasings))
        if subject is not None and library[name].questions:
            return name, subject
    return None


def chat_questions(request: EditRequest, world=None) -> ChatQuestions:
    """The chat questions of ``request`` (see the module docstring)."""
    rel = relation_of(request.prompt, world)
    library = relation_library()
    if rel is None or not library[rel].questions:
        return ChatQuestions(None, reason="the edit prompt matches no relation of the library, so no question "
                                          "asks for it")
    qs = library[rel].questions
    new, true = request.target_new, request.target_true
    old = (true,) if true is not None else ()
    asks = lambda qs_, subject, answers, rivals: tuple(Ask(fill(q, subject), answers, rivals, chat=True) for q in qs_)  # noqa: E731
    efficacy = asks(qs[:1], request.subject, (new,), old)
    paraphrase = asks(qs[1:], request.subject, (new,), old)
    neighbours = []
    own = request.neighborhood_answers or (true,) * len(request.neighborhood_prompts)
    for prompt, answer in zip(request.neighborhood_prompts, own):
        found = read_back(prompt, rel, request.prompt)
        if found is not None and answer is not None:
            neighbours += asks(library[found[0]].questions[:1], found[1], (answer,), (new,))
    spec = []
    for prompt, answer in zip(request.specificity_prompts, request.specificity_answers):
        other = relation_of(prompt, world)
        if other is not None and library[other].questions:
            spec += asks(library[other].questions[:1], request.subject, (answer,), (new,))
    return ChatQuestions(rel, efficacy, paraphrase, tuple(neighbours), tuple(spec))
