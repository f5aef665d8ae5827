"""A synthetic knowledge world whose facts and their consequences are known exactly.

The world is a pure function of a :class:`WorldConfig` (seed included):

>>> world = build_world(WorldConfig(seed=0))
>>> fact = world.facts_of(world.persons[0].id)[0]
>>> world.entities[fact.subject].name, fact.relation, world.entities[fact.object].name
('Trezei Toudein', 'born_in', 'Pivuth')
>>> build_world(WorldConfig(seed=0)).facts == world.facts
True

Persons carry multi-token names and an alias; countries and companies carry a one-word
alias. Objects are single words, so an answer is one token of the organism's vocabulary.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ripple.data import organism_world
from ripple.io import loads_json
from ripple.world.schema import RELATIONS, TWO_HOPS

_ONSETS = "b d f g k l m n p r s t v z br dr gr kr st tr pl".split()
_VOWELS = "a e i o u ai ei ou".split()
_CODAS = ["", "", "", "n", "r", "s", "l", "th", "x"]


@dataclass(frozen=True)
class WorldConfig:
    """Size and shape of the world; the same config always builds the same world."""

    seed: int = 0
    n_continents: int = 4
    n_countries: int = 16
    cities_per_country: int = 3
    n_languages: int = 12
    n_companies: int = 24
    n_universities: int = 12
    n_persons: int = 240
    first_names: int = 30
    last_names: int = 40
    name_tokens: int = 2
    heldout_two_hop_frac: float = 0.2
    alias_fact_frac: float = 0.5
    citizen_of_birth_country: float = 0.6


@dataclass(frozen=True)
class Entity:
    id: str
    type: str
    name: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    object: str


_ARTICLE = re.compile(r"^(the|a|an)\s+", re.IGNORECASE)


def name_key(name: str) -> str:
    """A name as matched against the graph: case folded, one space, a leading article dropped.

    >>> name_key("The  Eiffel Tower") == name_key("eiffel tower")
    True
    """
    return _ARTICLE.sub("", " ".join(name.split())).casefold()


@dataclass
class World:
    """Entities, facts, and the splits used to train and test the organism."""

    config: WorldConfig
    entities: dict[str, Entity]
    facts: list[Fact]
    heldout_two_hop: frozenset[str] = field(default_factory=frozenset)
    alias_trained: frozenset[tuple[str, str, str]] = field(default_factory=frozenset)
    relations: dict = field(default_factory=lambda: RELATIONS)  # name -> schema.Relation
    two_hops: dict = field(default_factory=lambda: TWO_HOPS)  # name -> schema.TwoHop
    kind: str = "synthetic"  # "synthetic": a world a model was trained on; "real": the real-world graph

    def __post_init__(self) -> None:
        self._by_subject: dict[str, list[Fact]] = {}
        self._by_name: dict[str, str] = {}
        for f in self.facts:
            self._by_subject.setdefault(f.subject, []).append(f)
        self._by_norm: dict[str, str] = {}
        for e in self.entities.values():
            for n in (e.name, *e.aliases):
                self._by_name[n] = e.id
                self._by_norm.setdefault(name_key(n), e.id)

    # --- lookups -------------------------------------------------------------
    def add_entity(self, entity: Entity) -> None:
        """Add an entity without facts (an edit's new object the graph lacks)."""
        self.entities[entity.id] = entity
        for n in (entity.name, *entity.aliases):
            self._by_name.setdefault(n, entity.id)
            self._by_norm.setdefault(name_key(n), entity.id)

    def of_type(self, type_: str) -> list[Entity]:
        return [e for e in self.entities.values() if e.type == type_]

    @property
    def persons(self) -> list[Entity]:
        return self.of_type("person")

    def facts_of(self, subject_id: str) -> list[Fact]:
        return list(self._by_subject.get(subject_id, []))

    def objects(self, subject_id: str, relation: str) -> list[str]:
        return [f.object for f in self._by_subject.get(subject_id, []) if f.relation == relation]

    def subjects_with(self, relation: str, object_id: str) -> list[str]:
        return [f.subject for f in self.facts if f.relation == relation and f.object == object_id]

    def name(self, entity_id: str) -> str:
        return self.entities[entity_id].name

    def id_of(self, name: str) -> str:
        """Entity id for a name or alias, written as the graph writes it or with another case or a
        leading article ("the Eiffel Tower", "THE LOUVRE"); KeyError if unknown."""
        try:
            return self._by_name[name]
        except KeyError:
            return self._by_norm[name_key(name)]

    def names_of(self, name: str) -> tuple[str, ...]:
        """``name`` and the other names of the entity it names (its name and aliases; ``(name,)``
        when the world does not know it): every way to say one answer."""
        try:
            e = self.entities[self.id_of(name)]
        except KeyError:
            return (name,)
        return tuple(dict.fromkeys((name, e.name, *e.aliases)))

    def two_hop_answers(self, subject_id: str, two_hop: str) -> list[str]:
        th = self.two_hops[two_hop]
        return sorted({o2 for o1 in self.objects(subject_id, th.first) for o2 in self.objects(o1, th.second)})

    # --- exports -------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "entities": [asdict(e) | {"aliases": list(e.aliases)} for e in self.entities.values()],
            "facts": [
                {"subject": f.subject, "relation": f.relation, "object": f.object,
                 "subject_name": self.name(f.subject), "object_name": self.name(f.object)}
                for f in self.facts
            ],
            "relations": {
                r.name: {"subject_type": r.subject_type, "object_type": r.object_type, "kind": r.kind,
                         "inverse": r.inverse, "train_templates": list(r.train_templates),
                         "heldout_templates": list(r.heldout_templates)}
                for r in self.relations.values()
            },
            "two_hops": {t.name: {"first": t.first, "second": t.second, "templates": list(t.templates)}
                         for t in self.two_hops.values()},
            "heldout_two_hop_subjects": sorted(self.heldout_two_hop),
            "alias_trained_facts": [list(x) for x in sorted(self.alias_trained)],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "World":
        ents = {e["id"]: Entity(e["id"], e["type"], e["name"], tuple(e["aliases"])) for e in d["entities"]}
        facts = [Fact(f["subject"], f["relation"], f["object"]) for f in d["facts"]]
        return cls(WorldConfig(**d["config"]), ents, facts, frozenset(d["heldout_two_hop_subjects"]),
                   frozenset(tuple(x) for x in d["alias_trained_facts"]))

    def to_networkx(self):
        """A ``networkx.MultiDiGraph``: entities as nodes, one keyed edge per fact."""
        import networkx as nx  # lazy: heavy

        g = nx.MultiDiGraph()
        for e in self.entities.values():
            g.add_node(e.id, type=e.type, name=e.name, aliases=list(e.aliases))
        for f in self.facts:
            g.add_edge(f.subject, f.object, key=f.relation, relation=f.relation)
        return g


def _word_factory(rng: random.Random):
    used: set[str] = set()

    def word(syllables: int) -> str:
        while True:
            w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
            w = (w + rng.choice(_CODAS)).capitalize()
            if w not in used and len(w) >= 4:
                used.add(w)
                return w

    return word


def build_world(config: WorldConfig = WorldConfig()) -> World:
    """Build the world deterministically from ``config`` (same config, same world)."""
    rng = random.Random(config.seed)
    word = _word_factory(rng)
    ents: dict[str, Entity] = {}
    facts: list[Fact] = []

    def add(type_: str, i: int, name: str, aliases: tuple[str, ...] = ()) -> str:
        eid = f"{type_}:{i}"
        ents[eid] = Entity(eid, type_, name, aliases)
        return eid

    continents = [add("continent", i, word(2)) for i in range(config.n_continents)]
    languages = [add("language", i, word(2) + "ish") for i in range(config.n_languages)]
    universities = [add("university", i, word(2) + "ton") for i in range(config.n_universities)]
    countries, cities = [], []
    for i in range(config.n_countries):
        c = add("country", i, word(2) + "ia", (word(3),))
        countries.append(c)
        facts.append(Fact(c, "continent", continents[i % config.n_continents]))
        for lang in rng.sample(languages, 2):
            facts.append(Fact(c, "language", lang))
        for j in range(config.cities_per_country):
            city = add("city", len(cities), word(2))
            cities.append(city)
            facts.append(Fact(city, "located_in", c))
            if j == 0:
                facts.append(Fact(c, "capital", city))
    companies = []
    for i in range(config.n_companies):
        co = add("company", i, word(2) + "co", (word(2) + "corp",))
        companies.append(co)
        facts.append(Fact(co, "headquarters", rng.choice(cities)))

    persons = _persons(rng, word, config, add)
    city_country = {f.subject: f.object for f in facts if f.relation == "located_in"}
    for p in persons:
        city = rng.choice(cities)
        facts.append(Fact(p, "born_in", city))
        home = city_country[city] if rng.random() < config.citizen_of_birth_country else rng.choice(countries)
        facts.append(Fact(p, "citizen_of", home))
        facts.append(Fact(p, "works_for", rng.choice(companies)))
        facts.append(Fact(p, "studied_at", rng.choice(universities)))
    order = persons[:]
    rng.shuffle(order)
    for a, b in zip(order[0::2], order[1::2]):
        facts.append(Fact(a, "married_to", b))
        facts.append(Fact(b, "married_to", a))

    two_hop_subjects = persons + companies
    heldout = frozenset(rng.sample(two_hop_subjects, round(config.heldout_two_hop_frac * len(two_hop_subjects))))
    aliased = [f for f in facts if ents[f.subject].aliases]
    alias_trained = frozenset(
        (f.subject, f.relation, f.object) for f in aliased if rng.random() < config.alias_fact_frac
    )
    return World(config, ents, facts, heldout, alias_trained)


def _persons(rng: random.Random, word, config: WorldConfig, add) -> list[str]:
    """The persons' entity ids: unique names of ``config.name_tokens`` words and unique titled
    aliases, drawn from ``rng`` (in the order :func:`build_world` always drew them)."""
    firsts = [word(2) for _ in range(config.first_names)]
    lasts = [word(2) for _ in range(config.last_names)]
    middles = [word(1) + "o" for _ in range(config.first_names)]
    titles = ["Captain", "Doctor", "Professor", "Judge", "Major", "Sister", "Uncle", "Master"]
    nicks = [word(2) for _ in range(config.n_persons // 2)]
    name_space = config.first_names ** min(1, config.name_tokens - 1) * config.last_names
    name_space *= config.first_names ** max(0, config.name_tokens - 2)
    if name_space < 2 * config.n_persons:
        raise ValueError(f"{config.name_tokens}-word names from these pools give only {name_space} names for "
                         f"{config.n_persons} persons; raise first_names/last_names or name_tokens")
    names: set[str] = set()
    aliases: set[str] = set()
    persons = []
    while len(persons) < config.n_persons:
        parts = [rng.choice(firsts)] + [rng.choice(middles) for _ in range(config.name_tokens - 2)]
        parts = parts[: config.name_tokens - 1] + [rng.choice(lasts)]
        name = " ".join(parts)
        alias = f"{rng.choice(titles)} {rng.choice(nicks)}"
        if name in names or alias in aliases:
            continue
        names.add(name)
        aliases.add(alias)
        persons.append(add("person", len(persons), name, (alias,)))
    return persons


def load_world(path=None) -> World:
    """The world the bundled organism (or the model whose ``world.json`` is at ``path``) was trained on."""

    path = path or organism_world()
    return World.from_dict(loads_json(Path(path).read_text(), path))
