"""When a generated text gives an answer: the one rule every generation score uses (:func:`judge`).

Both sides are normalized the same way (:func:`normalize`): Unicode accents folded, lower case,
every run of punctuation (but ``+`` and ``#``) and whitespace one space, a leading article
(``the``, ``a``, ``an``) dropped. Then:

* a **completion** (the model continues ``"The capital of France is"``) gives an answer when
  its normalized text *begins* with the normalized answer or one of its aliases, at a word
  boundary: ``" Paris, the largest city"`` gives ``Paris``; ``" Parisian"`` does not; neither
  does ``" a city in the north, Paris"``, which mentions it late;
* a **chat reply** (the model answers ``"What is the capital of France?"``) restates the
  question first (``"The capital of France is Paris."``), so it gives an answer when its first
  sentence names the answer, as whole words, before it names any rival (the other side of the
  race: the old object for an edit, the new object for a fact that must keep its answer).

>>> judge(" Paris, the largest city of France", ["Paris"])
True
>>> judge(" the Netherlands.", ["Netherlands"])
True
>>> judge(" New York City", ["New York City"]), judge(" New York", ["New York City"])
(True, False)
>>> judge(" Parisian fashion", ["Paris"])
False
>>> judge(" a city in the north of the country, Paris", ["Paris"])
False
>>> judge(" São Paulo", ["Sao Paulo"]), judge(" PARIS!", ["Paris"])
(True, True)
>>> judge(" United Kingdom", ["Britain", "United Kingdom"])
True
>>> judge("The capital of France is Paris.", ["Paris"], reply=True)
True
>>> judge("It is Lyon, not Paris.", ["Paris"], rivals=["Lyon"], reply=True)
False
>>> judge("France is in Europe. Its capital is Paris.", ["Paris"], reply=True)
False

While a text is still being generated, ``final=False`` answers None until the text decides:

>>> judge(" Par", ["Paris"], final=False) is None, judge(" Lon", ["Paris"], final=False)
(True, False)
>>> judge(" Paris", ["Paris"], final=False) is None, judge(" Paris,", ["Paris"], final=False)
(True, True)
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable

_ARTICLES = ("the", "a", "an")
_SEP = re.compile(r"[^\w+#]+|_+")  # "+" and "#" are kept: C++ and C# are not C
_SENTENCE_END = re.compile(r"[.!?](\s|$)|\n")


def normalize(text: str, keep_end: bool = False) -> str:
    """``text`` as the rule compares it: accents folded, lower case, punctuation and whitespace one
    space, no leading article; ``keep_end``: keep one trailing space where the text ends in a
    separator (a partial generation whose last word is complete).

    >>> normalize("  The Côte d'Ivoire!  ")
    'cote d ivoire'
    >>> normalize("C++"), normalize("C#"), normalize("C")
    ('c++', 'c#', 'c')
    """
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    spaced = _SEP.sub(" ", folded.lower())
    out = spaced.lstrip()
    out = out if keep_end else out.rstrip()
    for article in _ARTICLES:
        if out.startswith(article + " ") and len(out) > len(article) + 1:
            return out[len(article) + 1:]
    return out


def _begins(text: str, answer: str) -> bool:
    return text == answer or text.startswith(answer + " ")


def _completion(text: str, answers: list[str], final: bool) -> bool | None:
    got = normalize(text, keep_end=not final)
    if final:
        return any(_begins(got.rstrip(), a) for a in answers)
    if any(got.startswith(a + " ") for a in answers):
        return True
    open_ = [a for a in answers if a.startswith(got) or any((art + " ").startswith(got) or (art + " " + a).startswith(got)
                                                          for art in _ARTICLES)]
    return None if open_ else False


def _first_at(text: str, names: list[str]) -> int | None:
    """Where the first of ``names`` occurs in normalized ``text`` as whole words (None: nowhere)."""
    padded = f" {text} "
    hits = [padded.find(f" {n} ") for n in names if n]
    hits = [h for h in hits if h >= 0]
    return min(hits) if hits else None


def _reply(text: str, answers: list[str], rivals: list[str], final: bool) -> bool | None:
    end = _SENTENCE_END.search(text)
    sentence = text[: end.start()] if end else text
    complete = final or end is not None
    got = normalize(sentence, keep_end=not complete)
    # a name counts once the word after it has begun (or the sentence ended): "Paris" in "Parisian" does not
    words = got if complete else got[: got.rfind(" ") + 1] if " " in got else ""
    hit, rival = _first_at(words.strip(), answers), _first_at(words.strip(), rivals)
    if hit is not None and (rival is None or hit < rival):
        return True
    if rival is not None or complete:
        return False
    return None


def judge(text: str, answers: Iterable[str], rivals: Iterable[str] = (), reply: bool = False,
          final: bool = True) -> bool | None:
    """Whether generated ``text`` gives one of ``answers`` (see the module docstring for the rule:
    a completion begins with it; a chat ``reply``'s first sentence names it before any of
    ``rivals``). ``final=False``: the text may go on, so None while it cannot yet be decided."""
    names = [n for n in dict.fromkeys(normalize(a) for a in answers) if n]
    if reply:
        others = [n for n in dict.fromkeys(normalize(r) for r in rivals) if n and n not in names]
        return _reply(text, names, others, final)
    return _completion(text, names, final)
