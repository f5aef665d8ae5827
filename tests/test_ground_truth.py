"""ripple_ground_truth on hand-picked edits; every expected answer is found by scanning ``world.facts``."""

import pytest

from ripple.errors import RippleError
from ripple.world.ground_truth import ripple_ground_truth
from ripple.world.schema import RELATIONS, TWO_HOPS

from helpers import scan, scan_one


def by_category(gt, category, relation=None):
    return [q for q in gt if q.category == category and (relation is None or q.relation == relation)]


def prompts(templates, subject):
    return {t.replace("{}", subject) for t in templates}


@pytest.fixture(scope="module")
def citizen_edit(world):
    """Person 0 moves to a country on another continent whose capital and languages all differ."""
    p = world.persons[0]
    old = scan_one(world, p.id, "citizen_of")
    new = next(c.id for c in world.of_type("country")
               if scan_one(world, c.id, "continent") != scan_one(world, old, "continent")
               and not set(scan(world, c.id, "language")) & set(scan(world, old, "language")))
    return p, old, new, ripple_ground_truth(world, p.id, "citizen_of", new)


def test_edit_queries_ask_every_template(world, citizen_edit):
    p, old, new, gt = citizen_edit
    qs = by_category(gt, "edit")
    assert {q.prompt for q in qs} == prompts(RELATIONS["citizen_of"].templates, p.name)
    assert all(q.answers == (world.name(new),) and q.old_answers == (world.name(old),) for q in qs)
    assert {q.category for q in gt} == {"edit", "compositionality_1", "subject_aliasing",
                                        "relation_specificity", "neighbourhood"}


@pytest.mark.parametrize("two_hop, second", [("citizen_capital", "capital"), ("citizen_continent", "continent"),
                                             ("citizen_language", "language")])
def test_compositionality_1_goes_through_the_new_country(world, citizen_edit, two_hop, second):
    p, old, new, gt = citizen_edit
    qs = by_category(gt, "compositionality_1", two_hop)
    assert {q.prompt for q in qs} == prompts(TWO_HOPS[two_hop].templates, p.name)
    for q in qs:
        assert sorted(q.answers) == sorted(world.name(o) for o in scan(world, new, second))
        assert sorted(q.old_answers) == sorted(world.name(o) for o in scan(world, old, second))
        assert q.must_change


def test_subject_aliasing_uses_the_alias(world, citizen_edit):
    p, _, new, gt = citizen_edit
    (alias,) = p.aliases
    qs = by_category(gt, "subject_aliasing")
    assert {q.prompt for q in qs} == prompts(RELATIONS["citizen_of"].templates, alias)
    assert all(alias in q.prompt and p.name not in q.prompt and q.answers == (world.name(new),) for q in qs)


def test_relation_specificity_keeps_every_other_relation(world, citizen_edit):
    p, _, _, gt = citizen_edit
    qs = by_category(gt, "relation_specificity")
    others = {f.relation for f in world.facts if f.subject == p.id} - {"citizen_of"}
    assert others == {"born_in", "works_for", "studied_at", "married_to"}
    assert {q.relation for q in qs} == others
    for r in others:
        rq = [q for q in qs if q.relation == r]
        assert {q.prompt for q in rq} == prompts(RELATIONS[r].templates, p.name)
        expected = sorted(world.name(o) for o in scan(world, p.id, r))
        assert all(sorted(q.answers) == sorted(q.old_answers) == expected and not q.must_change for q in rq)


def test_neighbourhood_shares_the_old_country(world, citizen_edit):
    p, old, _, gt = citizen_edit
    qs = by_category(gt, "neighbourhood")
    fellow_citizens = set(scan(world, relation="citizen_of", obj=old)) - {p.id}
    assert len(qs) == min(10, len(fellow_citizens)) > 0
    for q in qs:
        sid = world.id_of(q.subject)
        assert sid in fellow_citizens and scan_one(world, sid, "citizen_of") == old
        assert q.answers == q.old_answers == (world.name(old),)


@pytest.fixture(scope="module")
def capital_edit(world):
    """The country with the most citizens gets a capital from another country; returns (country, X, gt)."""
    countries = world.of_type("country")
    k = max(countries, key=lambda c: len(scan(world, relation="citizen_of", obj=c.id)))
    x = next(c for c in world.of_type("city") if scan_one(world, c.id, "located_in") != k.id)
    return k, x, ripple_ground_truth(world, k.id, "capital", x.id, max_per_category=10_000)


def test_capital_edit_logical_generalization_is_located_in(world, capital_edit):
    k, x, gt = capital_edit
    qs = by_category(gt, "logical_generalization")
    assert {q.prompt for q in qs} == prompts(RELATIONS["located_in"].templates, x.name)
    for q in qs:
        assert (q.relation, q.subject, q.answers) == ("located_in", x.name, (k.name,))
        assert q.old_answers == (world.name(scan_one(world, x.id, "located_in")),)


def test_capital_edit_compositionality_2_lists_the_citizens(world, capital_edit):
    k, x, gt = capital_edit
    qs = by_category(gt, "compositionality_2")
    citizens = scan(world, relation="citizen_of", obj=k.id)
    assert len(citizens) > 3
    assert {q.subject for q in qs} == {world.name(c) for c in citizens}
    assert len(qs) == len(citizens) * len(TWO_HOPS["citizen_capital"].templates)
    old_capital = world.name(scan_one(world, k.id, "capital"))
    for q in qs:
        assert (q.relation, q.answers, q.old_answers) == ("citizen_capital", (x.name,), (old_capital,))


def test_compositionality_2_is_capped(world, capital_edit):
    k, x, _ = capital_edit
    capped = by_category(ripple_ground_truth(world, k.id, "capital", x.id, max_per_category=3), "compositionality_2")
    citizens = {world.name(c) for c in scan(world, relation="citizen_of", obj=k.id)}
    assert len({q.subject for q in capped}) == 3
    assert {q.subject for q in capped} <= citizens


@pytest.mark.parametrize("replaced", [0, 1])
def test_language_edit_preserves_the_other_language(world, replaced):
    k = world.of_type("country")[1]
    langs = scan(world, k.id, "language")
    new = next(lang for lang in world.of_type("language") if lang.id not in langs)
    gt = ripple_ground_truth(world, k.id, "language", new.id, old_object=langs[replaced])
    kept = world.name(langs[1 - replaced])
    qs = by_category(gt, "preservation")
    assert {q.prompt for q in qs} == prompts(RELATIONS["language"].templates, k.name)
    for q in qs:
        assert sorted(q.answers) == sorted([kept, new.name])
        assert sorted(q.old_answers) == sorted(world.name(lang) for lang in langs)
        assert not q.must_change


def test_married_to_edit_new_spouse_points_back(world):
    p = world.persons[3]
    spouse = scan_one(world, p.id, "married_to")
    q_ent = next(e for e in world.persons if e.id not in (p.id, spouse))
    gt = ripple_ground_truth(world, p.id, "married_to", q_ent.id)
    qs = by_category(gt, "logical_generalization")
    assert {q.prompt for q in qs} == prompts(RELATIONS["married_to"].templates, q_ent.name)
    old = world.name(scan_one(world, q_ent.id, "married_to"))
    assert all((q.subject, q.answers, q.old_answers) == (q_ent.name, (p.name,), (old,)) for q in qs)


def bad_edits(world):
    p = world.persons[0].id
    return {
        "unknown subject": ("person:99999", "citizen_of", "country:1"),
        "unknown relation": (p, "likes", "country:1"),
        "wrong object type": (p, "citizen_of", "city:0"),
        "unknown object": (p, "citizen_of", "country:99999"),
        "wrong subject type": ("country:0", "citizen_of", "country:1"),
        "no change": (p, "citizen_of", scan_one(world, p, "citizen_of")),
    }


@pytest.mark.parametrize("case", ["unknown subject", "unknown relation", "wrong object type", "unknown object",
                                  "wrong subject type", "no change"])
def test_bad_edits_raise_one_line_ripple_error(world, case):
    subject, relation, new = bad_edits(world)[case]
    with pytest.raises(RippleError) as err:
        ripple_ground_truth(world, subject, relation, new)
    assert str(err.value) and "\n" not in str(err.value)
