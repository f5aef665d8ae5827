"""The organism's word-level tokenizer, subject spans, and answer scoring against hand computations."""

import pytest
import torch

from ripple.errors import RippleError
from ripple.organism.tokenizer import UNK, build_tokenizer
from ripple.scoring import answer_logprobs
from ripple.tokens import subject_token_span

TEXTS = ["Kalo Miren was born in Tesvar .", "The spouse of Kalo Miren is Dora Vex ."]
WORDS = sorted({w for t in TEXTS for w in t.split()})


@pytest.fixture(scope="module")
def word_tok():
    return build_tokenizer(TEXTS)


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_every_word_is_one_token_and_text_round_trips(word_tok):
    seen = set()
    for w in WORDS:
        (i,) = ids(word_tok, w)
        assert ids(word_tok, " " + w) == [i]  # as an answer after a prompt
        assert word_tok.convert_ids_to_tokens([i]) == [w]
        seen.add(i)
    assert len(seen) == len(WORDS)
    for text in [*TEXTS, "Dora Vex was born in Tesvar ."]:
        assert len(ids(word_tok, text)) == len(text.split())
        assert word_tok.decode(ids(word_tok, text)) == text


def test_unknown_word_is_unk(word_tok):
    unk = word_tok.convert_tokens_to_ids(UNK)
    assert word_tok.unk_token_id == unk
    assert ids(word_tok, "Dora Zzyzx") == [ids(word_tok, "Dora")[0], unk]


def test_save_and_load_with_auto_tokenizer(word_tok, tmp_path):
    from transformers import AutoTokenizer

    word_tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in [*TEXTS, "Zzyzx was born in Tesvar ."]:
        assert ids(loaded, text) == ids(word_tok, text)
        assert loaded.decode(ids(loaded, text)) == word_tok.decode(ids(word_tok, text))
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.unk_token_id) == (
        word_tok.pad_token_id, word_tok.eos_token_id, word_tok.unk_token_id)


@pytest.mark.parametrize("prompt, subject, span", [
    ("Kalo Miren was born in", "Kalo Miren", (0, 2)),  # start
    ("The spouse of Kalo Miren is", "Kalo Miren", (3, 5)),  # middle
    ("The spouse of Dora Vex is Kalo Miren", "Kalo Miren", (6, 8)),  # end
    ("{} was born in", "Kalo Miren", (0, 2)),
    ("The spouse of {} is", "Dora Vex", (3, 5)),
    ("Tesvar", "Tesvar", (0, 1)),
    ("Dora Vex is married to Dora Vex", "Dora Vex", (5, 7)),  # the last occurrence
])
def test_subject_token_span(word_tok, prompt, subject, span):
    assert subject_token_span(word_tok, prompt, subject) == span
    text_ids = ids(word_tok, prompt.replace("{}", subject))
    assert word_tok.convert_ids_to_tokens(text_ids[span[0]:span[1]]) == subject.split()


@pytest.mark.parametrize("prompt, subject", [("Kalo Miren was born in", "Dora Vex"), ("{} was born in", ""),
                                             ("Kalo Miren was born in", ""), ("Kalo Miren was born in", "  ")])
def test_subject_errors(word_tok, prompt, subject):
    with pytest.raises(RippleError) as err:
        subject_token_span(word_tok, prompt, subject)
    assert "\n" not in str(err.value)


@pytest.fixture
def gpt2(tiny_model):
    return tiny_model("gpt2")


def hand_score(model, prompt_ids, answer_ids):
    """One forward pass of prompt + answer; answer token k is predicted at position len(prompt) - 1 + k."""
    logp = torch.log_softmax(model(torch.tensor([prompt_ids + answer_ids])).logits[0].double(), -1)
    total, greedy = 0.0, True
    for k, a in enumerate(answer_ids):
        row = logp[len(prompt_ids) - 1 + k]
        total += row[a].item()
        greedy &= int(row.argmax()) == a
    return total, greedy


def test_answer_logprobs_two_token_answer_by_hand(gpt2, tiny_tokenizer):
    prompt, prompt_ids = "w10 w11 w12", [13, 14, 15]  # w{i} has id i + 3
    assert ids(tiny_tokenizer, prompt) == prompt_ids
    with torch.no_grad():
        first = int(gpt2(torch.tensor([prompt_ids])).logits[0, -1].argmax())
        second = int(gpt2(torch.tensor([prompt_ids + [first]])).logits[0, -1].argmax())
        wrong = 3 + (second - 3 + 1) % 97  # any other in-vocab word id
        for answer_ids, want_greedy in [([first, second], True), ([first, wrong], False), ([20, 30], None)]:
            answer = " ".join(f"w{i - 3}" for i in answer_ids)
            assert ids(tiny_tokenizer, " " + answer) == answer_ids
            lp, greedy = answer_logprobs(gpt2, tiny_tokenizer, [(prompt, answer)])[0]
            want_lp, hand_greedy = hand_score(gpt2, prompt_ids, answer_ids)
            assert lp == pytest.approx(want_lp, abs=1e-5)
            assert greedy == hand_greedy
            if want_greedy is not None:
                assert greedy == want_greedy


def test_right_padded_batch_equals_one_at_a_time(gpt2, tiny_tokenizer):
    pairs = [("w10 w11 w12", "w20 w21"), ("w5", "w6"), ("w30 w31 w32 w33 w34", "w40 w41 w42"), ("w7 w8", "w9")]
    alone = [answer_logprobs(gpt2, tiny_tokenizer, [pair])[0] for pair in pairs]
    for batch_size in (4, 3):
        batched = answer_logprobs(gpt2, tiny_tokenizer, pairs, batch_size=batch_size)
        assert [g for _, g in batched] == [g for _, g in alone]
        assert [lp for lp, _ in batched] == pytest.approx([lp for lp, _ in alone], abs=1e-5)
    with torch.no_grad():
        for (p, a), (lp, _) in zip(pairs, alone):
            assert lp == pytest.approx(hand_score(gpt2, ids(tiny_tokenizer, p), ids(tiny_tokenizer, a))[0], abs=1e-5)


def test_a_tokenizer_marked_for_bos_gets_it_first_in_prompts_not_in_answers(tiny_tokenizer):
    """Gemma reads prompts well only after its BOS token (ripple.loading.BOS_FIRST): a tokenizer marked
    ``ripple_bos`` gets it in front of every prompt, the subject's span moves with it, answers stay bare."""
    from ripple.tokens import answer_ids, subject_token_span, text_ids

    plain = text_ids(tiny_tokenizer, "w1 w2 w3")
    span = subject_token_span(tiny_tokenizer, "w1 w2 w3", "w2")
    answer = answer_ids(tiny_tokenizer, "w4")
    tiny_tokenizer.bos_token = tiny_tokenizer.eos_token
    tiny_tokenizer.ripple_bos = True
    assert text_ids(tiny_tokenizer, "w1 w2 w3") == [tiny_tokenizer.bos_token_id, *plain]
    assert subject_token_span(tiny_tokenizer, "w1 w2 w3", "w2") == (span[0] + 1, span[1] + 1)
    assert answer_ids(tiny_tokenizer, "w4") == answer


@pytest.mark.parametrize("model_type", ["gpt2", "gptj", "gpt_neox", "llama", "gemma2", "gemma3_text"])
def test_left_padded_rows_end_with_their_unpadded_logits(tiny_model, tiny_tokenizer, model_type):
    """optimize_delta reads the logits of left-padded rows (ripple.scoring.pad_ids_left) in the
    last columns only: each row there must score as it does alone, unpadded."""
    from ripple.scoring import pad_ids_left, window_logits

    model = tiny_model(model_type)
    rows = [[5, 9, 11, 4], [7, 3], [8, 8, 12, 40, 41, 42]]
    ids, mask, positions, offsets = pad_ids_left(rows, tiny_tokenizer, "cpu")
    assert offsets == [2, 4, 0] and ids.shape == (3, 6)
    assert positions[0].tolist() == [0, 0, 0, 1, 2, 3] and mask[1].tolist() == [0, 0, 0, 0, 1, 1]
    with torch.no_grad():
        got = window_logits(model, ids, mask, 4, 6, position_ids=positions)
        for i, row in enumerate(rows):
            alone = model(input_ids=torch.tensor([row])).logits[0, -2:]
            assert torch.allclose(got[i], alone, atol=1e-5), (model_type, i)


@pytest.mark.parametrize("model_type", ["gpt2", "gptj", "gpt_neox", "llama", "gemma2", "gemma3_text"])
def test_selected_logits_and_sentence_nlls_equal_the_full_forward(tiny_model, tiny_tokenizer, model_type):
    """sentence_nlls unembeds only the positions it scores (selected_logits): those logits must be
    the full forward's, Gemma-2's soft-capping included, and each sentence's NLL the one it gets
    alone with every logit computed."""
    import transformers

    from ripple.evaluate.perplexity import sentence_nlls
    from ripple.scoring import pad_ids, selected_logits

    model = tiny_model(model_type)
    if model_type == "gemma2":  # the shared tiny config turns the capping off; here it must act
        model.config.final_logit_softcapping = 0.5
        assert isinstance(model, transformers.Gemma2ForCausalLM)
    rows = [[5, 9, 11, 4], [7, 3], [8, 8, 12, 40, 41, 42]]
    ids, mask = pad_ids(rows, tiny_tokenizer, "cpu")
    keep = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0], [1, 1, 0, 1, 0, 1]], dtype=torch.bool)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        got = selected_logits(model, ids, mask, keep)
    assert got.shape == (int(keep.sum()), full.shape[-1])
    assert torch.allclose(got, full[keep], atol=1e-5)
    if model_type == "gemma2":
        assert got.abs().max() <= 0.5  # capped
    sentences = ["w5 w6 w7", "w8 w9 w10 w11 w12 w13", "w3 w4"]
    nlls = sentence_nlls(model, tiny_tokenizer, sentences, batch_size=3)  # one padded batch
    for s, nll in zip(sentences, nlls):
        seq = [tiny_tokenizer.bos_token_id] + tiny_tokenizer(s, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), -1)
        manual = -sum(logp[i, seq[i + 1]].item() for i in range(len(seq) - 1)) / (len(seq) - 1)
        assert nll == pytest.approx(manual, abs=1e-5), (model_type, s)


def test_a_pair_given_twice_is_scored_once_and_returned_in_place(gpt2, tiny_tokenizer, monkeypatch):
    import ripple.scoring as scoring

    pairs = [("w10 w11 w12", "w20 w21"), ("w5", "w6"), ("w10 w11 w12", "w20 w21"), ("w7 w8", "w9"), ("w5", "w6")]
    unique = [pairs[0], pairs[1], pairs[3]]
    want = scoring.answer_logprobs(gpt2, tiny_tokenizer, unique)
    rows = []
    real = scoring.selected_logits
    monkeypatch.setattr(scoring, "selected_logits", lambda m, ids, mask, keep: rows.append(len(ids)) or real(m, ids, mask, keep))
    got = scoring.answer_logprobs(gpt2, tiny_tokenizer, pairs)
    assert sum(rows) == len(unique)  # each distinct pair went through the model once
    assert got == [want[0], want[1], want[0], want[2], want[1]]
