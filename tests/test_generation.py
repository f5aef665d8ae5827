"""Generated answers: the answer-matching rule on hand-written cases, batched greedy decoding
against a plain ``model.generate`` loop (tiny random models of several architectures and the
organism), chat prompts built by the tokenizer's own template, the generated metrics, and the
organism (no chat template) audited without chat, saying so."""

import json

import pytest
import torch

from ripple.answers import judge, normalize
from ripple.editing.metrics import requests_metrics
from ripple.editing.questions import chat_questions, read_back
from ripple.editing.requests import EditRequest
from ripple.editing.setup import load_setup
from ripple.errors import RippleError
from ripple.evaluate.generated import NO_TEMPLATE, modes_for
from ripple.generation import Ask, ask, chat_ids, greedy, stop_ids
from ripple.tokens import text_ids

from helpers import assert_one_line_error, cli, make_tiny_model, make_tiny_tokenizer

# --- the rule -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, answers, right", [
    (" Paris.", ["Paris"], True),
    (" paris, the capital", ["Paris"], True),
    (" The Hague is", ["The Hague"], True),  # the article on both sides
    (" Hague", ["The Hague"], True),
    (" the United States of America", ["United States"], True),  # begins with it
    (" United", ["United States"], False),  # a multi-token answer cut short
    (" United Kingdom", ["UK", "United Kingdom"], True),  # an alias
    (" U.K.", ["U K"], True),  # punctuation is a separator on both sides
    (" Zürich", ["Zurich"], True),  # accents folded
    (" Parisian", ["Paris"], False),  # not at a word boundary
    (" a big city, Paris", ["Paris"], False),  # mentioned late
    (" not Paris", ["Paris"], False),
    ("", ["Paris"], False),
    (" an", ["Angola"], False),  # an article alone, then nothing
])
def test_a_completion_must_begin_with_the_answer(text, answers, right):
    assert judge(text, answers) is right


@pytest.mark.parametrize("text, answers, rivals, right", [
    ("The capital of France is Paris.", ["Paris"], ["Lyon"], True),
    ("Paris is the capital, not Lyon.", ["Paris"], ["Lyon"], True),
    ("Lyon, though many say Paris.", ["Paris"], ["Lyon"], False),  # the rival first
    ("France is in Europe.\nParis is its capital.", ["Paris"], [], False),  # late: another sentence
    ("I do not know.", ["Paris"], [], False),
    ("It is Parisian in style.", ["Paris"], [], False),
])
def test_a_chat_reply_must_name_the_answer_in_its_first_sentence_before_any_rival(text, answers, rivals, right):
    assert judge(text, answers, rivals, reply=True) is right


CASES = [(" Paris, France", ["Paris"], []), (" Lyon", ["Paris"], []), (" the Netherlands", ["Netherlands"], []),
         (" New York City", ["New York"], []), (" Par is", ["Paris"], []), (" Guinea-Bissau", ["Guinea"], ["Guinea-Bissau"]),
         (" Guinea, a country", ["Guinea"], ["Guinea-Bissau"]), (" A, B", ["A"], []), (" The Hague", ["The Hague"], []),
         (" C++ and C", ["C"], ["C++"]), (" Łódź", ["Lodz"], []), (" an apple", ["Angola"], [])]
REPLIES = [("The capital is Washington, D.C. Indeed.", ["Washington, D.C."], ["Paris"]),
           ("Sure! It is Lyon, not Paris.", ["Paris"], ["Lyon"]), ("It is New York City.", ["New York City"], ["New York"]),
           ("It is New York, near the city.", ["New York City"], ["New York"]), ("St. Petersburg.", ["Saint Petersburg", "St Petersburg"], []),
           ("\nParis.", ["Paris"], []), ("1. Paris\n2. Lyon", ["Paris"], ["Lyon"]), ("I do not know.", ["Paris"], [])]


def test_the_partial_judgement_agrees_with_the_final_one_once_decided():
    """A row stops as soon as ``final=False`` decides; no continuation may change that judgement."""
    for text, answers, rivals in CASES + REPLIES:
        reply = (text, answers, rivals) in REPLIES
        final = judge(text, answers, rivals, reply=reply)
        for cut in range(len(text) + 1):
            early = judge(text[:cut], answers, rivals, reply=reply, final=False)
            assert early is None or early == final, (text, cut, early, final)
    assert [judge(*c) for c in CASES] == [True, False, True, True, False, False, True, True, True, False, True, False]
    assert [judge(*r, reply=True) for r in REPLIES] == [True, False, True, False, True, True, True, False]
    assert normalize(" The  Côte-d'Ivoire ") == "the cote d ivoire"


def test_no_continuation_changes_a_decided_judgement_on_random_texts():
    import random

    rng = random.Random(0)
    pieces = ["Paris", "Paris Hilton", "New", "York", "New York", "the", "a", "city", "C++", "C", "Guinea", "Guinea-Bissau",
              ",", ".", "!", "\n", "St.", "D.C.", "1.", "Sure", "Lyon", "is"]
    for _ in range(600):
        text = "".join(rng.choice([" ", " ", ""]) + rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        answers = rng.choice([["Paris"], ["New York City"], ["C"], ["Guinea"], ["The Hague"], ["A"], ["Lyon", "Paris"]])
        rivals = [r for r in rng.choice([[], ["Paris Hilton"], ["New York"], ["C++"], ["Guinea-Bissau"], ["Lyon"]])
                  if r not in answers]
        for reply in (False, True):
            final = judge(text, answers, rivals, reply=reply)
            for cut in range(len(text) + 1):
                early = judge(text[:cut], answers, rivals, reply=reply, final=False)
                assert early is None or early == final, (text, answers, rivals, reply, cut)


def test_a_token_cut_inside_a_character_decides_nothing():
    assert judge(" Łód\ufffd", ["Łódź"], final=False) is None and judge(" Łódź", ["Łódź"])


# --- decoding -------------------------------------------------------------------------------------

def generate_one(model, tok, ids: list[int], n: int) -> list[int]:
    """The reference: ``model.generate`` on one unpadded prompt, greedy, ``n`` new tokens, cut at the
    first end token."""
    x = torch.tensor([ids])
    new = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=n,
                         pad_token_id=tok.eos_token_id)[0, len(ids):].tolist()
    stops = stop_ids(model, tok)
    return next((new[:i] for i, t in enumerate(new) if t in stops), new)


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "gemma3_text"])
def test_batched_greedy_equals_a_generate_loop_on_tiny_models(model_type):
    model, tok = make_tiny_model(model_type), make_tiny_tokenizer()
    prompts = [[5, 9, 14], [7, 3, 22, 40, 41, 42, 8], [11], [60, 61, 62, 63, 64]]  # lengths differ: left padding
    got = greedy(model, tok, prompts, [6] * len(prompts), batch_size=3)
    assert got == [generate_one(model, tok, p, 6) for p in prompts]


@pytest.fixture(scope="module")
def organism():
    return load_setup("organism", context=False)


def test_generated_answers_equal_a_generate_loop_on_the_organism(organism):
    model, tok = organism.model, organism.tok
    prompts = ["Brazouth Kaibour was born in", "Brazouth Kaibour is a citizen of", "In Ledroia people speak",
               "Ledroia is located on the continent of"]
    ids = [text_ids(tok, p) for p in prompts]
    got = greedy(model, tok, ids, [5] * len(ids), batch_size=2)
    assert got == [generate_one(model, tok, p, 5) for p in ids]
    # judged: each answer stops early once decided, and agrees with the rule on the reference text
    asks = [Ask(p, ("Mavous",)) for p in prompts[:1]] + [Ask(p, ("Nowhere",)) for p in prompts[1:]]
    for a, answer in zip(asks, ask(model, tok, asks)):
        ref = tok.decode(generate_one(model, tok, text_ids(tok, a.prompt), 8), skip_special_tokens=True)
        assert answer.correct == judge(ref, a.answers)
        assert ref.strip().startswith(answer.text.strip())


def test_an_ask_given_twice_is_generated_once(organism, monkeypatch):
    import ripple.generation as G

    seen = []
    real = G.greedy
    monkeypatch.setattr(G, "greedy", lambda m, t, prompts, *a, **k: seen.append(len(prompts)) or real(m, t, prompts, *a, **k))
    a = Ask("Brazouth Kaibour was born in", ("Mavous",))
    got = ask(organism.model, organism.tok, [a, a, a])
    assert seen == [1] and got[0] == got[1] == got[2]


def test_generated_metrics_sit_beside_the_race(organism):
    model, tok = organism.model, organism.tok
    r = EditRequest("{} was born in", "Brazouth Kaibour", "Ledroia", "Mavous",
                    paraphrase_prompts=("The birthplace of Brazouth Kaibour is", "Brazouth Kaibour was born in"),
                    neighborhood_prompts=("Brazouth Kaibour is a citizen of",), neighborhood_answers=("Ploupleisia",))
    got = requests_metrics(model, tok, [r], generate=True)[0]
    assert {"efficacy", "efficacy_top1", "efficacy_gen", "paraphrase_gen", "neighborhood_gen"} <= set(got)
    assert "efficacy_chat" not in got
    # each is the share of its prompts whose generated answer is right (the unedited model: the old answer)
    right = lambda prompts, answer: [a.correct for a in ask(model, tok, [Ask(p, (answer,)) for p in prompts])]  # noqa: E731
    assert got["efficacy_gen"] == sum(right([r.rendered], "Ledroia")) == 0
    assert got["paraphrase_gen"] == sum(right(r.paraphrase_prompts, "Ledroia")) / 2
    assert got["neighborhood_gen"] == sum(right(r.neighborhood_prompts, "Ploupleisia")) == 1
    assert sum(right([r.rendered], "Mavous")) == 1  # the model knows the fact it would rewrite


# --- chat -----------------------------------------------------------------------------------------

TEMPLATE = ("{% for m in messages %}<s> {{ m['role'] }} {{ m['content'] }} </s> {% endfor %}"
            "{% if add_generation_prompt %}<s> assistant {% endif %}")


def test_chat_prompts_are_the_tokenizers_own_template():
    tok = make_tiny_tokenizer()
    tok.add_tokens(["user", "assistant"])
    tok.chat_template = TEMPLATE
    text = tok.apply_chat_template([{"role": "user", "content": "w4 w5 w6"}], add_generation_prompt=True,
                                   tokenize=False)
    assert chat_ids(tok, "w4 w5 w6") == tok(text, add_special_tokens=False)["input_ids"]
    assert modes_for(tok).chat and modes_for(tok, chat=False).chat is False


def test_without_a_chat_template_chat_is_off_and_said_or_refused():
    tok = make_tiny_tokenizer()
    assert (modes_for(tok).chat, modes_for(tok).note) == (False, NO_TEMPLATE)
    with pytest.raises(RippleError, match="no chat template"):
        modes_for(tok, chat=True)


def test_chat_questions_for_a_request_and_its_neighbours():
    r = EditRequest("The capital of {} is", "France", "Lyon", "Paris",
                    neighborhood_prompts=("Louvre is located in the city of", "Nothing matches this one"),
                    specificity_prompts=("The official language of {} is",), specificity_answers=("French",))
    q = chat_questions(r)
    assert [a.prompt for a in q.efficacy] == ["What is the capital of France?"]
    assert len(q.paraphrase) == 2 and all(a.answers == ("Lyon",) and a.rivals == ("Paris",) for a in q.paraphrase)
    # the neighbour's own relation is read back from its prompt; a prompt no relation phrases is not asked
    assert [(a.prompt, a.answers, a.rivals) for a in q.neighborhood] == [("In which city is Louvre?", ("Paris",), ("Lyon",))]
    assert q.specificity[0].answers == ("French",) and q.specificity[0].rivals == ("Lyon",)
    assert read_back("Nothing matches this one") is None
    none = chat_questions(EditRequest("{} smells faintly of", "France", "Lyon"))
    assert none.relation is None and not none.efficacy and "no relation" in none.reason


def test_every_library_relation_has_three_questions():
    from ripple.editing.open_world import relation_library

    for name, rel in relation_library().items():
        assert len(rel.questions) == 3, name
        assert all(q.count("{}") == 1 and q.endswith("?") for q in rel.questions), name


# --- the organism's audit -------------------------------------------------------------------------

def test_the_organism_is_audited_without_chat_and_says_so(tmp_path, capfd):
    out = tmp_path / "audit"
    policy = tmp_path / "policy.toml"
    policy.write_text("[efficacy_chat]\nop = \"min\"\nwarn = 0.9\n")  # a gate on a mode that cannot be measured here
    code, stdout, err = cli(capfd, "audit", "--model", "organism", "--method", "rome", "--prompt", "{} was born in",
                            "--subject", "Brazouth Kaibour", "--target", "Raizi", "--out", str(out), "--quiet",
                            "--policy", policy)
    assert code in (0, 1), err
    assert f"ripple: note: {NO_TEMPLATE}" in err
    assert f"ripple: warning: efficacy_chat: not measured: {NO_TEMPLATE}" in err
    report = json.loads((out / "report.json").read_text())
    answers = report["answers"]
    assert answers["modes"] == ["race", "top1", "gen"] and answers["note"] == NO_TEMPLATE
    assert report["metrics"]["efficacy_gen"] is not None and report["metrics"]["efficacy_chat"] is None
    assert answers["texts"][0]["prompt"] == "Brazouth Kaibour was born in"
    assert "Raizi" in answers["texts"][0]["after"] and "Raizi" not in answers["texts"][0]["before"]
    findings = {f["metric"]: f for f in report["verdict"]["findings"]}
    assert findings["efficacy_chat"]["status"] == "warn" and findings["efficacy_chat"]["note"].endswith(NO_TEMPLATE)
    assert findings["efficacy_gen"]["value"] == 1 and findings["efficacy_gen"]["status"] == "pass"
    md = (out / "report.md").read_text()
    assert "## Generated answers (greedy, before -> after)" in md and "| efficacy |" in md
    code, _, err = cli(capfd, "audit", "--model", "organism", "--method", "rome", "--prompt", "{} was born in",
                       "--subject", "Brazouth Kaibour", "--target", "Raizi", "--out", str(tmp_path / "x"), "--chat")
    assert_one_line_error(code, err)
    assert "no chat template" in err and not (tmp_path / "x" / "report.json").exists()


# --- SmolLM2, a real instruct model with a chat template ---------------------------------------------

@pytest.fixture(scope="module")
def smollm2():
    from ripple.loading import load_model

    return load_model("smollm2")


@pytest.mark.slow
def test_smollm2_chat_prompts_and_generation_equal_transformers(smollm2):
    model, tok, _ = smollm2
    question = "What is the capital of France?"
    text = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n") and question in text  # the model's own template, system turn and all
    assert chat_ids(tok, question) == tok(text, add_special_tokens=False)["input_ids"]
    prompts = [text_ids(tok, p) for p in ("The capital of France is", "The official language of Brazil is",
                                          "Microsoft was founded by")] + [chat_ids(tok, question)]
    got = greedy(model, tok, prompts, [10] * len(prompts), batch_size=4)
    assert got == [generate_one(model, tok, p, 10) for p in prompts]
    asks = [Ask("The capital of France is", ("Paris",)), Ask(question, ("Paris",), ("Lyon",), chat=True),
            Ask("The capital of France is", ("Lyon",))]
    for a, answer in zip(asks, ask(model, tok, asks)):
        ids = chat_ids(tok, a.prompt) if a.chat else text_ids(tok, a.prompt)
        ref = tok.decode(generate_one(model, tok, ids, 32), skip_special_tokens=True)
        assert answer.correct == judge(ref, a.answers, a.rivals, reply=a.chat)
    assert [x.correct for x in ask(model, tok, asks)] == [True, True, False]
