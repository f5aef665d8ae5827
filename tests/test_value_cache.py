"""The value cache (ripple.editing.value_cache): MEMIT and AlphaEdit share one target value; an
editor that reads it gives the delta it computes without it; another model state or other target
hyperparameters never reuse a value."""

import dataclasses

import torch
from test_editors import context, hparams

from ripple.editing.editor import get_editor
from ripple.editing.value_cache import ValueCache

from conftest import edit_requests, make_tiny_model


def deltas_equal(a, b) -> bool:
    return sorted(a.deltas) == sorted(b.deltas) and all(torch.equal(a.deltas[k], b.deltas[k]) for k in a.deltas)


def test_alphaedit_reads_memits_values_and_gets_its_own_delta(tiny_tokenizer, tmp_path):
    model = make_tiny_model("llama")
    reqs = edit_requests()
    plain = get_editor("alphaedit").compute(context(model, tiny_tokenizer), reqs, hparams("alphaedit", "llama"))

    ctx = context(model, tiny_tokenizer)
    ctx.value_cache = cache = ValueCache(tmp_path / "cache" / "values")  # made on the first value, as on a fresh machine
    memit = get_editor("memit").compute(ctx, reqs, hparams("memit", "llama"))
    assert (cache.hits, cache.misses) == (0, len(reqs))
    assert memit.info["timing"]["values_reused"] == 0
    shared = get_editor("alphaedit").compute(ctx, reqs, hparams("alphaedit", "llama"))
    assert (cache.hits, cache.misses) == (len(reqs), len(reqs))
    assert shared.info["timing"]["values_reused"] > 0  # the seconds the values took when computed
    assert deltas_equal(shared, plain)
    assert shared.info["v_steps"] == plain.info["v_steps"]


def test_an_edited_model_or_other_target_settings_miss(tiny_tokenizer, tmp_path):
    model = make_tiny_model("gpt2")
    ctx = context(model, tiny_tokenizer)
    ctx.value_cache = cache = ValueCache(tmp_path)
    reqs, hp = edit_requests()[:1], hparams("rome", "gpt2")
    rome = get_editor("rome")
    first = rome.compute(ctx, reqs, hp)
    assert deltas_equal(rome.compute(ctx, reqs, hp), first) and cache.hits == 1

    rome.compute(ctx, reqs, dataclasses.replace(hp, v_steps=hp.v_steps + 1))  # another target: a miss
    assert (cache.hits, cache.misses) == (1, 2)

    snap = first.apply(model)  # the edited model: its own values
    try:
        rome.compute(ctx, reqs, hp)
    finally:
        snap.restore(model)
    assert (cache.hits, cache.misses) == (1, 3)
    rome.compute(ctx, reqs, hp)  # restored: the unedited model's value again
    assert cache.hits == 2
