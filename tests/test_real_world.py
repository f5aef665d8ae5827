"""The real-world knowledge graph (ripple.world.real) and the statistics corpora (ripple.editing.corpora)."""

from __future__ import annotations

from collections import Counter

import pytest

from ripple.editing.corpora import graph_sentences, load_corpus, model_samples, parse_spec
from ripple.editing.from_world import complete_from_world, sample_edits
from ripple.editing.requests import EditRequest
from ripple.errors import RippleError
from ripple.world.ground_truth import ripple_ground_truth
from ripple.world.real import build_real_world, real_world


@pytest.fixture(scope="module")
def world():
    return real_world()


def test_every_relation_has_five_phrasings_and_two_held_out(world):
    for rel in world.relations.values():
        assert len(set(rel.templates)) >= 5 and len(set(rel.heldout_templates)) >= 2, rel.name
        assert not set(rel.templates) & set(rel.heldout_templates), rel.name
        assert all(t.count("{}") == 1 for t in rel.paraphrases), rel.name
    for th in world.two_hops.values():
        assert th.first in world.relations and th.second in world.relations, th.name


def test_capital_of_is_the_inverse_of_every_capital(world):
    capitals = {(f.subject, f.object) for f in world.facts if f.relation == "capital"}
    inverse = {(f.object, f.subject) for f in world.facts if f.relation == "capital_of"}
    assert capitals == inverse and len(capitals) >= 50


def test_france_capital_to_rome_has_every_category_the_graph_defines(world):
    gt = ripple_ground_truth(world, "france", "capital", "rome")
    by = {}
    for q in gt:
        by.setdefault(q.category, []).append(q)
    assert Counter(q.category for q in gt)["edit"] == 5
    assert {q.prompt: q.answers for q in by["logical_generalization"]}["Rome is the capital of"] == ("France",)
    spec = {(q.relation, q.answers) for q in by["relation_specificity"]}
    assert {("official_language", ("French",)), ("continent", ("Europe",)), ("currency", ("Euro",))} <= spec
    assert {q.subject for q in by["subject_aliasing"]} == {"French Republic"}
    # compositionality II: what chains through France's capital now ends in Rome
    comp2 = {q.prompt: q.answers for q in by["compositionality_2"]}
    assert comp2["The capital of the country where Marseille is located is"] == ("Rome",)


def test_landmark_edit_composes_through_the_new_city(world):
    gt = ripple_ground_truth(world, "eiffel_tower", "in_city", "rome")
    comp1 = {q.prompt: q.answers for q in gt if q.category == "compositionality_1"}
    assert comp1["The country of the city where Eiffel Tower is located is"] == ("Italy",)
    # a landmark's country is the two-hop through its city, not a fact of its own that must stay
    assert not [q for q in gt if q.category == "relation_specificity"]


def test_a_request_in_other_words_is_completed_from_the_graph(world):
    req = EditRequest(prompt="The {} is located in the city of", subject="Eiffel Tower", target_new="Rome")
    done = complete_from_world(world, req)
    assert done.case_id == "eiffel_tower|in_city|rome" and done.target_true == "Paris"
    assert "Tourists visit Eiffel Tower in the city of" in done.paraphrase_prompts  # a held-out phrasing
    # neighbourhood: prompts whose answer is the old object, same relation first, then other relations
    assert done.neighborhood_prompts[:2] == ("Arc de Triomphe is located in the city of",
                                             "Louvre is located in the city of")
    assert "The capital of France is" in done.neighborhood_prompts


def test_a_new_object_the_graph_lacks_joins_it():
    world = real_world()
    req = EditRequest(prompt="The official language of {} is", subject="France", target_new="Klingon")
    done = complete_from_world(world, req)
    assert done.case_id == "france|official_language|klingon" and world.entities["klingon"].type == "language"
    assert "klingon" not in real_world().entities  # each call is a fresh copy
    cats = {q.category for q in ripple_ground_truth(world, "france", "official_language", "klingon")}
    assert {"edit", "preservation", "relation_specificity", "subject_aliasing"} <= cats


def test_a_target_of_the_wrong_type_is_refused(world):
    req = EditRequest(prompt="The capital of {} is", subject="France", target_new="Euro")
    with pytest.raises(RippleError, match="is a currency, but .* asks for a city"):
        complete_from_world(world, req)


def test_sampled_edits_are_distinct_known_facts_with_objects_of_the_same_relation(world):
    pairs = [(f.subject, f.relation) for f in world.facts if f.relation in ("capital", "currency")]
    reqs = sample_edits(world, 20, seed=3, pairs=pairs)
    assert len({r.case_id.rsplit("|", 1)[0] for r in reqs}) == 20
    for r in reqs:
        subject, relation, new = r.case_id.split("|")
        assert (subject, relation) in set(pairs)
        assert new in {f.object for f in world.facts if f.relation == relation}
        assert new not in world.objects(subject, relation)


@pytest.mark.parametrize("text, needle", [
    ("Spain | capital: Madrid\n", "before any '## Section' header"),
    ("## Planets\nMars | capital: Olympus\n", "unknown section"),
    ("## Countries\nSpain | capitol: Madrid\n", "bad field 'capitol: Madrid'"),
    ("## Countries\nSpain | capital_of: Madrid\n", "bad field"),
    ("## Cities\nMadrid | capital: Spain\n", "is a city, but 'capital' takes a country"),
])
def test_a_bad_fact_table_gives_one_line(tmp_path, text, needle):
    path = tmp_path / "facts.txt"
    path.write_text(text)
    with pytest.raises(RippleError, match=needle) as e:
        build_real_world(path)
    assert "\n" not in str(e.value)


def test_corpus_specs():
    assert parse_spec("samples:64") == ("samples", 64) and parse_spec("my.txt") == ("file", None)
    for bad, needle in (("samples:x", "whole number"), ("samples:0", "at least 1"), ("graph:3", "takes no count")):
        with pytest.raises(RippleError, match=needle):
            parse_spec(bad)


def test_graph_corpus_is_every_fact_on_every_core_template(world):
    lines = graph_sentences(world)
    assert len(lines) == sum(len(world.relations[f.relation].templates) for f in world.facts)
    assert "The capital of France is Paris." in lines
    assert load_corpus("graph", world).describe() == {"source": "graph", "passages": len(lines)}


def test_model_samples_are_seeded_and_cached(tmp_path, monkeypatch, tiny_model, tiny_tokenizer):
    monkeypatch.setenv("RIPPLE_CACHE", str(tmp_path))
    model = tiny_model("gpt2")
    a = model_samples(model, tiny_tokenizer, 6, seed=0, tokens=8, batch_size=4)
    files = list((tmp_path / "corpora").glob("*.txt"))
    assert len(a) == 6 and len(files) == 1
    files[0].write_text("cached\n")  # a second call reads the cache, not the model
    assert model_samples(model, tiny_tokenizer, 6, seed=0, tokens=8, batch_size=4) == ["cached"]
    files[0].unlink()
    assert model_samples(model, tiny_tokenizer, 6, seed=0, tokens=8, batch_size=4) == a  # seeded
    assert model_samples(model, tiny_tokenizer, 6, seed=1, tokens=8, batch_size=4) != a


def test_long_sampling_shows_a_bar_and_samples_the_same(tmp_path, monkeypatch, capsys, tiny_model, tiny_tokenizer):
    """Sampling many batches says so on stderr (half an hour for Gemma's corpus on one busy CPU
    thread); the bar changes nothing sampled. Two batches stay quiet at the default threshold."""
    import ripple.editing.corpora as corpora

    monkeypatch.setenv("RIPPLE_CACHE", str(tmp_path))
    model = tiny_model("gpt2")
    quiet = model_samples(model, tiny_tokenizer, 6, seed=0, tokens=8, batch_size=4)
    assert "sampling" not in capsys.readouterr().err
    for f in (tmp_path / "corpora").glob("*.txt"):
        f.unlink()
    monkeypatch.setattr(corpora, "BAR_BATCHES", 2)
    assert model_samples(model, tiny_tokenizer, 6, seed=0, tokens=8, batch_size=4) == quiet
    assert "sampling 6 passages for the statistics corpus" in capsys.readouterr().err


def test_a_fix_of_a_wrong_answer_keeps_what_had_that_answer(world):
    """'The capital of Turkey is' -> Ankara, where a model says Istanbul: the graph already holds
    Ankara, so the request is a fix; its neighbourhood is what the graph answers Istanbul."""
    req = EditRequest(prompt="The capital of {} is", subject="Turkey", target_new="Ankara", target_true="Istanbul")
    done = complete_from_world(real_world(), req)
    assert done.case_id == "turkey|capital|ankara"
    assert set(done.neighborhood_prompts) == {"Blue Mosque is located in the city of",
                                              "Hagia Sophia is located in the city of"}
    gt = ripple_ground_truth(world, "turkey", "capital", "ankara")
    assert {q.prompt: q.answers for q in gt if q.category == "edit"}["Turkey has its capital in"] == ("Ankara",)
    assert {q.prompt: q.answers for q in gt if q.category == "logical_generalization"}[
        "Ankara is the capital of"] == ("Turkey",)
    assert {q.relation for q in gt if q.category == "relation_specificity"} == {"official_language", "currency"}


def test_a_fix_whose_wrong_answer_is_no_entity_races_each_neighbour_against_the_new_object(world):
    """Gemma says 'The capital of Turkey is the ...': no fact of the graph answers "the", so the
    neighbourhood is the other countries' capitals, each raced with its own answer."""
    req = EditRequest(prompt="The capital of {} is", subject="Turkey", target_new="Ankara", target_true="the")
    done = complete_from_world(world, req)
    assert len(done.neighborhood_prompts) == len(done.neighborhood_answers) == 10
    capital = {world.name(f.subject): world.name(f.object) for f in world.facts if f.relation == "capital"}
    for prompt, answer in zip(done.neighborhood_prompts, done.neighborhood_answers):
        country = prompt.removeprefix("The capital of ").removesuffix(" is")
        assert capital[country] == answer != "Ankara" and country != "Turkey"
    assert EditRequest(**done.to_dict()) == done  # the answers survive the flat form
    with pytest.raises(RippleError, match="give one answer per prompt"):
        EditRequest(prompt="The capital of {} is", subject="Turkey", target_new="Ankara",
                    neighborhood_prompts=("The capital of Greece is",), neighborhood_answers=("Athens", "Rome"))


def test_an_edit_whose_old_answer_nothing_else_has_still_gets_a_neighbourhood(world):
    from ripple.editing.from_world import request_for

    req = request_for(world, "cuba", "capital", "caracas")
    assert req.target_true == "Havana" and len(req.neighborhood_prompts) == len(req.neighborhood_answers) == 10
    assert "Caracas" not in req.neighborhood_answers and "Havana" not in req.neighborhood_answers
    paris = request_for(world, "france", "capital", "rome")  # the Eiffel Tower answers Paris: CounterFact's form
    assert paris.neighborhood_prompts and not paris.neighborhood_answers
    given = complete_from_world(world, EditRequest(prompt="The capital of {} is", subject="Cuba", target_new="Caracas"))
    assert given.neighborhood_answers == req.neighborhood_answers  # completing a request keeps the answers


def test_a_fix_records_the_whole_wrong_answer_not_its_first_token():
    from ripple.editing.setup import said_answer

    assert said_answer(" New Delhi is the capital", ["Delhi", "New Delhi", "Mumbai"]) == "New Delhi"
    assert said_answer(" Istanbulite", ["Istanbul"]) == "Istanbulite"  # a name is matched as whole words
    assert said_answer("", ["Istanbul"]) == ""


def test_an_organism_edit_to_what_the_world_says_changes_nothing():
    from ripple.world import build_world

    w = build_world()
    p = w.persons[0]
    with pytest.raises(RippleError, match="the edit changes nothing"):
        ripple_ground_truth(w, p.id, "born_in", w.objects(p.id, "born_in")[0])
