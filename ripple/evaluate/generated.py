"""Generated answers across an audit: which modes to score, and the probe items' and the relation
specificity queries' generated answers.

Three modes score every answer: the probability race and top-1 (teacher-forced, always), the
generated completion (``gen``) and, when the tokenizer has a chat template, the reply to a chat
question (``chat``) (:mod:`ripple.generation`, the rule in :mod:`ripple.answers`).

>>> from ripple.probes.sets import ProbeItem
>>> items = [ProbeItem("a", "Spain", "official_language", "The official language of {} is", "Spanish"),
...          ProbeItem("b", "Spain", "official_language", "The official language of {} is", "Catalan")]
>>> [a.answers for a in probe_asks(items)]
[('Spanish', 'Catalan'), ('Spanish', 'Catalan')]
>>> probe_asks(items, chat=True)[0].prompt
'What is the official language of Spain?'
"""

from __future__ import annotations

from dataclasses import dataclass

from ripple.editing.answer_cache import cached_ask
from ripple.editing.open_world import relation_library
from ripple.errors import RippleError
from ripple.generation import Ask, ask, has_chat, item_asks
from ripple.tokens import fill

#: What an audit asks in chat form, and why not the probe set.
CHAT_SCOPE = ("chat asks the edit's questions, their paraphrases, the neighbours and the subject's other relations; "
              "the probe set is scored on completions only (its ~800 chat replies would take minutes per side)")
NO_TEMPLATE = "the tokenizer has no chat template, so chat answers are not measured"


@dataclass(frozen=True)
class Modes:
    """Which generated-answer modes an audit scores: ``generate`` (completions) and ``chat``;
    ``note``: why chat is off where it was not asked off."""

    generate: bool = True
    chat: bool = False
    note: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return ("race", "top1") + (("gen",) if self.generate else ()) + (("chat",) if self.chat else ())


def modes_for(tok, chat: bool | None = None, generate: bool = True) -> Modes:
    """The modes for this tokenizer: chat on when it has a chat template (``chat=None``), off with
    ``chat=False``; ``chat=True`` without a template is an error."""
    if chat and not generate:
        raise RippleError("chat replies are generated answers: drop generate=False to score them, or chat=False")
    if chat is None:
        chat = has_chat(tok) and generate
        return Modes(generate, chat, None if chat or not generate else NO_TEMPLATE)
    if chat and not has_chat(tok):
        raise RippleError("--chat was given but the tokenizer has no chat template; drop --chat (completion prompts "
                          "are scored anyway) or load the model's instruct version")
    return Modes(generate, bool(chat), None if chat else "chat answers not measured: turned off (--no-chat)")


def question_for(relation: str, subject: str) -> str | None:
    """The first library question of ``relation`` about ``subject`` (None: the relation has none)."""
    rel = relation_library().get(relation)
    return fill(rel.questions[0], subject) if rel is not None and rel.questions else None


def probe_asks(items, chat: bool = False, world=None) -> list[Ask | None]:
    """One :class:`~ripple.generation.Ask` per probe item: its prompt (or, ``chat``, its relation's
    question; None where the relation has none), every right answer of the same prompt counting
    (a country's several languages), each by any of its names the ``world`` knows."""
    asks = item_asks(items)
    if world is not None:  # an answer said by another of its names counts
        asks = [Ask(a.prompt, tuple(dict.fromkeys(n for x in a.answers for n in world.names_of(x))), a.rivals, a.chat)
                for a in asks]
    if not chat:
        return asks
    out = []
    for item, a in zip(items, asks):
        question = question_for(item.relation, item.subject)
        out.append(None if question is None else Ask(question, a.answers, chat=True))
    return out


def ask_some(model, tok, asks: list[Ask | None], cache: bool = False) -> list[bool | None]:
    """Each Ask's generated answer right (None where there is no Ask). ``cache``: keep the answers
    on disk per model, prompts and rule (``$RIPPLE_CACHE/generated``): the unedited model's side
    of an audit, the same for every audit of that model."""
    real = [a for a in asks if a is not None]
    got = iter(cached_ask(model, tok, real) if cache else [x.correct for x in ask(model, tok, real)])
    return [None if a is None else next(got) for a in asks]


def specificity_chat_asks(requests, ripple_plans) -> list[Ask]:
    """Chat questions for relation specificity: the subject's other facts the RippleEdits plan
    keeps (graph ground truth), each answered before the request's new object."""
    out = []
    for req, plan in zip(requests, ripple_plans):
        for row in plan["rows"]:
            if row["category"] != "relation_specificity" or not row.get("relation"):
                continue
            question = question_for(row["relation"], row["subject"])
            if question is not None:
                out.append(Ask(question, tuple(row["answers"]), (req.target_new,), chat=True))
    return out
