"""The real-world knowledge graph: what the organism's world gives an edit, for real models.

The facts are a hand-curated table (``ripple/data/real_world_facts.txt``: countries, cities,
companies, people, landmarks); the relations below give each one five core phrasings and two held
out of every edit request, the two-hop relations that make compositionality computable, and the
inverse that makes logical generalization computable (``capital`` <-> ``capital_of``; the
``capital_of`` facts are derived from the ``capital`` ones). The graph is a
:class:`~ripple.world.World` of kind ``"real"``, so the ground truth, the RippleEdits plan, the
request completion and the probe set work on it as on the organism's world.

>>> w = real_world()
>>> w.kind, w.name(w.objects("france", "capital")[0])
('real', 'Paris')
>>> w.objects("paris", "capital_of")
['france']
>>> w.two_hop_answers("marseille", "city_capital")
['paris']
>>> len(w.relations["capital"].templates), len(w.relations["capital"].heldout_templates)
(5, 2)
"""

from __future__ import annotations

import functools
from pathlib import Path

from ripple.errors import RippleError
from ripple.world.edits import slug
from ripple.world.generate import Entity, Fact, World, WorldConfig
from ripple.world.schema import Relation, TwoHop

FACTS_FILE = Path(__file__).resolve().parent.parent / "data" / "real_world_facts.txt"

#: A table section's header word -> the type of its subjects.
SECTIONS = {"countries": "country", "cities": "city", "companies": "company", "people": "person",
            "landmarks": "landmark"}

_R = Relation
#: The real-world relations. ``templates[0]`` is the CounterFact-style prompt of the probe set;
#: ``heldout`` phrasings are never put in an edit request (they test generalization only).
REAL_RELATIONS: dict[str, Relation] = {r.name: r for r in [
    _R("capital", "country", "city", "one_to_one", (
        "The capital of {} is",
        "{} has its capital in",
        "The capital city of {} is",
        "The government of {} sits in",
        "The seat of government of {} is in",
    ), inverse="capital_of", heldout=("The city that serves as the capital of {} is", "{} is governed from")),
    _R("capital_of", "city", "country", "one_to_one", (
        "{} is the capital of",
        "{} is the capital city of",
        "{} serves as the capital of",
        "As a capital city, {} belongs to",
        "{} is the seat of government of",
    ), inverse="capital", heldout=("{} became the capital of", "The country with its capital in {} is")),
    _R("official_language", "country", "language", "one_to_many", (
        "The official language of {} is",
        "In {}, the official language is",
        "The language spoken officially in {} is",
        "People in {} officially speak",
        "An official language of {} is",
    ), heldout=("The national language of {} is", "Laws in {} are written in")),
    _R("continent", "country", "continent", "one_to_one", (
        "{} is located in the continent of",
        "{} is a country in",
        "The continent of {} is",
        "{} lies on the continent of",
        "{} is part of the continent of",
    ), heldout=("On a map, {} is found in", "The country of {} is located in")),
    _R("currency", "country", "currency", "one_to_one", (
        "The currency of {} is the",
        "The official currency of {} is the",
        "In {}, people pay with the",
        "The money used in {} is the",
        "{} uses the currency called the",
    ), heldout=("Prices in {} are given in the", "The legal tender of {} is the")),
    _R("located_in", "city", "country", "one_to_one", (
        "{} is located in the country of",
        "{} is in the country of",
        "The country where {} is located is",
        "{} can be found in the country of",
        "{} lies in the country of",
    ), heldout=("To see {}, you travel to the country of", "{} is a place in the country of")),
    _R("in_city", "landmark", "city", "one_to_one", (
        "{} is located in the city of",
        "{} stands in the city of",
        "The city where {} is located is",
        "{} can be found in the city of",
        "To see {}, you have to travel to the city of",
    ), heldout=("{} is a landmark in the city of", "Tourists visit {} in the city of")),
    _R("headquarters", "company", "city", "one_to_one", (
        "{} is headquartered in",
        "The headquarters of {} are in",
        "{} has its head office in",
        "The head office of {} is located in",
        "{} is based in the city of",
    ), heldout=("The main office of {} is in", "The company {} has its headquarters in")),
    _R("founded_by", "company", "person", "one_to_many", (
        "{} was founded by",
        "The founder of {} is",
        "{} was started by",
        "The company {} was founded by",
        "{} was established by",
    ), heldout=("The person who founded {} is", "{} owes its founding to")),
    _R("citizen_of", "person", "country", "one_to_one", (
        "{} is a citizen of",
        "{} holds citizenship of",
        "The country of citizenship of {} is",
        "{} is a national of",
        "{} has the nationality of",
    ), heldout=("The passport of {} was issued by", "By nationality, {} is a citizen of")),
    _R("born_in", "person", "city", "one_to_one", (
        "{} was born in",
        "The birthplace of {} is",
        "{} was born in the city of",
        "The city where {} was born is",
        "The place of birth of {} is",
    ), heldout=("{} came into the world in", "The hometown where {} was born is")),
    _R("profession", "person", "profession", "one_to_many", (
        "The profession of {} is",
        "{} worked as a",
        "By profession, {} is a",
        "{} is known as a",
        "The occupation of {} is",
    ), heldout=("{} made a living as a", "{} became famous as a")),
]}

_T = TwoHop
#: Two-hop relations (subject -> bridge -> answer): compositionality I (the edited fact is the
#: first hop) and II (the second hop) on real facts.
REAL_TWO_HOPS: dict[str, TwoHop] = {t.name: t for t in [
    _T("capital_currency", "capital_of", "currency", (
        "The currency of the country whose capital is {} is the",
        "In the country whose capital is {}, people pay with the")),
    _T("capital_continent", "capital_of", "continent", (
        "The continent of the country whose capital is {} is",
        "The country whose capital is {} lies on the continent of")),
    _T("capital_language", "capital_of", "official_language", (
        "The official language of the country whose capital is {} is",
        "In the country whose capital is {}, the official language is")),
    _T("city_continent", "located_in", "continent", (
        "The continent of the country where {} is located is",
        "The country where {} is located lies on the continent of")),
    _T("city_currency", "located_in", "currency", (
        "The currency of the country where {} is located is the",
        "In the country where {} is located, people pay with the")),
    _T("city_capital", "located_in", "capital", (
        "The capital of the country where {} is located is",
        "The country where {} is located has its capital in")),
    _T("city_language", "located_in", "official_language", (
        "The official language of the country where {} is located is",
        "In the country where {} is located, the official language is")),
    _T("landmark_country", "in_city", "located_in", (
        "The country of the city where {} is located is",
        "The city where {} stands is in the country of")),
    _T("citizen_capital", "citizen_of", "capital", (
        "The capital of the country of citizenship of {} is",
        "The capital of the home country of {} is")),
    _T("citizen_continent", "citizen_of", "continent", (
        "The continent of the country of citizenship of {} is",
        "The home country of {} lies on the continent of")),
    _T("citizen_currency", "citizen_of", "currency", (
        "The currency of the home country of {} is the",
        "In the home country of {}, people pay with the")),
    _T("birth_country", "born_in", "located_in", (
        "The country where {} was born is",
        "{} was born in the country of")),
    _T("hq_country", "headquarters", "located_in", (
        "The country where {} is headquartered is",
        "{} is headquartered in the country of")),
    _T("founder_citizenship", "founded_by", "citizen_of", (
        "The founder of {} is a citizen of",
        "The country of citizenship of the founder of {} is")),
]}

#: Facts derived from others, not written in the table: (relation, from relation), reversed.
DERIVED = {"capital_of": "capital"}


def read_fact_table(path: Path = FACTS_FILE):
    """``(facts, aliases, types)`` of the table: facts as ``(subject, relation, answer)`` names, aliases
    by subject name, the type of every subject named under a section header."""
    facts, aliases, types = [], {}, {}
    section = None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RippleError(f"fact table {path} cannot be read ({exc.strerror}); restore it from the package") from None
    for n, line in enumerate(text.splitlines(), start=1):
        if line.startswith("## "):
            section = SECTIONS.get(line[3:].split(":")[0].strip().lower())
            if section is None:
                raise RippleError(f"{path}:{n}: unknown section {line[3:]!r}; use one of "
                                  f"{', '.join(s.title() for s in SECTIONS)}")
            continue
        if not line.strip() or line.startswith("#"):
            continue
        if section is None:
            raise RippleError(f"{path}:{n}: a fact line before any '## Section' header; put it under one")
        subject, *fields = (part.strip() for part in line.split("|"))
        types[subject] = section
        for field in fields:
            key, sep, values = field.partition(":")
            key = key.strip()
            if not sep or (key != "aka" and (key not in REAL_RELATIONS or key in DERIVED)):
                raise RippleError(f"{path}:{n}: bad field {field!r}; write 'relation: answer' with a relation of "
                                  f"{', '.join(r for r in REAL_RELATIONS if r not in DERIVED)} (or 'aka: alias')")
            names = tuple(v.strip() for v in values.split(";") if v.strip())
            if key == "aka":
                aliases[subject] = names
            else:
                facts += [(subject, key, answer) for answer in names]
    return facts, aliases, types


def build_real_world(path: Path = FACTS_FILE) -> World:
    """The graph of the table at ``path`` (see the module docstring); one-line errors for a bad table."""

    facts, aliases, types = read_fact_table(path)
    for derived, source in DERIVED.items():
        facts += [(o, derived, s) for s, r, o in facts if r == source]
    facts = list(dict.fromkeys(facts))
    names: dict[str, str] = {}
    ents: dict[str, Entity] = {}
    for s, r, o in facts:
        rel = REAL_RELATIONS[r]
        for name, type_ in ((s, types.get(s, rel.subject_type)), (o, types.get(o, rel.object_type))):
            key = slug(name)
            if names.setdefault(key, name) != name:
                raise RippleError(f"{path}: {name!r} and {names[key]!r} share the id {key!r}; rename one")
            ents.setdefault(key, Entity(key, type_, name, tuple(aliases.get(name, ()))))
        if not rel.takes(ents[slug(s)].type):
            raise RippleError(f"{path}: {s!r} is a {ents[slug(s)].type}, but {r!r} takes a {rel.subject_type}; "
                              "move the line to the right section")
    return World(WorldConfig(), ents, [Fact(slug(s), r, slug(o)) for s, r, o in facts],
                 relations=REAL_RELATIONS, two_hops=REAL_TWO_HOPS, kind="real")


@functools.lru_cache(maxsize=1)
def _bundled() -> World:
    return build_real_world()


def real_world() -> World:
    """The bundled real-world graph (a fresh copy each call: an edit may add its new object)."""
    w = _bundled()
    return World(w.config, dict(w.entities), list(w.facts), relations=w.relations, two_hops=w.two_hops, kind="real")
