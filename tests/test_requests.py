"""Edit requests: every accepted form, every user error as one located line, loading files."""

import json

import pytest

from ripple.editing.request_files import load_requests
from ripple.editing.requests import (
    EditRequest,
    already_predicts,
    parse_request,
    to_template,
    validate_for_model,
)
from ripple.errors import RippleError

PARA = ["Kalo Miren, born long ago, is a citizen of"]
NEIGH = ["Dora Vex is a citizen of"]
EXPECTED = EditRequest(prompt="{} is a citizen of", subject="Kalo Miren", target_new="Tesvar",
                       target_true="Orlan", paraphrase_prompts=tuple(PARA), neighborhood_prompts=tuple(NEIGH))
FLAT = {"prompt": "{} is a citizen of", "subject": "Kalo Miren", "target_new": "Tesvar",
        "target_true": "Orlan", "paraphrase_prompts": PARA, "neighborhood_prompts": NEIGH}
WHERE = "edits.jsonl line 3"

FORMS = {
    "flat": FLAT,
    "flat_str_dicts": FLAT | {"target_new": {"str": "Tesvar", "id": "Q1"}, "target_true": {"str": "Orlan"}},
    "counterfact_record": {
        "case_id": None, "pararel_idx": 7,
        "requested_rewrite": {"prompt": "{} is a citizen of", "subject": "Kalo Miren", "relation_id": "P27",
                              "target_new": {"str": "Tesvar", "id": "Q1"}, "target_true": {"str": "Orlan"}},
        "paraphrase_prompts": PARA, "neighborhood_prompts": NEIGH,
        "attribute_prompts": ["x is a citizen of"], "generation_prompts": ["Kalo Miren's home"]},
    "easyedit_list": {"prompts": ["Kalo Miren is a citizen of"], "subject": ["Kalo Miren"],
                      "target_new": ["Tesvar"], "ground_truth": ["Orlan"],
                      "rephrase_prompts": PARA, "locality_prompts": NEIGH},
    "easyedit_request": {"prompt": "Kalo Miren is a citizen of ", "subject": "Kalo Miren",
                         "target_new": " Tesvar", "ground_truth": "Orlan",
                         "rephrase_prompt": PARA[0], "locality_prompts": NEIGH},
}


@pytest.mark.parametrize("form", FORMS)
def test_every_form_parses_to_the_same_request(form):
    assert parse_request(FORMS[form], WHERE) == EXPECTED


def test_to_dict_round_trips_and_rendered():
    req = parse_request(FLAT | {"case_id": 12}, WHERE)
    assert req.case_id == "12"
    assert parse_request(req.to_dict(), WHERE) == req
    assert json.loads(json.dumps(req.to_dict())) == req.to_dict()
    assert req.rendered == "Kalo Miren is a citizen of"


@pytest.mark.parametrize("prompt, subject, template", [
    ("Paris Hilton said Paris is in", "Paris", "Paris Hilton said {} is in"),  # the last occurrence
    ("Paris, the Parisian city, is in", "Paris", "{}, the Parisian city, is in"),  # whole words only
    ("The capital of Kalo Miren is", "Kalo Miren", "The capital of {} is"),
    ("{} is in", "Paris", "{} is in"),  # already a template
])
def test_easyedit_prompt_becomes_a_template_at_the_subject(prompt, subject, template):
    assert to_template(prompt, subject) == template
    req = parse_request({"prompts": prompt, "subject": subject, "target_new": "Tesvar"}, WHERE)
    assert req.prompt == template and req.rendered == prompt.replace("{}", subject)


ERRORS = {
    "no_placeholder_no_subject": (FLAT | {"prompt": "Someone is a citizen of"}, "'{}'"),
    "subject_only_inside_a_word": (FLAT | {"prompt": "Kalo Mirenian is a citizen of"}, "'{}'"),
    "two_placeholders": (FLAT | {"prompt": "{} and {} are citizens of"}, "2 '{}'"),
    "empty_subject": (FLAT | {"subject": ""}, "subject is empty"),
    "blank_subject": (FLAT | {"subject": "  \t"}, "subject is empty"),
    "empty_target_new": (FLAT | {"target_new": ""}, "target_new is empty"),
    "blank_target_new": (FLAT | {"target_new": {"str": "  "}}, "target_new is empty"),
    "same_targets": (FLAT | {"target_true": "Tesvar"}, "must change"),
    "unknown_field": (FLAT | {"traget_new": "x"}, "accepted fields: prompt, prompts, subject"),
    "missing_target": ({"prompt": "{} is", "subject": "Kalo Miren"}, "missing field 'target_new'"),
    "two_synonyms": (FLAT | {"prompts": ["{} is"]}, "'prompt' and 'prompts'"),
    "subject_not_str": (FLAT | {"subject": 5}, "'subject' must be a string, got int"),
    "target_dict_without_str": (FLAT | {"target_new": {"id": "Q1"}}, "got dict"),
    "two_prompts": (FLAT | {"prompt": ["{} is", "{} was"]}, "holds 2 items"),
    "paraphrases_not_list": (FLAT | {"paraphrase_prompts": 3}, "list of strings, got int"),
    "paraphrase_not_str": (FLAT | {"paraphrase_prompts": ["ok", 4]}, "list of strings"),
    "case_id_bool": (FLAT | {"case_id": True}, "'case_id' must be"),
    "rewrite_not_object": ({"requested_rewrite": "x", "case_id": 1}, "must be an object"),
    "not_an_object": (["{} is", "Kalo Miren"], "expected a JSON object"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_every_error_is_one_located_line(case):
    obj, expected = ERRORS[case]
    with pytest.raises(RippleError) as err:
        parse_request(obj, WHERE)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(WHERE + ": ") and expected in msg, msg


def test_direct_construction_is_checked_too():
    with pytest.raises(RippleError, match="exactly one"):
        EditRequest(prompt="no hole", subject="Kalo Miren", target_new="Tesvar")
    assert EditRequest("{} is", "S", "T", paraphrase_prompts=["a"]).paraphrase_prompts == ("a",)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_load_json_object_list_and_jsonl_agree(tmp_path):
    one = load_requests(_write(tmp_path / "one.json", json.dumps(FLAT)))
    many = load_requests(_write(tmp_path / "many.json", json.dumps(list(FORMS.values()))))
    lines = "\n".join(json.dumps(f) for f in FORMS.values())
    jsonl = load_requests(_write(tmp_path / "e.jsonl", "\n\n" + lines.replace("\n", "\n  \n") + "\n"))
    assert one == [EXPECTED] and many == jsonl == [EXPECTED] * len(FORMS)


@pytest.mark.parametrize("name, text, expected", [
    ("bad.jsonl", json.dumps(FLAT) + "\n\n{\"prompt\": oops}\n", "bad.jsonl line 3: not valid JSON"),
    ("bad.jsonl", "\n".join([json.dumps(FLAT)] * 3 + [json.dumps(FLAT | {"subject": ""})]), "bad.jsonl line 4:"),
    ("bad.json", json.dumps(FLAT) + "\n" + json.dumps(FLAT), "bad.json line 2: not valid JSON"),
    ("bad.json", "[\n" + json.dumps(FLAT) + ",\n 7]", "bad.json item 2: expected a JSON object"),
    ("empty.jsonl", "\n  \n", "no edit requests"),
    ("empty.json", "", "no edit requests"),
    ("empty.json", "[]", "no edit requests"),
    ("edits.txt", json.dumps(FLAT), "must end in .json"),
])
def test_load_errors_are_one_located_line(tmp_path, name, text, expected):
    with pytest.raises(RippleError) as err:
        load_requests(_write(tmp_path / name, text))
    assert "\n" not in str(err.value) and expected in str(err.value), str(err.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(RippleError, match="does not exist") as err:
        load_requests(tmp_path / "nope.jsonl")
    assert "\n" not in str(err.value)


def test_validate_for_model_and_already_predicts(tiny_model, tiny_tokenizer):
    model = tiny_model("gpt2")  # this random model continues "w3 w5 w6" with "w6"
    hit = EditRequest("{} w5 w6", "w3", "w6", case_id="a")
    miss = EditRequest("{} w5 w6", "w3", "w9 w6")
    assert already_predicts(model, tiny_tokenizer, [hit, miss]) == [True, False]
    assert validate_for_model([hit, miss], tiny_tokenizer) == []
    (warning,) = validate_for_model([miss, hit], tiny_tokenizer, model)
    assert warning.startswith("request 2 (case_id a):") and "'w6'" in warning
    glued = EditRequest("{}w5 is", "w3", "w9")  # renders "w3w5 is": the subject is no token of its own
    with pytest.raises(RippleError, match=r"^request 2: subject 'w3' does not occur"):
        validate_for_model([miss, glued], tiny_tokenizer)
