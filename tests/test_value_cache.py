"""The value cache (ripple.editing.value_cache): MEMIT and AlphaEdit share one target value; an
editor that reads it gives the delta it computes without it; another model state or other target
hyperparameters never reuse a value."""

import dataclasses

import torch

from ripple.editing.editor import get_editor
from ripple.editing.value_cache import ValueCache

from helpers import context, edit_requests, hparams, make_tiny_model


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


def test_a_value_another_process_is_computing_is_waited_for_after_the_rest(tiny_tokenizer, tmp_path, monkeypatch):
    """Another holder of a key's lock (a thread with its own lock file handle, as another process
    would have) is computing that value: target_values computes the other requests first, then
    reads that one when the lock is released, and computes nothing twice."""
    import threading

    from ripple.editing import compute as compute_mod
    from ripple.editing.stats import model_fingerprint
    from ripple.editing.value_cache import target_values

    model = make_tiny_model("gpt2")
    ctx = context(model, tiny_tokenizer)
    reqs, hp = edit_requests(), hparams("rome", "gpt2")
    assert len(reqs) >= 2
    site, contexts = "blocks.1.mlp.out", ctx.contexts(hp)
    reference = target_values(ctx, reqs, site, hp, contexts)  # no cache
    ctx.value_cache = cache = ValueCache(tmp_path)
    key0 = cache.key(model_fingerprint(model, tiny_tokenizer, -1), site, reqs[0], hp, contexts)

    real, computed, rest_done, holding = compute_mod.optimize_delta, [], threading.Event(), threading.Event()

    def spy(model_, tok, spec, r, *a):
        computed.append(r.subject)
        out = real(model_, tok, spec, r, *a)
        if len(computed) == len(reqs) - 1:
            rest_done.set()
        return out

    def other_process():
        with cache.lock(key0):
            holding.set()
            assert rest_done.wait(120)  # it computes the others meanwhile
            opt = real(model, tiny_tokenizer, ctx.spec, reqs[0], site, hp, contexts)
            cache.put(key0, opt, 1.5)

    monkeypatch.setattr(compute_mod, "optimize_delta", spy)
    other = threading.Thread(target=other_process)
    other.start()
    assert holding.wait(60)
    got = target_values(ctx, reqs, site, hp, contexts)
    other.join(60)
    assert computed == [r.subject for r in reqs[1:]]  # never the one being computed elsewhere
    assert [g["cached"] for g in got] == [True] + [False] * (len(reqs) - 1) and got[0]["seconds"] == 1.5
    assert (cache.hits, cache.misses) == (1, len(reqs) - 1)
    assert all(torch.equal(g["delta"], r["delta"]) for g, r in zip(got, reference))
