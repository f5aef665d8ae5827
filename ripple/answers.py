"""When a generated text gives an answer: the one rule every generation score uses (:func:`judge`).

Both sides are normalized the same way (:func:`normalize`): Unicode accents folded, lower case,
every run of punctuation (but ``+`` and ``#``) and whitespace one space; an answer's leading
article (``the``, ``a``, ``an``) is optional. Then:

* a **completion** (the model continues ``"The capital of France is"``) gives an answer when
  its normalized text *begins* with the answer (any of those given: a one-to-many fact's right
  answers, aliases), at a word boundary, after an optional article: ``" Paris, the largest city"``
  gives ``Paris``; ``" Parisian"`` does not; neither does ``" a city in the north, Paris"``,
  which mentions it late;
* a **chat reply** (the model answers ``"What is the capital of France?"``) restates the
  question first (``"The capital of France is Paris."``), so it gives an answer when its first
  sentence names the answer, as whole words, before it names any rival (the other side of the
  race: the old object for an edit, the new object for a fact that must keep its answer). A
  short opening without a name ("Sure!") is read past; "D.C.", "St." and "1." end no sentence.

In both, where an answer and a rival begin at the same word the longer name counts (``" Guinea-
Bissau"`` gives the rival Guinea-Bissau, not Guinea).

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
>>> judge("Sure! The capital is Washington, D.C.", ["Washington, D.C."], ["Paris"], reply=True)
True
>>> judge(" Guinea-Bissau", ["Guinea"], ["Guinea-Bissau"]), judge("It is New York City.", ["New York City"], ["New York"], reply=True)
(False, True)

While a text is still being generated, ``final=False`` answers None until the text decides:

>>> judge(" Par", ["Paris"], final=False) is None, judge(" Lon", ["Paris"], final=False)
(True, False)
>>> judge(" Paris", ["Paris"], final=False) is None, judge(" Paris,", ["Paris"], final=False)
(True, True)
>>> judge(" Guinea ", ["Guinea"], ["Guinea-Bissau"], final=False) is None  # Guinea-Bissau may follow
True
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable

_ARTICLES = ("the", "a", "an")
_SEP = re.compile(r"[^\w+#]+|_+")  # "+" and "#" are kept: C++ and C# are not C
#: Letters that Unicode does not decompose into a base letter and a mark.
_FOLD = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ß": "ss", "æ": "ae", "œ": "oe", "ı": "i", "þ": "th", "ð": "d"})
#: Words whose "." does not end a sentence ("St. Petersburg"), besides initials ("Washington, D.C.") and numbers.
_ABBREVIATIONS = frozenset("st mt ft dr mr mrs ms jr sr no vs etc inc ltd co".split())


def normalize(text: str) -> str:
    """``text`` as the rule compares it: accents folded, lower case, every run of punctuation (but
    ``+`` and ``#``) and whitespace one space, no space at either end.

    >>> normalize("  The Côte d'Ivoire!  ")
    'the cote d ivoire'
    >>> normalize("C++"), normalize("C#"), normalize("C"), normalize("Łódź")
    ('c++', 'c#', 'c', 'lodz')
    """
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _SEP.sub(" ", folded.lower().translate(_FOLD)).strip()


def _name(answer: str) -> str:
    """An answer as the rule matches it: normalized, without a leading article (unless it is one)."""
    got = normalize(answer)
    for article in _ARTICLES:
        if got.startswith(article + " "):
            return got[len(article) + 1:]
    return got


def _open_text(text: str, final: bool) -> str:
    """Normalized ``text`` with one trailing space where its last word is complete (a separator
    followed it, or the text is final): a name matches only up to a word boundary."""
    got = normalize(text)
    done = final or bool(text) and not (text[-1].isalnum() or text[-1] in "+#") and text[-1] != "\ufffd"
    return got + " " if got and done else got


def _decide(f: str, starts: list[int], names: dict[str, bool], final: bool, more_words: bool) -> bool | None:
    """Who names first in the open text ``f`` (see :func:`_open_text`), reading from ``starts``: the
    earliest start with a name, the longest name there; ``names``: name -> is an answer. While the
    text is not ``final``, None unless no continuation can change the outcome (a longer name that
    may still complete at or before the winner; ``more_words``: a later word may still name one)."""
    winner, pending = None, set()
    for q in starts:
        rest = f[q:]
        hits = [n for n in names if rest.startswith(n + " ")]
        if not final:
            pending |= {names[n] for n in names if (n + " ").startswith(rest) and len(n) + 1 > len(rest)}
        if hits:
            winner = names[max(hits, key=len)]
            break
    if final:
        return bool(winner)
    if winner is None:
        return None if (True in pending or more_words) else False
    return winner if pending <= {winner} else None


def _words(f: str) -> list[int]:
    return [0] + [i + 1 for i, c in enumerate(f) if c == " " and i + 1 < len(f)]


def _completion(text: str, names: dict[str, bool], final: bool) -> bool | None:
    f = _open_text(text, final)
    if not final and any((art + " ").startswith(f) and len(f) <= len(art) for art in _ARTICLES):
        return None  # nothing yet, or an article still being written
    starts = [0] + [len(art) + 1 for art in _ARTICLES if f.startswith(art + " ")]
    return _decide(f, starts, names, final, more_words=False)


def _sentence_end(text: str, final: bool) -> int | None:
    """Where the first sentence of ``text`` ends (None: not yet): at ``.``, ``!`` or ``?`` followed by
    a space (or the end of a final text), or at a line break; not at an initial, a number or a common
    abbreviation ("D.C.", "1.", "St.")."""
    for m in re.finditer(r"[.!?](?=\s|$)|\n", text):
        if m.group() == "." and m.end() == len(text) and not final:
            return None
        if m.group() in "!?" and m.end() == len(text) and not final:
            return None
        if m.group() == ".":
            word = re.search(r"(\w+)$", text[: m.start()])
            w = word.group(1) if word else ""
            if len(w) == 1 or w.isdigit() or w.lower() in _ABBREVIATIONS:
                continue
        return m.start()
    return None


def _reply(text: str, names: dict[str, bool], final: bool) -> bool | None:
    text = text.lstrip()
    while True:
        end = _sentence_end(text, final)
        sentence = text if end is None else text[:end]
        f = _open_text(sentence, final or end is not None)
        got = _decide(f, _words(f), names, final or end is not None, more_words=end is None)
        # a short opening with no name in it ("Sure!", "Yes.") is not the answer: read on
        named = _decide(f, _words(f), dict.fromkeys(names, True), True, False)
        if end is not None and not named and len(f.split()) <= 2:
            if text[end + 1:].strip():
                text = text[end + 1:].lstrip()
                continue
            return False if final else None  # the next sentence has not begun
        return got


def judge(text: str, answers: Iterable[str], rivals: Iterable[str] = (), reply: bool = False,
          final: bool = True) -> bool | None:
    """Whether generated ``text`` gives one of ``answers`` (see the module docstring for the rule:
    a completion begins with it; a chat ``reply``'s first sentence names it before any of
    ``rivals``; where a rival and an answer begin at the same word, the longer name counts).
    ``final=False``: the text may go on, so None until no continuation can change the judgement."""
    names = {n: False for n in (_name(r) for r in rivals) if n}
    names |= {n: True for n in (_name(a) for a in answers) if n}
    if reply:
        return _reply(text, names, final)
    return _completion(text, names, final)
