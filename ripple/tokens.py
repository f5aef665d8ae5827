"""Templates, tokenization conventions, and where the subject sits in a tokenized prompt.

The conventions, stated once here and used everywhere:

* a prompt template has ``{}`` where the subject goes (:func:`fill`);
* text is encoded without special tokens, so no BOS is added (:func:`text_ids`), except for a
  tokenizer marked ``ripple_bos`` (:data:`ripple.loading.BOS_FIRST`: Gemma), whose BOS token
  comes first in every prompt and passage;
* an answer follows its prompt after one space, so it is encoded with a leading space and
  without its own surrounding whitespace (:func:`answer_ids`).

::

    subject_token_span(tok, "The birthplace of Kalo Miren is", "Kalo Miren")
    (3, 5)                                   # tokens 3 and 4; the last subject token is 4

>>> fill("{} was born in", "Kalo Miren")
'Kalo Miren was born in'
"""

from __future__ import annotations

import re

from ripple.errors import RippleError


def fill(template: str, subject: str) -> str:
    """``template`` with every ``{}`` replaced by ``subject`` (a template without ``{}`` is unchanged)."""
    return template.replace("{}", subject)


def bos_prefix(tok) -> list[int]:
    """``[bos]`` for a tokenizer marked ``ripple_bos`` (its model needs the BOS token first), else ``[]``."""
    return [tok.bos_token_id] if getattr(tok, "ripple_bos", False) else []


def text_ids(tok, text: str) -> list[int]:
    """The token ids of ``text`` as ripple feeds it to a model: no special tokens, but the BOS token
    first where the model needs it (:func:`bos_prefix`)."""
    return bos_prefix(tok) + tok(text, add_special_tokens=False)["input_ids"]


def answer_ids(tok, answer: str) -> list[int]:
    """The token ids of ``answer`` as it follows a prompt: one leading space, no special tokens."""
    return tok(" " + answer.strip(), add_special_tokens=False)["input_ids"]


def unknown_words(tok, text: str) -> list[str]:
    """The words of ``text`` that ``tok`` reads as its unknown token (none for a tokenizer without one).

    >>> from transformers import AutoTokenizer
    >>> from ripple.organism.paths import model_dir
    >>> tok = AutoTokenizer.from_pretrained(model_dir())
    >>> unknown_words(tok, "brazouth Kaibour was born in")
    ['brazouth']
    """
    unk = getattr(tok, "unk_token_id", None)
    if unk is None or not text:
        return []
    try:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        spans = [(s, e) for i, (s, e) in zip(enc["input_ids"], enc["offset_mapping"]) if i == unk]
        return [text[s:e].strip() or text[s:e] for s, e in spans]
    except NotImplementedError:  # a slow tokenizer: word by word
        return [w for w in text.split() if unk in tok(" " + w, add_special_tokens=False)["input_ids"]]


def _vocab_by_lower(tok) -> dict[str, str]:
    """The tokenizer's whole-word entries by their lower case (an unambiguous match only); read only
    when a text is refused, to suggest its spelling."""
    seen: dict[str, set[str]] = {}
    for word in tok.get_vocab():
        seen.setdefault(word.lstrip("Ġ▁").lower(), set()).add(word.lstrip("Ġ▁"))
    return {low: next(iter(words)) for low, words in seen.items() if len(words) == 1}


def check_readable(tok, text: str, what: str) -> None:
    """A one-line error when ``text`` holds words the model cannot read (its unknown token), with
    the spelling the vocabulary has where one differs only in case.

    >>> from transformers import AutoTokenizer
    >>> from ripple.organism.paths import model_dir
    >>> tok = AutoTokenizer.from_pretrained(model_dir())
    >>> check_readable(tok, "brazouth kaibour was born in", "prompt")
    Traceback (most recent call last):
    ...
    ripple.errors.RippleError: prompt 'brazouth kaibour was born in' has words the model cannot read ('brazouth', 'kaibour': they tokenize to the unknown token); did you mean 'Brazouth Kaibour was born in'? use words the model knows
    """
    bad = unknown_words(tok, text)
    if not bad:
        return
    vocab = _vocab_by_lower(tok)
    hint = ""
    if all(w.lower() in vocab for w in bad):
        fixed = text
        for w in bad:
            fixed = re.sub(rf"(?<!\w){re.escape(w)}(?!\w)", vocab[w.lower()], fixed, count=1)
        hint = f" did you mean {fixed.strip()!r}?"
    text = text.strip()
    short = text if len(text) <= 80 else text[:77] + "..."
    words = ", ".join(repr(w) for w in dict.fromkeys(bad))
    raise RippleError(f"{what} {short!r} has words the model cannot read ({words}: they tokenize to the unknown "
                      f"token);{hint} use words the model knows")


def render_prompt(prompt: str, subject: str) -> str:
    """Fill a ``{}`` template with the subject, refusing an empty subject."""
    if not subject or not subject.strip():
        raise RippleError("the subject is empty; pass the entity whose fact you want to trace or edit")
    return fill(prompt, subject)


def _whole_word_rfind(text: str, sub: str) -> int:
    """Last index of ``sub`` in ``text`` not inside a longer word (-1 if none)."""
    at = text.rfind(sub)
    while at >= 0:
        before = text[at - 1] if at > 0 else " "
        after = text[at + len(sub)] if at + len(sub) < len(text) else " "
        if not (before.isalnum() and sub[0].isalnum()) and not (after.isalnum() and sub[-1].isalnum()):
            return at
        at = text.rfind(sub, 0, at)
    return -1


def subject_token_span(tok, prompt: str, subject: str) -> tuple[int, int]:
    """Token range ``[start, end)`` covering the last occurrence of ``subject`` in ``prompt``."""
    text = render_prompt(prompt, subject)
    at = _whole_word_rfind(text, subject)
    if at < 0:
        raise RippleError(f"subject {subject!r} does not occur in prompt {prompt!r}; "
                          "put the subject in the prompt or use '{}' where it goes")
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    lo, hi = at, at + len(subject)
    idx = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if s < hi and e > lo and e > s]
    if not idx:
        raise RippleError(f"subject {subject!r} maps to no token of prompt {prompt!r}; check the tokenizer")
    shift = len(bos_prefix(tok))  # positions in text_ids(tok, text)
    return idx[0] + shift, idx[-1] + 1 + shift
