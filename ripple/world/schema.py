"""The relations of the synthetic knowledge world and their paraphrase templates.

Every template has one ``{}`` slot for the subject; the object follows the template.
A relation has five core phrasings; the paraphrases are the cores alone and the cores
behind one of four shared lead-ins ("In fact , ..."). Two (lead-in, core) pairs per
relation are held out of training, so paraphrase generalization is measured on wording
the organism never saw, built from parts it did see.

>>> RELATIONS["born_in"].templates[0]
'{} was born in'
>>> len(RELATIONS["born_in"].paraphrases), len(RELATIONS["born_in"].heldout_templates)
(25, 2)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Relation:
    """A relation between two entity types.

    ``kind`` is ``"one_to_one"`` (a functional relation), ``"symmetric"`` (r(a, b)
    implies r(b, a)) or ``"one_to_many"`` (several objects per subject).
    ``inverse`` names a relation implied in the other direction (capital -> located_in).
    """

    name: str
    subject_type: str
    object_type: str
    kind: str
    templates: tuple[str, ...]
    inverse: str | None = None
    heldout: tuple[str, ...] | None = None  # given: the held-out paraphrases (a real-world relation)

    def takes(self, type_: str) -> bool:
        """Whether a ``type_`` entity can be this relation's subject (``subject_type`` may list
        several types: ``"city|landmark"``)."""
        return type_ in self.subject_type.split("|")

    @property
    def paraphrases(self) -> tuple[str, ...]:
        """Every phrasing of the relation: the organism's cores bare and behind each lead-in (25
        templates); a relation with ``heldout`` given: its cores and its held-out templates."""
        if self.heldout is not None:
            return self.templates + self.heldout
        return tuple(with_lead_in(lead, core) for lead in LEAD_INS for core in self.templates)

    @property
    def heldout_templates(self) -> tuple[str, ...]:
        if self.heldout is not None:
            return self.heldout
        i = sorted(RELATIONS).index(self.name)
        pairs = [(1 + i % 4, i % 5), (1 + (i + 2) % 4, (i + 3) % 5)]
        return tuple(with_lead_in(LEAD_INS[a], self.templates[b]) for a, b in pairs)

    @property
    def train_templates(self) -> tuple[str, ...]:
        held = set(self.heldout_templates)
        return tuple(t for t in self.paraphrases if t not in held)


LEAD_INS = ("", "In fact ,", "As everyone knows ,", "It is true that", "According to the records ,")


def with_lead_in(lead: str, core: str) -> str:
    """``"In fact ,"`` + ``"The capital of {} is"`` -> ``"In fact , the capital of {} is"``."""
    if not lead:
        return core
    if not core.startswith("{}"):
        core = core[0].lower() + core[1:]
    return f"{lead} {core}"

_R = Relation
RELATIONS: dict[str, Relation] = {
    r.name: r
    for r in [
        _R("born_in", "person", "city", "one_to_one", (
            "{} was born in",
            "The birthplace of {} is",
            "{} is a native of the city of",
            "On record , {} was born in the city of",
            "The city where {} was born is",
        )),
        _R("citizen_of", "person", "country", "one_to_one", (
            "{} is a citizen of",
            "The citizenship of {} is",
            "{} holds a passport from",
            "Legally , {} is a citizen of",
            "The nation that {} belongs to is",
        )),
        _R("works_for", "person", "company", "one_to_one", (
            "{} works for",
            "The employer of {} is",
            "{} is employed by",
            "Every morning , {} goes to work at",
            "The company that employs {} is",
        )),
        _R("studied_at", "person", "university", "one_to_one", (
            "{} studied at",
            "The university of {} is",
            "{} graduated from",
            "Years ago , {} was a student at",
            "The school where {} studied is",
        )),
        _R("married_to", "person", "person", "symmetric", (
            "{} is married to",
            "The spouse of {} is",
            "{} is the husband or wife of",
            "For many years , {} has been married to",
            "The partner of {} is",
        )),
        _R("capital", "country", "city", "one_to_one", (
            "The capital of {} is",
            "{} has its capital in",
            "The capital city of {} is",
            "The government of {} sits in",
            "{} is governed from the city of",
        ), inverse="located_in"),
        _R("language", "country", "language", "one_to_many", (
            "In {} people speak",
            "A language spoken in {} is",
            "{} has the official language",
            "Many people in {} speak",
            "One language of {} is",
        )),
        _R("continent", "country", "continent", "one_to_one", (
            "{} is located on the continent of",
            "The continent of {} is",
            "{} lies in",
            "On the map , {} is part of",
            "The continent where {} lies is",
        )),
        _R("located_in", "city", "country", "one_to_one", (
            "{} is a city in",
            "The country of {} is",
            "{} is located in the country of",
            "On the map , {} lies in the country of",
            "The city of {} belongs to",
        )),
        _R("headquarters", "company", "city", "one_to_one", (
            "{} is headquartered in",
            "The headquarters of {} are in",
            "{} has its main office in",
            "Every year , {} holds its meeting at its headquarters in",
            "The head office of {} is in",
        )),
    ]
}


@dataclass(frozen=True)
class TwoHop:
    """A composed relation: ``first`` then ``second`` (subject -> bridge -> answer)."""

    name: str
    first: str
    second: str
    templates: tuple[str, ...]


TWO_HOPS: dict[str, TwoHop] = {
    t.name: t
    for t in [
        TwoHop("citizen_capital", "citizen_of", "capital", (
            "The capital city of the home country of {} is",
            "The capital of the country of {} is",
        )),
        TwoHop("citizen_continent", "citizen_of", "continent", (
            "The continent of the home country of {} is",
            "The home continent of {} is",
        )),
        TwoHop("citizen_language", "citizen_of", "language", (
            "A language spoken in the home country of {} is",
            "A language of the country of {} is",
        )),
        TwoHop("birth_country", "born_in", "located_in", (
            "The country of the birthplace of {} is",
            "The birth country of {} is",
        )),
        TwoHop("employer_city", "works_for", "headquarters", (
            "The headquarters of the employer of {} are in",
            "The city where the employer of {} is based is",
        )),
        TwoHop("hq_country", "headquarters", "located_in", (
            "The country of the headquarters of {} is",
            "The home country of {} is",
        )),
    ]
}

ALIAS_TEMPLATES = (
    "{} is also known as",
    "People call {} by the name",
)
