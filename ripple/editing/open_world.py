"""Probes for any fact: what an audit needs for an edit whose subject or relation the knowledge graph
lacks, built from a relation library and the model itself, so that every core rule is measured.

* **relations**: a library of phrasings written for ripple (``ripple/data/relations.json``: 94
  relations of encyclopedic knowledge, 5 phrasings and 2 held out each), the graph's own 12 among
  them. :func:`match_relation` matches an edit prompt to one: the exact phrasing first, then a
  scored match (word and character n-gram TF-IDF against each relation's phrasings, description
  and keywords); below :data:`MATCH_MIN` nothing matches and the paraphrases are generic
  rewrites, marked so;
* **paraphrases**: the matched relation's other phrasings with the subject;
* **relation specificity**: the subject's other relations in the library, each with the model's own
  pre-edit answer as the reference where it answers confidently (first-token probability at least
  :data:`CONFIDENT`): there is no ground truth there, so the figure is the model's belief kept;
* **neighbourhood**: other subjects of the same type (the entity tables of
  :mod:`ripple.world.tables` and the graph) that the model answers with the edit's old object, asked
  with the edit's own prompt; where fewer than :data:`MIN_NEIGHBOURS` do, subjects it answers
  confidently with their own answers complete them. The answers are measured once per model and
  prompt and cached (``$RIPPLE_CACHE/open_world``).

Every field filled here is recorded in the request's ``sources`` (where its reference comes from),
which the audit report shows beside the figures.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ripple.devices import input_device
from ripple.editing.requests import EditRequest
from ripple.editing.setup import said_answer
from ripple.editing.stats import model_fingerprint
from ripple.errors import RippleError
from ripple.io import atomic_write_json, cache_dir
from ripple.scoring import pad_ids, selected_logits
from ripple.tokens import fill, text_ids
from ripple.world.real import REAL_RELATIONS, real_world

LIBRARY_FILE = Path(__file__).resolve().parent.parent / "data" / "relations.json"
#: A scored match below this is no match (calibrated leave-one-out on the library's own phrasings:
#: reports/audit_any_edit.md).
MATCH_MIN = 0.5
#: The model "answers confidently" when its answer's first token has at least this probability.
CONFIDENT = 0.3
MIN_NEIGHBOURS = 3
MAX_NEIGHBOURS = 10
MAX_CANDIDATES = 80  # subjects asked per neighbourhood search
MAX_SPECIFICITY = 8
_GENERIC = ("It is well known that {p}", "Everyone knows that {p}", "According to the encyclopedia, {p}",
            "Fact: {p}", "As many people know, {p}")


@dataclass(frozen=True)
class LibraryRelation:
    name: str
    subject_types: tuple[str, ...]
    object_type: str
    kind: str
    templates: tuple[str, ...]
    heldout: tuple[str, ...]
    keywords: tuple[str, ...]
    describe: str = ""
    questions: tuple[str, ...] = ()  # direct questions, asked through a chat template

    @property
    def phrasings(self) -> tuple[str, ...]:
        return self.templates + self.heldout


@functools.lru_cache(maxsize=1)
def relation_library() -> dict[str, LibraryRelation]:
    """The library, with the graph's 12 relations' own phrasings added to theirs (matching only)."""
    try:
        data = json.loads(LIBRARY_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RippleError(f"relation library {LIBRARY_FILE} cannot be read ({exc}); reinstall ripple") from None
    out = {}
    for r in data["relations"]:
        graph = REAL_RELATIONS.get(r["name"])
        extra = tuple(p for p in ((graph.templates + (graph.heldout or ())) if graph else ()) if p not in r["templates"])
        out[r["name"]] = LibraryRelation(r["name"], tuple(r["subject_type"].split("|")), r["object_type"], r["kind"],
                                         tuple(r["templates"]) + extra, tuple(r["heldout"]), tuple(r["keywords"]),
                                         r.get("describe", ""), tuple(r.get("questions", ())))
    return out


def _norm(text: str) -> str:
    """A phrasing for comparison: lower case, one space, no final punctuation, the subject as X."""
    text = text.replace("{}", " X ").lower()
    return " ".join(re.sub(r"[^\w' ]+", " ", text).split())


@dataclass(frozen=True)
class Match:
    """The relation an edit prompt asks for (None: none matched), the score and how it was found."""

    relation: str | None
    score: float
    how: str  # exact, scored or none


_STOP = frozenset("x the of is a an in was by to its as and for on at that which who it has with are be".split())


def _content(text: str) -> str:
    return " ".join(w for w in _norm(text).split() if w not in _STOP)


class _Matcher:
    """Each relation as one document (its phrasings, its description, its keywords thrice); a
    prompt's score against a relation is the sum of the word (1-2 gram) and character (3-5 gram)
    TF-IDF cosines to that document. ``exclude``: a phrasing left out (leave-one-out calibration)."""

    def __init__(self, library: dict[str, LibraryRelation], exclude: str | None = None):
        from sklearn.feature_extraction.text import TfidfVectorizer  # lazy: heavy

        self.names = list(library)
        self.exact = {}
        docs = []
        for r in library.values():
            phrasings = [p for p in r.phrasings if p != exclude]
            for p in phrasings:
                self.exact.setdefault(_norm(p), r.name)
            docs.append(" ".join([*(_norm(p) for p in phrasings), _norm(r.describe), *(r.keywords * 3)]))
        self.words = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, preprocessor=_content)
        self.chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
        self.w_matrix = self.words.fit_transform(docs)
        self.c_matrix = self.chars.fit_transform(docs)

    def scores(self, prompt: str) -> dict[str, float]:
        key = _norm(prompt)
        sims = (self.w_matrix @ self.words.transform([prompt]).T).toarray().ravel() + \
            (self.c_matrix @ self.chars.transform([key]).T).toarray().ravel()
        return dict(zip(self.names, (float(x) for x in sims)))

    def match(self, prompt: str) -> Match:
        key = _norm(prompt)
        if key in self.exact:
            return Match(self.exact[key], 1.0, "exact")
        scored = self.scores(prompt)
        name = max(scored, key=lambda n: (scored[n], n))
        if scored[name] < MATCH_MIN:
            return Match(None, round(scored[name], 4), "none")
        return Match(name, round(scored[name], 4), "scored")


@functools.lru_cache(maxsize=1)
def _matcher() -> _Matcher:
    return _Matcher(relation_library())


def match_relation(prompt: str) -> Match:
    """The library relation ``prompt`` (a template with ``{}``) asks for.

    >>> match_relation("{} plays the sport of").relation
    'sport'
    >>> m = match_relation("{} passed away in the town of"); (m.relation, m.how)
    ('died_in', 'scored')
    >>> match_relation("{} smells faintly of").how
    'none'
    """
    return _matcher().match(prompt)


# --- the model's answers ----------------------------------------------------------------------------

@torch.no_grad()
def greedy_answers(model, tok, prompts: list[str], steps: int = 4, batch_size: int = 64) -> list[tuple[list[str], list[float]]]:
    """Each prompt's greedy continuation, ``steps`` tokens: their texts and their probabilities,
    batched (right-padded; each row continues from its own last token)."""
    device = input_device(model)
    out: list[tuple[list[str], list[float]]] = []
    for start in range(0, len(prompts), batch_size):
        enc = [text_ids(tok, p) for p in prompts[start:start + batch_size]]
        new: list[list[int]] = [[] for _ in enc]
        probs: list[list[float]] = [[] for _ in enc]
        for _ in range(steps):
            ids, mask = pad_ids([e + n for e, n in zip(enc, new)], tok, device)
            keep = torch.zeros_like(mask, dtype=torch.bool)
            keep[torch.arange(len(enc), device=device), mask.sum(1) - 1] = True  # each row's last token only
            p, nxt = torch.softmax(selected_logits(model, ids, mask, keep).float(), -1).max(-1)
            for i in range(len(enc)):
                new[i].append(int(nxt[i]))
                probs[i].append(float(p[i]))
        out += [([tok.decode(n[:k + 1], skip_special_tokens=True) for k in range(len(n))], pr)
                for n, pr in zip(new, probs)]
    return out


def answer_and_confidence(prefixes: list[str], probs: list[float], names) -> tuple[str, float]:
    """The answer read from a greedy continuation (``prefixes``: its text after each token) and the
    probability of the token that starts it (after any skipped article)."""
    answer = read_answer(prefixes[-1], names) if prefixes else ""
    if not answer:
        return "", 0.0
    for text, p in zip(prefixes, probs):
        if re.sub(r"^(the|a|an)(\s+|$)", "", text.strip(), flags=re.IGNORECASE).strip():
            return answer, p
    return answer, probs[0]


#: Words that are never an answer by themselves (an article is skipped: "the football" reads "football").
_NOT_ANSWERS = frozenset("the a an his her their its our my your this that these those to in of on at by for from with "
                         "and or but is was are were be been as it he she they we i you not no one also".split())


def read_answer(text: str, names) -> str:
    """The answer a continuation gives (:func:`~ripple.editing.setup.said_answer`) after a leading
    article, without a possessive; "" when it is a function word (no answer).

    >>> read_answer(" the football club", ["Football"]), read_answer(" New York City", ["New York"])
    ('football', 'New York')
    >>> read_answer(" his brother", [])
    ''
    """
    text = re.sub(r"^(the|a|an)\s+", "", text.strip(), flags=re.IGNORECASE)
    answer = re.sub(r"'s$", "", said_answer(text, names)) if re.match(r"[\w'-]", text) else ""
    return "" if answer.lower() in _NOT_ANSWERS else answer


def beliefs(model, tok, prompts: list[str], names, cache: bool = True) -> list[tuple[str, float]]:
    """The model's answer to each prompt and its probability (:func:`answer_and_confidence`). What the
    model generated is cached per model and prompts (``$RIPPLE_CACHE/open_world``); the answer is read
    from it on every call, so a change to the reading never meets stale answers."""
    key = hashlib.sha256(json.dumps([model_fingerprint(model, tok, -1), prompts]).encode()).hexdigest()[:24]
    path = cache_dir() / "open_world" / f"generated-{key}.json"
    generated = None
    if cache and path.is_file():
        try:
            generated = [(list(texts), list(probs)) for texts, probs in json.loads(path.read_text())]
        except (OSError, ValueError, TypeError):
            generated = None
    if generated is None:
        generated = greedy_answers(model, tok, prompts)
        if cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(path, generated)
            except OSError:
                pass  # a read-only cache: generate again next time
    return [answer_and_confidence(texts, probs, names) for texts, probs in generated]


# --- completing a request ---------------------------------------------------------------------------

def _subject_types(match: Match, subject: str) -> tuple[str, ...]:
    from ripple.world.tables import type_of_name  # lazy: heavy

    table = type_of_name(subject)
    if table is not None:
        return (table,)
    if match.relation is not None:
        return relation_library()[match.relation].subject_types
    return ()


def complete_open(model, tok, request: EditRequest) -> EditRequest:
    """``request`` with what the graph could not give it: ``target_true`` (the model's answer),
    paraphrases, neighbourhood and specificity prompts, each with its source (see the module
    docstring). Fields the request already has are kept."""
    from ripple.world.tables import answer_names, subjects_of_type  # lazy: heavy

    names = answer_names()
    match = match_relation(request.prompt)
    sources = dict(request.sources)
    out = request
    said, p = beliefs(model, tok, [request.rendered], names)[0]
    if request.target_true is None and said and said != request.target_new:
        out = replace(out, target_true=said)
        sources["target_true"] = f"model belief (its answer before the edit, first-token p = {p:.2f})"
    lib = relation_library()
    if not request.paraphrase_prompts:
        if match.relation is not None:
            phr = [t for t in lib[match.relation].phrasings if _norm(t) != _norm(request.prompt)][:7]
            what = f"relation library: {match.relation} ({match.how} match, score {match.score:.2f})"
        else:
            body = request.prompt[0].lower() + request.prompt[1:] if not request.prompt.startswith("{}") else request.prompt
            phr = [g.format(p=body) for g in _GENERIC]
            what = f"generic rewrites (no relation of the library matched; best score {match.score:.2f})"
        out = replace(out, paraphrase_prompts=tuple(fill(t, request.subject) for t in phr))
        sources["paraphrase"] = what
    types = _subject_types(match, request.subject)
    if not request.neighborhood_prompts:
        out, sources = _neighbourhood(model, tok, out, types, names, subjects_of_type, sources)
    if not request.specificity_prompts:
        out, sources = _specificity(model, tok, out, match, types, names, sources)
    return replace(out, sources=tuple(sources.items()))


def _pool(types, subjects_of_type, subject: str) -> list[str]:
    """Up to :data:`MAX_CANDIDATES` subjects of ``types``, the types in turn, the edit's own left out."""
    tables = [subjects_of_type(t) for t in types]
    pool = [t[i] for i in range(max(map(len, tables), default=0)) for t in tables if i < len(t)]
    return [s for s in dict.fromkeys(pool) if s.lower() != subject.lower()][:MAX_CANDIDATES]


def _neighbourhood(model, tok, request, types, names, subjects_of_type, sources):
    # no known type, or no table of it: the graph's subjects of every type are the candidates
    world = real_world()
    every = tuple(dict.fromkeys(world.entities[f.subject].type for f in world.facts))
    pool = _pool(types, subjects_of_type, request.subject)
    kind = "/".join(types)
    if not pool:  # no table of this type (works, teams, rivers): the same prompt about subjects of every type
        pool = _pool(every, subjects_of_type, request.subject)
        kind = f"graph (no table of {kind})" if kind else "graph"
    if not pool:
        return request, sources
    got = beliefs(model, tok, [fill(request.prompt, s) for s in pool], names)
    old = [s for s, (a, _) in zip(pool, got) if request.target_true and a == request.target_true][:MAX_NEIGHBOURS]
    own = [(s, a) for s, (a, p) in zip(pool, got)
           if a and a not in (request.target_true, request.target_new) and p >= CONFIDENT and s not in old]
    if len(old) >= MIN_NEIGHBOURS:
        prompts, answers = [fill(request.prompt, s) for s in old], ()
        what = (f"model belief: {len(old)} of {len(pool)} {kind} subjects the model answers "
                f"{request.target_true!r} before the edit")
    else:
        rest = own[:MAX_NEIGHBOURS - len(old)]
        prompts = [fill(request.prompt, s) for s in old] + [fill(request.prompt, s) for s, _ in rest]
        answers = tuple([request.target_true] * len(old) + [a for _, a in rest])
        what = (f"model belief: {len(old)} {kind} subjects answered {request.target_true!r} and {len(rest)} answered "
                f"confidently (p >= {CONFIDENT}) with their own answers, of {len(pool)} asked")
    if not prompts:
        return request, sources
    sources["neighborhood"] = what
    return replace(request, neighborhood_prompts=tuple(prompts), neighborhood_answers=answers), sources


def _specificity(model, tok, request, match, types, names, sources):
    lib = relation_library()
    # a subject of no known type: every relation is asked, and only confident answers are kept
    others = [r for r in lib.values() if r.name != match.relation and (not types or any(t in r.subject_types
                                                                                        for t in types))]
    if not others:
        return request, sources
    got = beliefs(model, tok, [fill(r.templates[0], request.subject) for r in others], names)
    keep = [(r.templates[0], a) for r, (a, p) in zip(others, got)
            if a and p >= CONFIDENT and a not in (request.target_new,)][:MAX_SPECIFICITY]
    if not keep:
        return request, sources
    sources["specificity"] = (f"model belief: {len(keep)} of {len(others)} other relations of the subject the model "
                              f"answers confidently (first-token p >= {CONFIDENT}) before the edit")
    return replace(request, specificity_prompts=tuple(t for t, _ in keep),
                   specificity_answers=tuple(a for _, a in keep)), sources
