"""The open world (ripple.editing.open_world, ripple.world.tables): the relation library's shape, prompt
matching, subject matching through case and articles, and the completion of an out-of-graph edit
from scripted model answers (which neighbours, which specificity references, which sources)."""

from __future__ import annotations

import json

import pytest

import ripple.editing.open_world as ow
from ripple.editing.from_world import in_graph, relation_of_prompt
from ripple.editing.requests import EditRequest
from ripple.world.real import REAL_RELATIONS, real_world


def test_the_library_has_60_relations_with_five_phrasings_and_two_held_out_each():
    data = json.loads(ow.LIBRARY_FILE.read_text(encoding="utf-8"))["relations"]
    names = [r["name"] for r in data]
    assert len(names) >= 60 and len(set(names)) == len(names)
    assert set(REAL_RELATIONS) <= set(names)  # the graph's relations are in it
    phrasings = [p for r in data for p in r["templates"] + r["heldout"]]
    assert len(set(p.lower() for p in phrasings)) == len(phrasings)
    for r in data:
        assert len(r["templates"]) == 5 and len(r["heldout"]) == 2, r["name"]
        assert all(p.count("{}") == 1 and p == p.strip() for p in r["templates"] + r["heldout"]), r["name"]
        assert r["keywords"] and r["subject_type"] and r["object_type"]


def test_every_phrasing_matches_its_relation_exactly():
    lib = ow.relation_library()
    for r in lib.values():
        for p in r.phrasings:
            m = ow.match_relation(p)
            assert m.how == "exact" and p in lib[m.relation].phrasings, (r.name, p, m)


def test_scored_matches_and_no_match():
    assert ow.match_relation("{} passed away in the town of").relation == "died_in"
    m = ow.match_relation("{} smells faintly of")
    assert (m.relation, m.how) == (None, "none") and m.score < ow.MATCH_MIN
    # case, spacing and a final full stop do not matter to an exact match
    assert ow.match_relation("  {} DIED IN.").how == "exact"


def test_subjects_are_matched_through_case_and_articles_and_relations_through_the_library():
    world = real_world()
    tower = world.id_of("Eiffel Tower")
    assert world.id_of("the Eiffel Tower") == world.id_of("THE EIFFEL TOWER") == tower
    with pytest.raises(KeyError):
        world.id_of("the Eiffel Towers")
    # a phrasing of the graph's relation that only the library holds
    assert relation_of_prompt(world, "{}'s capital city is", "country").name == "capital"
    assert in_graph(world, EditRequest("{}'s capital city is", "france", "Rome"))
    assert not in_graph(world, EditRequest("{} plays the sport of", "Lionel Messi", "basketball"))


def test_tables_are_joined_to_the_graph():
    from ripple.world.tables import subjects_of_type, type_of_name

    countries = subjects_of_type("country")
    assert countries[0] == real_world().name(real_world().of_type("country")[0].id)  # the graph's names first
    assert len(countries) > 200 and "Andorra" in countries and len(set(countries)) == len(countries)
    assert type_of_name("Tokyo") == "city" and type_of_name("Portuguese") == "language"
    assert type_of_name("Lionel Messi") == "person"  # the graph holds him (not his sport)
    assert type_of_name("Zorblax Quinn") is None


@pytest.fixture
def scripted(monkeypatch):
    """complete_open with the model's answers scripted: prompt -> (answer, first-token probability)."""
    said: dict[str, tuple[str, float]] = {}

    def beliefs(model, tok, prompts, names, cache=True):
        return [said.get(p, ("", 0.0)) for p in prompts]

    monkeypatch.setattr(ow, "beliefs", beliefs)
    return said


def test_an_out_of_graph_edit_gets_every_probe_with_its_source(scripted):
    req = EditRequest("{} plays the sport of", "Lionel Messi", "basketball")
    scripted["Lionel Messi plays the sport of"] = ("football", 0.6)
    neighbours = ["Albert Einstein", "Marie Curie", "Steve Jobs", "Bill Gates"]
    for n in neighbours:
        scripted[f"{n} plays the sport of"] = ("football", 0.2)
    scripted["The native language of Lionel Messi is"] = ("Spanish", 0.5)
    scripted["Lionel Messi died in"] = ("Rosario", 0.1)  # not confident: not a reference
    got = ow.complete_open(None, None, req)
    sources = dict(got.sources)
    assert got.target_true == "football" and sources["target_true"].startswith("model belief")
    lib = ow.relation_library()
    assert set(got.paraphrase_prompts) == {p.replace("{}", "Lionel Messi") for p in lib["sport"].phrasings[1:]}
    assert sources["paraphrase"].startswith("relation library: sport (exact match")
    assert set(got.neighborhood_prompts) == {f"{n} plays the sport of" for n in neighbours}
    assert got.neighborhood_answers == () and "4 of" in sources["neighborhood"]
    native = lib["native_language"].templates[0]
    assert (got.specificity_prompts, got.specificity_answers) == ((native,), ("Spanish",))
    assert "first-token p >= 0.3" in sources["specificity"]


def test_few_neighbours_are_completed_by_confident_own_answers_and_unmatched_prompts_get_generic_rewrites(scripted):
    world = real_world()
    person, country, city = (world.of_type(t)[0].name for t in ("person", "country", "city"))
    req = EditRequest("{} smells faintly of", "Zorblax Quinn", "roses", target_true="grass")  # a subject of no type
    scripted[f"{person} smells faintly of"] = ("grass", 0.1)
    scripted[f"{country} smells faintly of"] = ("cheese", 0.9)
    scripted[f"{city} smells faintly of"] = ("bread", 0.05)  # not confident: left out
    got = ow.complete_open(None, None, req)
    sources = dict(got.sources)
    assert sources["paraphrase"].startswith("generic rewrites (no relation of the library matched")
    assert got.paraphrase_prompts[0] == "It is well known that Zorblax Quinn smells faintly of"
    assert dict(zip(got.neighborhood_prompts, got.neighborhood_answers)) == {
        f"{person} smells faintly of": "grass", f"{country} smells faintly of": "cheese"}
    assert "1 graph subjects answered 'grass' and 1 answered confidently" in sources["neighborhood"]
    assert "target_true" not in sources  # given by the user: kept, no source claimed
    assert got.specificity_prompts == ()  # the model answered nothing confidently


def test_fields_the_request_has_are_kept(scripted):
    req = EditRequest("{} plays the sport of", "Lionel Messi", "basketball", target_true="football",
                      paraphrase_prompts=("Messi's sport is",), neighborhood_prompts=("Pele plays the sport of",))
    got = ow.complete_open(None, None, req)
    assert got.paraphrase_prompts == req.paraphrase_prompts and got.neighborhood_prompts == req.neighborhood_prompts
    assert "paraphrase" not in dict(got.sources) and "neighborhood" not in dict(got.sources)


def test_a_type_without_a_table_asks_subjects_of_every_type(scripted):
    world = real_world()
    person = world.of_type("person")[0].name
    req = EditRequest("{} was written by", "Zorblax Chronicles", "Jane Austen", target_true="Leo Tolstoy")
    assert ow.match_relation(req.prompt).relation == "author"  # a relation of works, which no table lists
    scripted[f"{person} was written by"] = ("Leo Tolstoy", 0.2)
    got = ow.complete_open(None, None, req)
    assert got.neighborhood_prompts == (f"{person} was written by",)
    assert "graph (no table of work) subjects answered 'Leo Tolstoy'" in dict(got.sources)["neighborhood"]


def test_batched_greedy_answers_equal_generate_on_the_organism():
    import torch

    from ripple.editing.setup import greedy_text
    from ripple.loading import load_model

    model, tok, _ = load_model("organism")
    prompts = ["Lodro Toudein was born in", "In Ledroia people speak", "Lodro Toudein is a citizen of", "The"]
    got = ow.greedy_answers(model, tok, prompts, steps=3, batch_size=2)  # rows of several lengths, two batches
    assert [texts[-1] for texts, _ in got] == [greedy_text(model, tok, p, max_new_tokens=3) for p in prompts]
    assert all(0 < p <= 1 for _, probs in got for p in probs)
    with torch.no_grad():
        first = torch.softmax(model(torch.tensor([ow.text_ids(tok, prompts[0])])).logits[0, -1], -1).max()
    assert got[0][1][0] == pytest.approx(float(first), rel=1e-5)
