"""What SIR reads and what its repair is judged on are kept apart (issue 43, item 2): at least 5
held-out sentence shapes per relation of the real-world graph, questions among them, none read by
SIR; SIR constrains each damaged fact in the phrasings it may read."""

import pytest

from ripple.mitigation.phrasings import QUESTION, heldout_shapes, sir_phrasings
from ripple.mitigation.sir import SirHParams, kl_prompts_for, phrased_items
from ripple.probes.sets import ProbeItem


@pytest.fixture(scope="module")
def real():
    from ripple.world.real import build_real_world

    return build_real_world()


def test_every_real_relation_has_five_judged_shapes_with_questions_none_read_by_sir(real):
    for name, rel in real.relations.items():
        judged, read = heldout_shapes(real, name), sir_phrasings(real, name)
        assert len(judged) >= 5, name
        assert any(t.startswith(QUESTION.split("{")[0]) for t in judged), name
        assert not set(judged) & set(read), name
        assert set(rel.train_templates) <= set(read), name  # the world's own phrasings come first
        assert read[:len(rel.train_templates)] == tuple(rel.train_templates)
        assert len(read) > len(rel.train_templates), name  # and the library adds its own
        assert all(t.count("{}") == 1 for t in (*judged, *read))


def test_the_kl_prompts_and_the_constrained_keys_use_only_what_sir_reads(real):
    n = SirHParams().paraphrases
    fact = next(f for f in real.facts if f.relation == "official_language")
    item = ProbeItem("x|official_language|y", real.name(fact.subject), "official_language",
                     "The official language of {} is", real.name(fact.object))
    kl = kl_prompts_for([item], real, n)
    assert kl[0] == item.prompt and set(kl[1:]) <= set(sir_phrasings(real, "official_language"))
    assert not set(kl) & set(heldout_shapes(real, "official_language"))
    grown = phrased_items([item], real, n)
    assert grown[0] is item and len({g.id for g in grown}) == len(grown)
    assert {g.prompt for g in grown[1:]} == set(sir_phrasings(real, "official_language", n)) - {item.prompt}
    assert all((g.subject, g.answer, g.relation) == (item.subject, item.answer, item.relation) for g in grown)
    assert phrased_items([item], real, 0) == [item]  # paraphrases=0: the damaged prompts alone


def test_the_organism_reads_only_its_own_world(world):
    name = next(iter(world.relations))
    assert sir_phrasings(world, name) == tuple(t for t in world.relations[name].train_templates if t.count("{}") == 1)
    assert set(heldout_shapes(world, name)) == {t for t in world.relations[name].heldout_templates if t.count("{}") == 1}
