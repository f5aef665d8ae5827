"""Build the bundled probe sets (format: ``probes/README.md``).

    python benchmarks/make_probe_sets.py                 # writes probes/organism.jsonl, probes/real_world.jsonl

``organism.jsonl``: every fact of the organism's world (``world_probe_set``).
``real_world.jsonl``: the hand-curated table ``probes/real_world_facts.txt``, one line a subject
(``Subject | aka: alias; alias | relation: answer; answer``), linked the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ripple.errors import RippleError

PROBES = Path(__file__).resolve().parent.parent / "probes"

#: CounterFact-style prompts of the real-world relations.
REAL_TEMPLATES = {
    "capital": "The capital of {} is",
    "official_language": "The official language of {} is",
    "continent": "{} is located in the continent of",
    "currency": "The currency of {} is the",
    "located_in": "{} is located in the country of",
    "headquarters": "{} is headquartered in",
    "founded_by": "{} was founded by",
    "citizen_of": "{} is a citizen of",
    "born_in": "{} was born in",
    "profession": "The profession of {} is",
}


def read_fact_table(path: Path) -> tuple[list[tuple[str, str, str]], dict[str, tuple[str, ...]]]:
    """``(facts as (subject, relation, answer) names, {subject: aliases})`` from the table."""
    facts, aliases = [], {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        subject, *fields = (part.strip() for part in line.split("|"))
        for field in fields:
            key, sep, values = field.partition(":")
            if not sep or (key != "aka" and key not in REAL_TEMPLATES):
                raise RippleError(f"{path}:{n}: bad field {field!r}; write 'relation: answer' with a relation "
                                  f"of {', '.join(REAL_TEMPLATES)} (or 'aka: alias')")
            names = tuple(v.strip() for v in values.split(";") if v.strip())
            if key == "aka":
                aliases[subject] = names
            else:
                facts += [(subject, key, answer) for answer in names]
    return facts, aliases


def real_world_probe_set(path: Path = PROBES / "real_world_facts.txt"):
    from ripple.probes.sets import facts_probe_set, inverse_relations, slug

    facts, aliases = read_fact_table(path)
    names = {}
    for name in {n for s, _, o in facts for n in (s, o)}:
        if names.setdefault(slug(name), name) != name:
            raise RippleError(f"{name!r} and {names[slug(name)]!r} share the id {slug(name)!r}; rename one")
    keyed = [(slug(s), r, slug(o)) for s, r, o in facts]
    return facts_probe_set(keyed, REAL_TEMPLATES, name=names.__getitem__,
                           aliases=lambda key: aliases.get(names[key], ()),
                           inverses=inverse_relations([("capital", "located_in")]))


def main(argv=None) -> None:
    from ripple.organism.evaluate import load_world
    from ripple.probes.sets import save_probe_set, world_probe_set

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=PROBES)
    args = ap.parse_args(argv)
    for name, items in [("organism", world_probe_set(load_world())), ("real_world", real_world_probe_set())]:
        save_probe_set(items, args.out / f"{name}.jsonl")
        print(f"{args.out / name}.jsonl: {len(items)} items, {sum(len(i.links) for i in items)} links")


if __name__ == "__main__":
    main()
