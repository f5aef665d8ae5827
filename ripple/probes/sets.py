"""Probe sets: knowledge items (a fact, its prompt and its knowledge-graph links) stored as JSONL.

One item per line (format in ``probes/README.md``)::

    {"id": "france|capital|paris", "subject": "France", "relation": "capital",
     "prompt": "The capital of {} is", "answer": "Paris", "aliases": ["French Republic"],
     "links": [{"to": "paris|located_in|france", "type": "object_is_subject"}]}

::

    items = load_probe_set("probes/real_world.jsonl")
    items[0].rendered
    # -> 'The capital of France is'
    world_probe_set(load_world())[0].id
    # -> 'country:0|continent|continent:0'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ripple.errors import RippleError
from ripple.io import absent, atomic_write_text, loads_json
from ripple.tokens import fill
from ripple.world.edits import fact_id, slug  # noqa: F401 (slug: read from here too)

LINK_TYPES = ("same_subject", "object_is_subject", "same_object", "inverse")
REQUIRED = ("id", "subject", "relation", "prompt", "answer")
OPTIONAL = ("aliases", "links")


@dataclass(frozen=True)
class ProbeLink:
    """A knowledge-graph link to the item ``to`` (see :data:`LINK_TYPES`)."""

    to: str
    type: str


@dataclass(frozen=True)
class ProbeItem:
    """One knowledge item: ``prompt`` (one ``{}`` for the subject) is answered by ``answer``."""

    id: str
    subject: str
    relation: str
    prompt: str
    answer: str
    aliases: tuple[str, ...] = ()
    links: tuple[ProbeLink, ...] = ()

    @property
    def rendered(self) -> str:
        """The prompt with the subject filled in."""
        return fill(self.prompt, self.subject)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in REQUIRED}
        if self.aliases:
            out["aliases"] = list(self.aliases)
        if self.links:
            out["links"] = [{"to": link.to, "type": link.type} for link in self.links]
        return out


# --- reading and writing ------------------------------------------------------------------------

def _item_from_json(obj, where: str) -> ProbeItem:
    if not isinstance(obj, dict):
        raise RippleError(f"{where}: expected a JSON object, got {type(obj).__name__}; write one item per line")
    unknown = sorted(set(obj) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise RippleError(f"{where}: unknown field {unknown[0]!r}; fields are {', '.join(REQUIRED + OPTIONAL)}")
    for key in REQUIRED:
        if key not in obj:
            raise RippleError(f"{where}: missing field {key!r}; every item needs {', '.join(REQUIRED)}")
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise RippleError(f"{where}: field {key!r} must be a non-empty string")
    if obj["prompt"].count("{}") != 1:
        raise RippleError(f"{where}: prompt {obj['prompt']!r} must contain '{{}}' exactly once, where the "
                          "subject goes, e.g. 'The capital of {} is'")
    aliases = obj.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise RippleError(f"{where}: 'aliases' must be a list of non-empty strings")
    links = obj.get("links", [])
    if not isinstance(links, list) or not all(isinstance(x, dict) and set(x) == {"to", "type"}
                                              and all(isinstance(v, str) for v in x.values()) for x in links):
        raise RippleError(f"{where}: 'links' must be a list of {{\"to\": id, \"type\": str}} objects")
    return ProbeItem(*(obj[k] for k in REQUIRED), tuple(aliases),
                     tuple(ProbeLink(x["to"], x["type"]) for x in links))


def check_probe_set(items: Sequence[ProbeItem], where: Callable[[int], str] = lambda i: f"item {i}") -> None:
    """Unique ids and links that resolve; ``where(i)`` names item ``i`` in the error."""
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.id in first:
            raise RippleError(f"{where(i)}: duplicate id {item.id!r} (first at {where(first[item.id])}); "
                              "give every item a unique id")
        first[item.id] = i
    for i, item in enumerate(items):
        for link in item.links:
            if link.to not in first:
                raise RippleError(f"{where(i)}: item {item.id!r} links to unknown id {link.to!r}; "
                                  "link only to ids in the same probe set")


def load_probe_set(path) -> list[ProbeItem]:
    """Read a probe-set JSONL file (blank lines skipped); one-line :class:`RippleError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise RippleError(f"probe set {path} {absent(path)}; pass a JSONL file (format: probes/README.md)")
    items, lines = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = loads_json(line, f"{path} line {n}")
        except json.JSONDecodeError as exc:
            raise RippleError(f"{path}:{n}: invalid JSON ({exc.msg}, column {exc.colno}); "
                              "write one JSON object per line") from None
        items.append(_item_from_json(obj, f"{path}:{n}"))
        lines.append(n)
    if not items:
        raise RippleError(f"probe set {path} has no items; write one JSON object per line")
    check_probe_set(items, lambda i: f"{path}:{lines[i]}")
    return items


def save_probe_set(items: Sequence[ProbeItem], path) -> None:
    """Write ``items`` in the given order (rows of an activation cache follow it), atomically."""
    items = list(items)
    check_probe_set(items)
    text = "".join(json.dumps(item.to_json(), ensure_ascii=False) + "\n" for item in items)
    atomic_write_text(path, text)


# --- building sets from facts -------------------------------------------------------------------

def inverse_relations(pairs: Iterable[tuple[str, str]], symmetric: Iterable[str] = ()) -> dict[str, set[str]]:
    """``{r: relations whose fact (o, r2, s) is the inverse of (s, r, o)}``, both directions of each pair."""
    out: dict[str, set[str]] = {r: {r} for r in symmetric}
    for a, b in pairs:
        out.setdefault(a, set()).add(b)
        out.setdefault(b, set()).add(a)
    return out


def facts_probe_set(facts: Sequence[tuple[str, str, str]], templates: Mapping[str, str],
                    name: Callable[[str], str] = str, aliases: Callable[[str], Sequence[str]] = lambda key: (),
                    inverses: Mapping[str, set[str]] | None = None, max_same_object: int = 10) -> list[ProbeItem]:
    """One item per ``(subject_key, relation, object_key)`` fact, id ``"subject|relation|object"``, linked:

    - ``same_subject``: the subject's other facts;
    - ``object_is_subject``: the facts whose subject is this fact's object (two-hop chains);
    - ``same_object``: other facts with this relation and object, the first ``max_same_object``;
    - ``inverse``: the fact ``(object, r2, subject)`` for ``r2`` in ``inverses[relation]``.
    """
    facts = list(dict.fromkeys(facts))
    ids = [fact_id(s, r, o) for s, r, o in facts]
    by_subject: dict[str, list[int]] = {}
    by_rel_object: dict[tuple[str, str], list[int]] = {}
    index = {fact: i for i, fact in enumerate(facts)}
    for i, (s, r, o) in enumerate(facts):
        by_subject.setdefault(s, []).append(i)
        by_rel_object.setdefault((r, o), []).append(i)
    inverses = inverses or {}
    items = []
    for i, (s, r, o) in enumerate(facts):
        same_object = [j for j in by_rel_object[(r, o)] if j != i][:max_same_object]
        inverse = [index[(o, r2, s)] for r2 in sorted(inverses.get(r, ())) if (o, r2, s) in index]
        groups = {"same_subject": [j for j in by_subject[s] if j != i],
                  "object_is_subject": by_subject.get(o, []), "same_object": same_object, "inverse": inverse}
        links = tuple(ProbeLink(ids[j], kind) for kind, js in groups.items() for j in js)
        items.append(ProbeItem(ids[i], name(s), r, templates[r], name(o), tuple(aliases(s)), links))
    return items


def world_probe_set(world) -> list[ProbeItem]:
    """Every fact of a :class:`~ripple.world.World` as an item on its relation's first core template."""
    relations = world.relations
    facts = [(f.subject, f.relation, f.object) for f in world.facts]
    inverses = inverse_relations([(r.name, r.inverse) for r in relations.values() if r.inverse],
                                 [r.name for r in relations.values() if r.kind == "symmetric"])
    return facts_probe_set(facts, {r: rel.templates[0] for r, rel in relations.items()}, name=world.name,
                           aliases=lambda key: world.entities[key].aliases, inverses=inverses)


def probe_items(probes: str | None, world) -> list[ProbeItem]:
    """The probe set of a file (``probes``), else every fact of the model's world."""
    if probes is not None:
        return load_probe_set(probes)
    if world is None:
        raise RippleError("this model has no world.json to build probes from; pass --probes FILE "
                          "(a probe set JSONL)")
    return world_probe_set(world)
