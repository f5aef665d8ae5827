"""Loaders for the public ripple-effect benchmarks, from local JSON files (never downloaded).

* :func:`load_counterfact`: CounterFact records (``case_id``, ``requested_rewrite``,
  ``paraphrase_prompts``, ``neighborhood_prompts``) -> :class:`~ripple.editing.requests.EditRequest`;
* :func:`load_rippleedits`: RippleEdits records -> :class:`RippleCase` (the edit and its test
  queries per category, each with its condition queries);
* :func:`load_mquake`: MQuAKE records -> :class:`MQuAKECase` (the edits and the multi-hop
  questions with their old and new answers).

RippleEdits as published names entities by Wikidata id only; an edit needs the subject and
target names, read from ``edit.subject`` / ``edit.target`` (or ``target_new``), with
``edit.original_fact.target`` as the old answer when given. The edit ``prompt`` may be a
template (``{}`` for the subject) or the full sentence ending with the target.

Every error is one line naming the file and the record index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ripple.editing.requests import EditRequest, parse_request
from ripple.errors import RippleError

#: RippleEdits' category keys -> ripple's category names (as in :mod:`ripple.world.ground_truth`).
RIPPLE_KEYS = {"Logical_Generalization": "logical_generalization", "Compositionality_I": "compositionality_1",
               "Compositionality_II": "compositionality_2", "Subject_Aliasing": "subject_aliasing",
               "Preservation": "preservation", "Relation_Specificity": "relation_specificity"}


@dataclass(frozen=True)
class DatasetQuery:
    """A prompt and every answer (values and their aliases) that counts as correct."""

    prompt: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class RippleQuery(DatasetQuery):
    """One RippleEdits test query of ``category``, with the condition queries the model must know
    before the edit."""

    category: str = ""
    conditions: tuple[DatasetQuery, ...] = field(default=())

    @property
    def must_change(self) -> bool:
        return self.category not in ("preservation", "relation_specificity")


@dataclass(frozen=True)
class RippleCase:
    request: EditRequest
    queries: tuple[RippleQuery, ...]


@dataclass(frozen=True)
class MQuAKECase:
    case_id: str
    requests: tuple[EditRequest, ...]
    questions: tuple[str, ...]
    answers: tuple[str, ...]  # the old answer and its aliases
    new_answers: tuple[str, ...]  # the answer after the edits and its aliases


def _records(path, fmt: str) -> list:
    p = Path(path)
    if not p.is_file():
        raise RippleError(f"{p}: no such {fmt} file; pass the path of a local JSON file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RippleError(f"{p}: not valid JSON ({exc}); pass a {fmt} JSON file") from None
    if not isinstance(data, list):
        raise RippleError(f"{p}: expected a JSON list of {fmt} records, got {type(data).__name__}")
    return data


def _load(path, fmt: str, parse) -> list:
    out = []
    for i, rec in enumerate(_records(path, fmt)):
        try:
            if not isinstance(rec, dict):
                raise RippleError(f"expected an object, got {type(rec).__name__}")
            out.append(parse(rec, i))
        except RippleError as exc:
            raise RippleError(f"{path}: {fmt} record {i}: {exc}") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise RippleError(f"{path}: {fmt} record {i}: missing or malformed field ({exc!r}); "
                              f"fix the record to the {fmt} format") from None
    return out


def _need(obj: dict, key: str, kind=str):
    if key not in obj:
        raise RippleError(f"missing field {key!r}")
    if not isinstance(obj[key], kind):
        raise RippleError(f"field {key!r} must be {getattr(kind, '__name__', kind)}, got {type(obj[key]).__name__}")
    return obj[key]


def _target(value, key: str) -> str:
    if isinstance(value, dict):
        value = value.get("str")
    if not isinstance(value, str) or not value.strip():
        raise RippleError(f"field {key!r} must be a string or {{\"str\": ...}}")
    return value.strip()


def load_counterfact(path) -> list[EditRequest]:
    """CounterFact records -> edit requests (``attribute_prompts`` etc. are ignored)."""
    return _load(path, "CounterFact", lambda rec, i: parse_request(
        {**rec, "requested_rewrite": _need(rec, "requested_rewrite", dict)}, "request"))


def _answers(answers: list) -> tuple[str, ...]:
    out: list[str] = []
    for a in answers:
        vals = [a] if isinstance(a, str) else [_need(a, "value"), *a.get("aliases", [])]
        out += [v.strip() for v in vals if isinstance(v, str) and v.strip() and v.strip() not in out]
    if not out:
        raise RippleError("a query has no answers; give 'answers': [{\"value\": ..., \"aliases\": [...]}]")
    return tuple(out)


def _dq(q: dict) -> DatasetQuery:
    return DatasetQuery(_need(q, "prompt").strip(), _answers(_need(q, "answers", list)))


def _ripple_request(edit: dict, i: int) -> EditRequest:
    subject = edit.get("subject")
    target = edit.get("target", edit.get("target_new"))
    if not isinstance(subject, str) or target is None:
        raise RippleError("edit needs 'subject' and 'target' names (the published file has only Wikidata ids); "
                          "add them to the record")
    target = _target(target, "target")
    prompt = _need(edit, "prompt").strip().rstrip(".").rstrip()
    if "{}" not in prompt and prompt.endswith(target):
        prompt = prompt[: -len(target)].rstrip()
    old = (edit.get("original_fact") or {}).get("target")
    return parse_request({"prompt": prompt, "subject": subject, "target_new": target,
                          "target_true": _target(old, "original_fact.target") if old is not None else None,
                          "case_id": edit.get("case_id", i)}, "edit")


def _parse_ripple(rec: dict, i: int) -> RippleCase:
    request = _ripple_request(_need(rec, "edit", dict), i)
    queries = []
    for key, cat in RIPPLE_KEYS.items():
        for test in rec.get(key, []) or []:
            conds = tuple(_dq(c) for c in test.get("condition_queries", []) or [])
            for q in _need(test, "test_queries", list):
                d = _dq(q)
                queries.append(RippleQuery(d.prompt, d.answers, category=cat, conditions=conds))
    return RippleCase(request, tuple(queries))


def load_rippleedits(path) -> list[RippleCase]:
    """RippleEdits records -> cases (one edit each, with its test queries of the six categories)."""
    return _load(path, "RippleEdits", _parse_ripple)


def _aliased(rec: dict, key: str) -> tuple[str, ...]:
    main = _need(rec, key).strip()
    aliases = rec.get(f"{key}_alias", []) or []
    if not isinstance(aliases, list):
        raise RippleError(f"field '{key}_alias' must be a list of strings")
    return (main, *[a.strip() for a in aliases if isinstance(a, str) and a.strip() and a.strip() != main])


#: The fields of an MQuAKE rewrite that make the request (``question``, ``relation_id`` are read past).
_REWRITE_KEYS = ("prompt", "subject", "target_new", "target_true")


def _parse_mquake(rec: dict, i: int) -> MQuAKECase:
    case_id = str(rec.get("case_id", i))
    rewrites = _need(rec, "requested_rewrite", list)
    if not rewrites:
        raise RippleError("'requested_rewrite' is empty; give at least one edit")
    if not all(isinstance(rw, dict) for rw in rewrites):
        raise RippleError("'requested_rewrite' must be a list of objects (prompt, subject, target_new, target_true)")
    reqs = tuple(parse_request({k: v for k, v in rw.items() if k in _REWRITE_KEYS} | {"case_id": f"{case_id}.{j}"},
                               f"requested_rewrite[{j}]")
                 for j, rw in enumerate(rewrites))
    questions = tuple(q.strip() for q in _need(rec, "questions", list) if isinstance(q, str) and q.strip())
    if not questions:
        raise RippleError("'questions' holds no question; give the multi-hop questions as strings")
    return MQuAKECase(case_id, reqs, questions, _aliased(rec, "answer"), _aliased(rec, "new_answer"))


def load_mquake(path) -> list[MQuAKECase]:
    """MQuAKE records -> cases (their edits, multi-hop questions, old and new answers with aliases)."""
    return _load(path, "MQuAKE", _parse_mquake)
