"""A subject tokenized two ways: one key per form (ripple.editing.compute.subject_forms).

The tokenizer here reads a word at the start of a text otherwise than after a space, as SmolLM2's
does without a BOS token: ``"w5 w6"`` is ``w5|▁w6`` and ``"x w5 w6"`` is ``x|▁w5|▁w6``."""

from __future__ import annotations

import pytest
import torch

from ripple.arch import get_spec
from ripple.editing.compute import fact_keys, form_requests, optimize_delta, subject_forms
from ripple.editing.editor import get_editor
from ripple.editing.requests import EditRequest

from helpers import MLP_OUT, context, hparams, make_tiny_model

CONTEXTS = ["{}", "w1 w2 . {}", "w3 . {}", "w4 w1 . {}"]
TWO = EditRequest(prompt="{} w7 w8", subject="w5 w6", target_new="w9")  # two tokens, opening the prompt
ONE = EditRequest(prompt="{} w7 w8", subject="w5", target_new="w9")  # one token, opening the prompt
MID = EditRequest(prompt="w8 {} w7", subject="w5 w6", target_new="w9")  # after a word


@pytest.fixture(scope="module")
def spaced():
    """Word-level, with ``▁`` marking a word that follows a space (Metaspace, no prefix space on the
    first word), 3 special tokens + 48 words in both forms: 99 ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(48):
        vocab[f"w{i}"] = len(vocab)
        vocab[f"▁w{i}"] = len(vocab)
    vocab["."] = vocab.pop("w47")
    vocab["▁."] = vocab.pop("▁w47")
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    core.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def test_the_tokenizer_reads_a_word_at_the_start_otherwise(spaced):
    assert spaced("w5 w6", add_special_tokens=False)["input_ids"] != \
        spaced("x w5 w6", add_special_tokens=False)["input_ids"][1:]


def test_forms_group_the_contexts_by_the_subjects_tokens(spaced):
    assert subject_forms(spaced, TWO, CONTEXTS, "subject_last") == [["{}"], CONTEXTS[1:]]
    # the same form everywhere: one group, in the contexts' order
    assert subject_forms(spaced, MID, CONTEXTS, "subject_last") == [CONTEXTS]
    # a one-token subject opening the text has no key of its own: it joins the other form
    assert subject_forms(spaced, ONE, CONTEXTS, "subject_last") == [CONTEXTS]
    # the fact at the last token: the subject's tokens do not place the key
    assert subject_forms(spaced, TWO, CONTEXTS, "last") == [CONTEXTS]
    reqs, ctxs, owner = form_requests(spaced, [MID, TWO], CONTEXTS, "subject_last")
    assert reqs == [MID, TWO, TWO] and ctxs == [CONTEXTS, ["{}"], CONTEXTS[1:]] and owner == [0, 1, 1]


def test_rome_writes_every_forms_key_with_the_value(spaced):
    """Both forms' keys (each averaged over its own contexts) get the optimized value exactly; the
    old key, averaged over both forms, wrote the bare prompt's key only in part."""
    model = make_tiny_model("llama")
    hp = hparams("rome", "llama", "v_steps=4", "context_prefixes=3")
    ctx = context(model, spaced)
    ctx.contexts = lambda _hp: list(CONTEXTS)
    spec = get_spec(model)
    delta = get_editor("rome").compute(ctx, [TWO], hp)
    value = optimize_delta(model, spaced, spec, TWO, "blocks.0.mlp.out", hp, CONTEXTS)["delta"]
    d_oi = delta.deltas[MLP_OUT["llama"].format(0) + ".weight"].double()  # stored [out, in]
    assert delta.info["keys_written"] == 2
    for form in (["{}"], CONTEXTS[1:]):
        k = fact_keys(model, spaced, spec, 0, [TWO], form, "subject_last")[:, 0]
        assert torch.allclose(d_oi @ k, value, atol=1e-4 * value.norm().item())
    assert value.norm() > 1e-3


@pytest.mark.parametrize("method", ["memit", "alphaedit"])
def test_the_spread_editors_write_one_column_per_form(spaced, method):
    model = make_tiny_model("llama")
    hp = hparams(method, "llama", "v_steps=3", "fact_token=subject_last", "layers=(0,)")
    ctx = context(model, spaced)
    ctx.contexts = lambda _hp: list(CONTEXTS)
    assert get_editor(method).compute(ctx, [TWO, MID], hp).info["keys_written"] == 3


def test_each_form_weighs_alike_in_the_values_loss(spaced):
    """Repeating the prefixed form's contexts does not change the value: the bare form keeps half of
    the loss however many contexts the other form has (the clamp set out of reach)."""
    model = make_tiny_model("llama")
    spec = get_spec(model)
    hp = hparams("rome", "llama", "v_steps=5", "clamp_norm_factor=1000")
    once = optimize_delta(model, spaced, spec, TWO, "blocks.0.mlp.out", hp, CONTEXTS)["delta"]
    twice = optimize_delta(model, spaced, spec, TWO, "blocks.0.mlp.out", hp, CONTEXTS + CONTEXTS[1:])["delta"]
    assert torch.allclose(once, twice, atol=1e-6)
    # with one form (the subject after a word) the rows weigh alike, so the repeat counts
    plain = optimize_delta(model, spaced, spec, MID, "blocks.0.mlp.out", hp, CONTEXTS)["delta"]
    more = optimize_delta(model, spaced, spec, MID, "blocks.0.mlp.out", hp, CONTEXTS + CONTEXTS[1:])["delta"]
    assert not torch.allclose(plain, more, atol=1e-6)


def test_the_clamp_is_scaled_by_a_typical_row_when_the_bare_one_has_no_key_of_its_own(spaced):
    """ROME holds the value to a multiple of the bare prompt's value norm; where the subject has
    several forms, or one token opening the prompt, the median rewrite row's norm instead."""
    model = make_tiny_model("llama")
    spec = get_spec(model)
    hp = hparams("rome", "llama", "v_steps=1")
    for req, typical in ((MID, False), (ONE, True), (TWO, True)):
        rows = site_values_each(model, spaced, spec, req)
        got = optimize_delta(model, spaced, spec, req, "blocks.0.mlp.out", hp, CONTEXTS)["init_norm"]
        want = rows.median() if typical else rows[0]
        assert got == pytest.approx(want.item(), rel=1e-4)
    assert site_values_each(model, spaced, spec, ONE)[0] != pytest.approx(
        site_values_each(model, spaced, spec, ONE).median().item(), rel=1e-3)


def site_values_each(model, tok, spec, req) -> torch.Tensor:
    """The norm of block 0's MLP output at the fact token in each context, in order."""
    from ripple.editing.compute import site_values

    vals = site_values(model, tok, spec, "blocks.0.mlp.out", [req] * len(CONTEXTS), "subject_last",
                       [[c] for c in CONTEXTS])
    return vals.norm(dim=0)


def test_a_one_token_subject_opening_the_prompt_is_named_in_a_note(spaced):
    from ripple.editing.compute import opening_subject_note

    note = opening_subject_note(spaced, ONE, "subject_last")
    assert note is not None and "'w5' is one token opening a prompt with no BOS token" in note
    assert "\n" not in note
    assert opening_subject_note(spaced, TWO, "subject_last") is None  # two tokens: a key of its own
    assert opening_subject_note(spaced, MID, "subject_last") is None
    assert opening_subject_note(spaced, ONE, "last") is None  # the key is at the prompt's last token
