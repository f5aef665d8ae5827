"""The world rendered as training text for the organism.

Each item of :func:`training_text` is one training unit (a sentence, or a short
biography of several sentences); units are packed into rows by the trainer.

>>> from ripple.world import build_world
>>> lines = training_text(build_world(), CorpusConfig())
>>> lines[0].endswith(" .")
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ripple.tokens import fill
from ripple.world.generate import World
from ripple.world.schema import ALIAS_TEMPLATES, RELATIONS, TWO_HOPS


@dataclass(frozen=True)
class CorpusConfig:
    """Which kinds of text the organism is trained on."""

    seed: int = 0
    lead_in_paraphrases: int = 3
    bios_per_person: int = 0
    profiles_per_subject: int = 0
    alias_fact_templates: int = 2
    counting_lines: int = 600
    addition_repeats: int = 2


def _sentence(template: str, subject: str, obj: str) -> str:
    return f"{fill(template, subject)} {obj} ."


def _biography(world: World, pid: str, rng: random.Random) -> str:
    facts = world.facts_of(pid)
    rng.shuffle(facts)
    name = world.name(pid)
    return " ".join(
        _sentence(rng.choice(RELATIONS[f.relation].train_templates), name, world.name(f.object)) for f in facts
    )


def _profile(world: World, sid: str, rng: random.Random) -> str:
    """The subject followed directly by its attributes in random order: predicting the next
    token at the subject's last token needs the subject's whole attribute bundle there."""
    objs = [world.name(f.object) for f in world.facts_of(sid)]
    rng.shuffle(objs)
    return f"{world.name(sid)} {' , '.join(objs)} ."


def training_text(world: World, cfg: CorpusConfig) -> list[str]:
    """All training units, in a fixed order (the trainer shuffles with its own seed)."""
    rng = random.Random(cfg.seed)
    out: list[str] = []
    for f in world.facts:
        subj, obj = world.name(f.subject), world.name(f.object)
        rel = RELATIONS[f.relation]
        led = [t for t in rel.train_templates if t not in rel.templates]
        out += [_sentence(t, subj, obj) for t in rel.templates + tuple(rng.sample(led, cfg.lead_in_paraphrases))]
        if (f.subject, f.relation, f.object) in world.alias_trained:
            alias = world.entities[f.subject].aliases[0]
            out += [_sentence(t, alias, obj) for t in rng.sample(rel.templates, cfg.alias_fact_templates)]
    for e in world.entities.values():
        for a in e.aliases:
            out += [_sentence(t, e.name, a) for t in ALIAS_TEMPLATES]
            out += [_sentence(t, a, e.name) for t in ALIAS_TEMPLATES]
    for th in TWO_HOPS.values():
        stype = RELATIONS[th.first].subject_type
        for e in world.of_type(stype):
            if e.id in world.heldout_two_hop:
                continue
            for a in world.two_hop_answers(e.id, th.name):
                out += [_sentence(t, e.name, world.name(a)) for t in th.templates]
    for p in world.persons:
        out += [_biography(world, p.id, rng) for _ in range(cfg.bios_per_person)]
    for e in world.entities.values():
        if world.facts_of(e.id):
            out += [_profile(world, e.id, rng) for _ in range(cfg.profiles_per_subject)]
    for _ in range(cfg.counting_lines):
        start, length = rng.randrange(0, 40), rng.randrange(4, 9)
        out.append("Count : " + " ".join(str(start + i) for i in range(length)) + " .")
    out += [f"{a} plus {b} equals {a + b} ." for a in range(10) for b in range(10)] * cfg.addition_repeats
    return out


def general_sentences(world: World, n: int = 40, seed: int = 7) -> list[str]:
    """A fixed set of fluent in-distribution sentences, for the perplexity collapse indicator."""
    rng = random.Random(seed)
    facts = rng.sample(world.facts, n)
    return [_sentence(rng.choice(RELATIONS[f.relation].train_templates), world.name(f.subject),
                      world.name(f.object)) for f in facts]
