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
