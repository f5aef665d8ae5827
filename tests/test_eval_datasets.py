"""Loaders for CounterFact, RippleEdits and MQuAKE files: every field mapped, and one-line errors
naming the file and the record for malformed files (samples in tests/data, hand-written)."""

import json
from pathlib import Path

import pytest

from ripple.errors import RippleError
from ripple.evaluate.datasets import load_counterfact, load_mquake, load_rippleedits

DATA = Path(__file__).parent / "data"


def test_counterfact_fields():
    a, b = load_counterfact(DATA / "counterfact_sample.json")
    assert (a.case_id, a.prompt, a.subject, a.target_new, a.target_true) == (
        "0", "The mother tongue of {} is", "Danielle Darrieux", "English", "French")
    assert a.paraphrase_prompts[0].startswith("Shayna does this") and len(a.paraphrase_prompts) == 2
    assert a.neighborhood_prompts == ("The mother tongue of Léon Blum is", "The native language of Montesquieu is")
    assert (b.case_id, b.prompt, b.target_new, b.target_true) == ("1", "{}, which is located in", "Asia", "Europe")
    assert b.rendered == "Kalo Harbour, which is located in"


def test_rippleedits_fields():
    a, b = load_rippleedits(DATA / "rippleedits_sample.json")
    r = a.request
    assert (r.prompt, r.subject, r.target_new, r.target_true, r.case_id) == (
        "The name of the country of citizenship of {} is", "Kalo Miren", "Tesvar", "Orlan", "0")
    cats = [q.category for q in a.queries]
    assert cats == ["compositionality_1", "subject_aliasing", "relation_specificity"]
    comp = a.queries[0]
    assert comp.prompt == "The name of the capital city of the country of citizenship of Kalo Miren is"
    assert comp.answers == ("Vessa", "Vessa City") and comp.must_change
    conds = [(c.prompt, c.answers) for c in comp.conditions]
    assert conds == [("The name of the capital city of Tesvar is", ("Vessa",))]
    assert a.queries[1].answers == ("Tesvar", "Republic of Tesvar") and a.queries[1].conditions == ()
    assert not a.queries[2].must_change and a.queries[2].conditions[0].answers == ("painter",)
    rb = b.request
    assert (rb.prompt, rb.subject, rb.target_new, rb.target_true, rb.case_id) == (
        "{} is married to", "Dara Voss", "Ilo Brant", None, "1")
    assert [q.category for q in b.queries] == ["logical_generalization", "compositionality_2", "preservation"]
    assert b.queries[0].answers == ("Dara Voss", "D. Voss")
    assert b.queries[1].conditions[0].prompt == "The name of the mother of Tam Voss is"
    assert not b.queries[2].must_change


def test_mquake_fields():
    a, b = load_mquake(DATA / "mquake_sample.json")
    assert a.case_id == "1" and len(a.requests) == 1
    r = a.requests[0]
    assert (r.prompt, r.subject, r.target_new, r.target_true, r.case_id) == (
        "{} is a citizen of", "Kalo Miren", "Tesvar", "Orlan", "1.0")
    assert len(a.questions) == 3 and a.questions[1] == "Which city is the capital of Kalo Miren's country?"
    assert a.answers == ("Orla City", "Orla") and a.new_answers == ("Vessa", "Vessa City")
    assert [x.subject for x in b.requests] == ["Dara Voss", "Brightwave"]
    assert [x.target_new for x in b.requests] == ["Brightwave", "Lumen"] and b.requests[1].case_id == "2.1"
    assert b.answers == ("Harth",) and b.new_answers == ("Lumen",)


def _bad(tmp_path, name, data):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


@pytest.mark.parametrize("loader, sample, break_it, words", [
    (load_counterfact, "counterfact_sample.json", lambda r: r[1].pop("requested_rewrite"), "requested_rewrite"),
    (load_counterfact, "counterfact_sample.json", lambda r: r[1]["requested_rewrite"].pop("subject"), "subject"),
    (load_rippleedits, "rippleedits_sample.json", lambda r: r[1]["edit"].pop("subject"), "subject"),
    (load_rippleedits, "rippleedits_sample.json",
     lambda r: r[1]["Preservation"][0]["test_queries"][0].pop("answers"), "answers"),
    (load_rippleedits, "rippleedits_sample.json",
     lambda r: r[1]["Preservation"][0]["test_queries"][0].update(answers=[{"aliases": []}]), "value"),
    (load_mquake, "mquake_sample.json", lambda r: r[1].pop("new_answer"), "new_answer"),
    (load_mquake, "mquake_sample.json", lambda r: r[1].update(questions=[]), "questions"),
    (load_mquake, "mquake_sample.json", lambda r: r[1].update(requested_rewrite=["x"]), "requested_rewrite"),
])
def test_malformed_record_names_file_and_index(tmp_path, loader, sample, break_it, words):
    recs = json.loads((DATA / sample).read_text())
    break_it(recs)
    p = _bad(tmp_path, sample, recs)
    with pytest.raises(RippleError) as e:
        loader(p)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg and "record 1" in msg and words in msg


@pytest.mark.parametrize("data, words", [("{not json", "not valid JSON"), ({"a": 1}, "JSON list"), ([3], "record 0")])
def test_malformed_file(tmp_path, data, words):
    p = _bad(tmp_path, "x.json", data)
    with pytest.raises(RippleError, match=words) as e:
        load_mquake(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(RippleError, match="no such CounterFact file"):
        load_counterfact(tmp_path / "none.json")
