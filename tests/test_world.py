"""The synthetic world, its corpus and its queries, checked against hand walks of ``world.facts``."""

import json
from collections import Counter

import pytest

from ripple.world import World, WorldConfig, build_world
from ripple.world.corpus import CorpusConfig, training_text
from ripple.world.queries import counting_queries, two_hop_queries
from ripple.world.schema import RELATIONS, TWO_HOPS

from helpers import scan, scan_one

SMALL = dict(n_countries=6, n_companies=8, n_persons=40)


@pytest.fixture(scope="module")
def corpus(world):
    """(lines as a set, all lines joined by newlines: a substring of it is a substring of one line)."""
    lines = training_text(world, CorpusConfig())
    return set(lines), "\n".join(lines)


def two_hop_subjects(world, th):
    return world.of_type(RELATIONS[th.first].subject_type)


def hand_two_hop(world, subject, th):
    """Walk the facts: subject -first-> bridge -second-> answer (ids, sorted, distinct)."""
    return sorted({a for bridge in scan(world, subject, th.first) for a in scan(world, bridge, th.second)})


def sentence(template, subject, obj):
    return template.replace("{}", subject) + f" {obj} ."


def test_same_config_same_world_other_seed_other_world():
    a, b = build_world(WorldConfig(seed=3)).to_dict(), build_world(WorldConfig(seed=3)).to_dict()
    assert a == b
    c = build_world(WorldConfig(seed=4)).to_dict()
    # the config differs trivially; the generated content must differ too
    assert c["entities"] != a["entities"]
    assert c["facts"] != a["facts"]
    assert c["heldout_two_hop_subjects"] != a["heldout_two_hop_subjects"]


def test_to_dict_from_dict_round_trip_through_json(world):
    d = world.to_dict()
    back = World.from_dict(json.loads(json.dumps(d)))
    assert back.config == world.config
    assert back.entities == world.entities
    assert back.facts == world.facts
    assert back.heldout_two_hop == world.heldout_two_hop
    assert back.alias_trained == world.alias_trained
    assert back.to_dict() == d


@pytest.mark.parametrize("name_tokens", [2, 3])
def test_persons_have_multi_token_names_and_an_alias(name_tokens):
    w = build_world(WorldConfig(seed=1, name_tokens=name_tokens, **SMALL))
    assert len(w.persons) == SMALL["n_persons"]
    for p in w.persons:
        assert len(p.name.split()) == name_tokens
        assert len(p.aliases) == 1 and p.aliases[0] and p.aliases[0] != p.name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_name_and_alias_names_exactly_one_entity(seed):
    w = build_world(WorldConfig(seed=seed))
    names = [n for e in w.entities.values() for n in (e.name, *e.aliases)]
    assert len(names) == len(set(names))
    for e in w.entities.values():
        for n in (e.name, *e.aliases):
            assert w.id_of(n) == e.id


def test_married_to_is_symmetric_and_irreflexive(world):
    pairs = [(f.subject, f.object) for f in world.facts if f.relation == "married_to"]
    assert pairs
    assert set(pairs) == {(b, a) for a, b in pairs}
    assert all(a != b for a, b in pairs)
    assert max(Counter(a for a, _ in pairs).values()) == 1  # one spouse each


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_countries_have_one_capital_inside_and_two_languages(seed):
    world = build_world(WorldConfig(seed=seed))
    countries = world.of_type("country")
    assert len(countries) == world.config.n_countries
    capitals = []
    for c in countries:
        capital = scan_one(world, c.id, "capital")
        assert world.entities[capital].type == "city"
        assert scan(world, capital, "located_in") == [c.id]
        langs = scan(world, c.id, "language")
        assert len(langs) == 2 == len(set(langs))
        assert all(world.entities[lang].type == "language" for lang in langs)
        capitals.append(capital)
    assert len(set(capitals)) == len(capitals)


@pytest.mark.parametrize("frac, extra", [(0.2, {}), (0.5, SMALL)])
def test_heldout_two_hop_subjects_fraction(frac, extra):
    w = build_world(WorldConfig(seed=0, heldout_two_hop_frac=frac, **extra))
    pool = {e.id for e in w.entities.values() if e.type in ("person", "company")}
    assert w.heldout_two_hop <= pool
    assert len(w.heldout_two_hop) == round(frac * len(pool))


def test_training_text_has_two_hops_only_for_trained_subjects(world, corpus):
    lines, text = corpus
    heldout_checked = trained_checked = 0
    for th in TWO_HOPS.values():
        for e in two_hop_subjects(world, th):
            answers = hand_two_hop(world, e.id, th)
            assert answers
            for t in th.templates:
                if e.id in world.heldout_two_hop:
                    assert t.replace("{}", e.name) not in text
                    heldout_checked += 1
                else:
                    for a in answers:
                        assert sentence(t, e.name, world.name(a)) in lines
                        trained_checked += 1
    assert heldout_checked > 0 and trained_checked > 0


def test_heldout_templates_never_in_training_text(world, corpus):
    lines, text = corpus
    for rel in RELATIONS.values():
        subjects = list(dict.fromkeys(f.subject for f in world.facts if f.relation == rel.name))[:4]
        assert subjects
        for s in subjects:
            ent = world.entities[s]
            for t in rel.heldout_templates:
                for surface in (ent.name, *ent.aliases):
                    assert t.replace("{}", surface) not in text
            obj = world.name(scan(world, s, rel.name)[0])
            for t in rel.templates:  # the same subjects do appear on every core wording
                assert sentence(t, ent.name, obj) in lines
        # and, where the relation has enough facts to sample them all (3 lead-ins per fact),
        # every training paraphrase (lead-in + core) appears for some subject
        if sum(f.relation == rel.name for f in world.facts) < 100:
            continue
        for t in rel.train_templates:
            prefix = t.split("{}")[0]
            assert any(line.startswith(prefix) and t.split("{}")[1] in line for line in lines), t


def test_to_networkx_one_node_per_entity_one_keyed_edge_per_fact(world):
    g = world.to_networkx()
    assert set(g.nodes) == set(world.entities)
    assert g.number_of_edges() == len(world.facts)
    for f in world.facts:
        assert g.has_edge(f.subject, f.object, key=f.relation)
        assert g.edges[f.subject, f.object, f.relation]["relation"] == f.relation
    for e in world.entities.values():
        assert g.nodes[e.id]["type"] == e.type and g.nodes[e.id]["name"] == e.name


def test_two_hop_answers_agree_with_a_hand_walk(world):
    person, company = world.persons[5], world.of_type("company")[2]
    # spelled out for one person: citizen_of -> country -> capital
    country = scan_one(world, person.id, "citizen_of")
    assert world.two_hop_answers(person.id, "citizen_capital") == [scan_one(world, country, "capital")]
    assert world.two_hop_answers(person.id, "citizen_language") == sorted(scan(world, country, "language"))
    city = scan_one(world, company.id, "headquarters")
    assert world.two_hop_answers(company.id, "hq_country") == [scan_one(world, city, "located_in")]
    for th in TWO_HOPS.values():
        for e in two_hop_subjects(world, th)[:6]:
            assert world.two_hop_answers(e.id, th.name) == hand_two_hop(world, e.id, th)


def test_two_hop_queries_cover_heldout_subjects_with_hand_answers(world):
    qs = two_hop_queries(world, heldout=True)
    assert {q.meta["subject_id"] for q in qs} == set(world.heldout_two_hop)
    for q in qs:
        th = TWO_HOPS[q.relation]
        assert q.prompt == q.template.replace("{}", q.subject)
        assert sorted(q.answers) == sorted(world.name(a) for a in hand_two_hop(world, q.meta["subject_id"], th))


def test_counting_answers_are_the_next_number():
    qs = counting_queries(seed=5, n=50)
    assert len(qs) == 50
    for q in qs:
        head, seq = q.prompt.split(" : ")
        nums = [int(x) for x in seq.split()]
        assert head == "Count" and len(nums) >= 3
        assert nums == list(range(nums[0], nums[0] + len(nums)))
        assert q.answers == (str(nums[-1] + 1),)
    assert [q.prompt for q in counting_queries(seed=5, n=50)] == [q.prompt for q in qs]


def test_no_prompt_is_a_prefix_of_a_prompt_of_another_relation(world):
    """Otherwise the shorter prompt's answer is ambiguous in the training text (a bare
    "{} was born in" followed by both a city and "a city in the country of ...")."""
    from ripple.world.schema import TWO_HOPS

    prompts = set()
    for rel in RELATIONS.values():
        for e in world.of_type(rel.subject_type)[:5]:
            prompts |= {(t.replace("{}", e.name), rel.name) for t in rel.paraphrases}
    for th in TWO_HOPS.values():
        for e in world.of_type(RELATIONS[th.first].subject_type)[:5]:
            prompts |= {(t.replace("{}", e.name), th.name) for t in th.templates}
    clashes = [(a, b) for a, ra in prompts for b, rb in prompts if ra != rb and b.startswith(a + " ")]
    assert not clashes, clashes[:3]


def test_sample_edits_never_repeats_a_fact_and_caps_n(world):
    from ripple.editing.from_world import EDITABLE, sample_edits
    from ripple.errors import RippleError

    n_facts = len({(f.subject, f.relation) for f in world.facts if f.relation in EDITABLE})
    reqs = sample_edits(world, n_facts, seed=3)
    keys = [tuple(r.case_id.split("|")[:2]) for r in reqs]
    assert len(keys) == len(set(keys)) == n_facts
    first = sample_edits(world, len(world.persons), seed=3)
    assert len({r.subject for r in first}) == len(world.persons)  # distinct subjects while they last
    for r in first[:20]:
        subject, relation, new = r.case_id.split("|")
        assert new not in world.objects(subject, relation) and r.target_true == world.name(world.objects(subject, relation)[0])
    with pytest.raises(RippleError):
        sample_edits(world, n_facts + 1)


def test_complete_from_world_fills_paraphrases_and_neighbours(world):
    from ripple.editing.from_world import complete_from_world, request_for
    from ripple.editing.requests import EditRequest

    p = world.persons[0]
    old = world.objects(p.id, "citizen_of")[0]
    new = next(c for c in world.of_type("country") if c.id != old)
    bare = EditRequest(prompt="{} is a citizen of", subject=p.name, target_new=new.name)
    full = complete_from_world(world, bare)
    expected = request_for(world, p.id, "citizen_of", new.id)
    assert full.target_true == world.name(old)
    assert full.paraphrase_prompts == expected.paraphrase_prompts and full.paraphrase_prompts
    assert all(world.objects(world.id_of(q.replace(" is a citizen of", "")), "citizen_of") == [old]
               for q in full.neighborhood_prompts)
    stranger = EditRequest(prompt="{} lives in", subject="Nobody Known", target_new=new.name)
    assert complete_from_world(world, stranger) == stranger
