"""Edit requests: what fact to rewrite, read from CounterFact, ROME or EasyEdit style records.

    >>> req = parse_request({"prompt": "{} is a citizen of", "subject": "Kalo Miren",
    ...                      "target_new": {"str": "Tesvar"}}, "example")
    >>> req.rendered
    'Kalo Miren is a citizen of'
    >>> parse_request({"prompts": ["Kalo Miren is a citizen of"], "subject": "Kalo Miren",
    ...                "target_new": "Tesvar"}, "example") == req
    True

Accepted forms (one request per object):

- flat CounterFact / ROME: ``prompt`` (a template with one ``{}`` for the subject), ``subject``,
  ``target_new`` and ``target_true`` (a string or ``{"str": ...}``), ``paraphrase_prompts``,
  ``neighborhood_prompts``, ``case_id``; ripple's own ``neighborhood_answers`` (one true answer per
  neighbourhood prompt, where it is not ``target_true``);
- a full CounterFact record: ``case_id``, ``requested_rewrite`` (holding the flat fields),
  ``paraphrase_prompts``, ``neighborhood_prompts``; ``attribute_prompts``,
  ``generation_prompts``, ``pararel_idx`` and ``relation_id`` are ignored;
- EasyEdit names: ``prompts`` (a string or one-item list), ``ground_truth`` (the true target),
  ``rephrase_prompts`` / ``rephrase_prompt`` (paraphrases), ``locality_prompts`` (neighborhood).

A prompt without ``{}`` that contains the subject literally becomes a template: the last
whole-word occurrence of the subject is replaced by ``{}``. Surrounding whitespace is stripped
from every string; targets are answers as they follow the prompt after one space.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from ripple.arch import get_spec
from ripple.errors import RippleError
from ripple.progress import MANY, each
from ripple.scoring import answer_logprobs
from ripple.tokens import _whole_word_rfind, answer_ids, check_readable, fill, subject_token_span, text_ids

#: Every accepted field name -> the EditRequest field it fills.
FIELD_NAMES: dict[str, str] = {
    "prompt": "prompt", "prompts": "prompt",
    "subject": "subject",
    "target_new": "target_new",
    "target_true": "target_true", "ground_truth": "target_true",
    "paraphrase_prompts": "paraphrase_prompts", "rephrase_prompts": "paraphrase_prompts",
    "rephrase_prompt": "paraphrase_prompts",
    "neighborhood_prompts": "neighborhood_prompts", "locality_prompts": "neighborhood_prompts",
    "neighborhood_answers": "neighborhood_answers",
    "specificity_prompts": "specificity_prompts", "specificity_answers": "specificity_answers",
    "sources": "sources",
    "case_id": "case_id",
}
#: Fields of CounterFact records that ripple reads past.
IGNORED_FIELDS = ("relation_id", "pararel_idx", "attribute_prompts", "generation_prompts")
_NESTED = "requested_rewrite"
_ACCEPTED = (*FIELD_NAMES, _NESTED, *IGNORED_FIELDS)


@dataclass(frozen=True)
class EditRequest:
    """One fact to rewrite: after ``prompt`` filled with ``subject``, answer ``target_new``."""

    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None
    paraphrase_prompts: tuple[str, ...] = ()
    neighborhood_prompts: tuple[str, ...] = ()
    case_id: str | None = None
    #: each neighbourhood prompt's own true answer (empty: ``target_true`` for all, CounterFact's form)
    neighborhood_answers: tuple[str, ...] = ()
    #: the subject's other relations asked (relation specificity), each with the answer it must keep
    specificity_prompts: tuple[str, ...] = ()
    specificity_answers: tuple[str, ...] = ()
    #: where each derived field's reference comes from, as ``(field, source)`` pairs (ripple's own)
    sources: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        for name in ("prompt", "subject", "target_new"):
            _need_str(name, getattr(self, name))
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        set_("prompt", self.prompt.strip())
        set_("subject", self.subject.strip())
        set_("target_new", self.target_new.strip())
        if self.target_true is not None:
            set_("target_true", _need_str("target_true", self.target_true).strip())
        for name in ("paraphrase_prompts", "neighborhood_prompts", "neighborhood_answers", "specificity_prompts",
                     "specificity_answers"):
            set_(name, _prompt_tuple(name, getattr(self, name)))
        set_("sources", _sources(self.sources))
        if self.neighborhood_answers and len(self.neighborhood_answers) != len(self.neighborhood_prompts):
            raise RippleError(f"{len(self.neighborhood_answers)} neighborhood_answers for "
                              f"{len(self.neighborhood_prompts)} neighborhood_prompts (subject {self.subject!r}); "
                              "give one answer per prompt or none")
        if len(self.specificity_answers) != len(self.specificity_prompts):
            raise RippleError(f"{len(self.specificity_answers)} specificity_answers for "
                              f"{len(self.specificity_prompts)} specificity_prompts (subject {self.subject!r}); "
                              "give one answer per prompt")
        if self.case_id is not None:
            set_("case_id", _case_id(self.case_id))
        if not self.subject:
            raise RippleError("the subject is empty; give the entity whose fact the edit rewrites")
        holes = self.prompt.count("{}")
        if holes != 1:
            raise RippleError(f"prompt {self.prompt!r} has {holes} '{{}}' placeholders; "
                              "write exactly one '{}' where the subject goes")
        if not self.target_new:
            raise RippleError(f"target_new is empty for subject {self.subject!r}; give the new answer")
        if self.target_true is not None and not self.target_true:
            raise RippleError(f"target_true is empty for subject {self.subject!r}; "
                              "give the true answer or leave the field out")
        if self.target_new == self.target_true:
            raise RippleError(f"target_new equals target_true ({self.target_new!r}) for subject "
                              f"{self.subject!r}; an edit must change the answer")

    @property
    def rendered(self) -> str:
        """The prompt with the subject filled in."""
        return fill(self.prompt, self.subject)

    def source(self, field: str) -> str | None:
        """Where ``field``'s reference comes from (None: not recorded, e.g. the user's own file)."""
        return dict(self.sources).get(field)

    def to_dict(self) -> dict[str, Any]:
        """The flat form, which :func:`parse_request` reads back to an equal request."""
        return {"case_id": self.case_id, "prompt": self.prompt, "subject": self.subject,
                "target_new": self.target_new, "target_true": self.target_true,
                "paraphrase_prompts": list(self.paraphrase_prompts),
                "neighborhood_prompts": list(self.neighborhood_prompts),
                **({"neighborhood_answers": list(self.neighborhood_answers)} if self.neighborhood_answers else {}),
                **({"specificity_prompts": list(self.specificity_prompts),
                    "specificity_answers": list(self.specificity_answers)} if self.specificity_prompts else {}),
                **({"sources": dict(self.sources)} if self.sources else {})}


def _type_name(value) -> str:
    return "null" if value is None else type(value).__name__


def _need_str(name: str, value) -> str:
    if not isinstance(value, str):
        raise RippleError(f"field {name!r} must be a string, got {_type_name(value)}")
    return value


def _prompt_tuple(name: str, value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise RippleError(f"field {name!r} must be a list of strings, got {_type_name(value)}")
    return tuple(v.strip() for v in value if v.strip())


def _sources(value) -> tuple[tuple[str, str], ...]:
    if isinstance(value, dict):
        value = tuple(value.items())
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in value):
        raise RippleError(f"field 'sources' must map field names to strings, got {_type_name(value)}")
    return tuple((str(k), str(v)) for k, v in value)


def _case_id(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RippleError(f"field 'case_id' must be a string or an integer, got {_type_name(value)}")
    return str(value)


def _text(key: str, value, *, target: bool = False) -> str:
    """A string field, also given as a one-item list (EasyEdit) or, for targets, ``{"str": ...}``."""
    if isinstance(value, list):
        if len(value) != 1:
            raise RippleError(f"field {key!r} holds {len(value)} items; give one request per object")
        value = value[0]
    if target and isinstance(value, dict) and "str" in value:
        value = value["str"]
    if not isinstance(value, str):
        shape = " or {\"str\": ...}" if target else ""
        raise RippleError(f"field {key!r} must be a string{shape}, got {_type_name(value)}")
    return value


def _gather(obj: dict) -> dict[str, tuple[str, Any]]:
    """EditRequest field -> (the name it was given under, its value), over the nested record too."""
    items = [(k, v) for k, v in obj.items() if k != _NESTED]
    if obj.get(_NESTED) is not None:
        if not isinstance(obj[_NESTED], dict):
            raise RippleError(f"field {_NESTED!r} must be an object, got {_type_name(obj[_NESTED])}")
        items += obj[_NESTED].items()
    found: dict[str, tuple[str, Any]] = {}
    for key, value in items:
        if key in IGNORED_FIELDS or value is None:
            continue
        if key not in FIELD_NAMES:
            close = difflib.get_close_matches(str(key), _ACCEPTED, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise RippleError(f"unknown field {key!r}; {hint}accepted fields: {', '.join(_ACCEPTED)}")
        field = FIELD_NAMES[key]
        if field in found:
            raise RippleError(f"fields {found[field][0]!r} and {key!r} both give the {field}; keep one")
        found[field] = (key, value)
    for field in ("prompt", "subject", "target_new"):
        if field not in found:
            raise RippleError(f"missing field {field!r}; an edit request needs prompt, subject and target_new")
    return found


def to_template(prompt: str, subject: str) -> str:
    """``prompt`` with the last whole-word occurrence of ``subject`` replaced by ``{}``
    (unchanged if it already holds a ``{}``)."""
    prompt, subject = prompt.strip(), subject.strip()
    if "{}" in prompt or not subject:
        return prompt
    at = _whole_word_rfind(prompt, subject)
    if at < 0:
        raise RippleError(f"prompt {prompt!r} has no '{{}}' and does not contain the subject {subject!r}; "
                          "write '{}' where the subject goes")
    return prompt[:at] + "{}" + prompt[at + len(subject):]


def _parse(obj) -> EditRequest:
    if not isinstance(obj, dict):
        raise RippleError(f"expected a JSON object (one edit request), got {_type_name(obj)}")
    found = _gather(obj)
    subject = _text(*found["subject"])
    kwargs: dict[str, Any] = {"subject": subject, "prompt": to_template(_text(*found["prompt"]), subject),
                              "target_new": _text(*found["target_new"], target=True)}
    if "target_true" in found:
        kwargs["target_true"] = _text(*found["target_true"], target=True)
    for field in ("paraphrase_prompts", "neighborhood_prompts", "neighborhood_answers", "specificity_prompts",
                  "specificity_answers", "sources", "case_id"):
        if field in found:
            kwargs[field] = found[field][1]
    return EditRequest(**kwargs)


def parse_request(obj: dict, where: str = "edit request") -> EditRequest:
    """One :class:`EditRequest` from any accepted form; errors start with ``where``."""
    try:
        return _parse(obj)
    except RippleError as exc:
        raise RippleError(f"{where}: {exc}") from None


def _label(i: int, req: EditRequest) -> str:
    return f"request {i}" + (f" (case_id {req.case_id})" if req.case_id is not None else "")


def already_predicts(model, tok, requests: list[EditRequest]) -> list[bool]:
    """Whether greedy decoding after each rendered prompt already yields its ``target_new``."""
    pairs = [(r.rendered, r.target_new) for r in requests]
    return [greedy for _, greedy in answer_logprobs(model, tok, pairs)] if pairs else []


#: Tokens kept free for the context prefixes editors put before a prompt (ROME, MEMIT: ~5 words).
PREFIX_ROOM = 16


def check_length(tok, texts, limit: int | None, what: str, room: int = 0) -> None:
    """A one-line error for the first text whose tokens (plus ``room``) exceed ``limit``."""
    if not limit:
        return
    for text in texts:
        n = len(text_ids(tok, text)) + room
        if n > limit:
            short = text if len(text) <= 60 else text[:57] + "..."
            raise RippleError(f"{what} {short!r} is {n} tokens long (with room for its answer and context), "
                              f"more than the model's context of {limit}; shorten it")


def validate_for_model(requests: list[EditRequest], tok, model=None, context: int | None = None,
                       progress: bool = False) -> list[str]:
    """Check each request against the tokenizer and the model's context length (``context``, or the
    model's own); with ``model``, also warn about no-op edits.

    Raises :class:`RippleError` when a subject is not found among the prompt's tokens, a target
    tokenizes to nothing or to unknown words, or a prompt is too long. Returns one warning per
    request whose target the model already predicts. ``progress``: a progress bar on stderr.
    """
    if context is None and model is not None:

        context = get_spec(model).context_length(model)

    for i, req in each(enumerate(requests, 1), "checking edit requests", quiet=not progress):
        try:
            subject_token_span(tok, req.prompt, req.subject)
            check_readable(tok, req.rendered, "prompt")  # the subject and the prompt's words
            for kind, texts in (("paraphrase", req.paraphrase_prompts), ("neighbourhood prompt",
                                                                         req.neighborhood_prompts)):
                for text in texts:
                    check_readable(tok, fill(text, req.subject), kind)  # a paraphrase may be a template
        except RippleError as exc:
            raise RippleError(f"{_label(i, req)}: {exc}") from None
        for field_name, target in [("target_new", req.target_new), ("target_true", req.target_true),
                                   *(("neighborhood answer", a) for a in req.neighborhood_answers)]:
            if target is None:
                continue
            ids = answer_ids(tok, target)
            if not ids:
                raise RippleError(f"{_label(i, req)}: {field_name} {target!r} tokenizes to nothing; "
                                  "give an answer the tokenizer can encode")
            if tok.unk_token_id is not None and tok.unk_token_id in ids:
                raise RippleError(f"{_label(i, req)}: {field_name} {target!r} has words outside the model's "
                                  "vocabulary (they tokenize to the unknown token); use words the model knows")
        answer = max(len(answer_ids(tok, t)) for t in (req.target_new, req.target_true) if t is not None)
        prompts = [req.rendered, *req.paraphrase_prompts, *req.neighborhood_prompts]
        check_length(tok, prompts, context, f"{_label(i, req)}: prompt", room=answer + PREFIX_ROOM)
    if model is None:
        return []
    hits = [hit for start in each(range(0, len(requests), MANY), "checking what the model already predicts",
                                  quiet=not progress or len(requests) < 4 * MANY)
            for hit in already_predicts(model, tok, requests[start : start + MANY])]
    return [f"{_label(i, req)}: the model already predicts {req.target_new!r} after {req.rendered!r}; "
            "this edit changes nothing measurable"
            for i, (req, hit) in enumerate(zip(requests, hits), 1) if hit]
