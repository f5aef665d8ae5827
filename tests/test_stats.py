"""Second-moment statistics: the value against a hand-hooked forward pass, and the disk cache."""

import pytest
import torch

import ripple.editing.stats as stats
from ripple.arch import get_spec
from ripple.editing.stats import collect_keys, second_moment

from helpers import MLP_OUT, hooked_io, make_tiny_model, stats_corpus, word_ids

ALL = 10**6  # more samples than the corpus has tokens


def hand_keys(model, model_type, layer, corpus) -> torch.Tensor:
    """Every real token's MLP key, one unpadded sentence at a time, in corpus order: [tokens, in]."""
    module = MLP_OUT[model_type].format(layer)
    return torch.cat([hooked_io(model, module, word_ids(text))[0][0] for text in corpus]).double()


def assert_moment(C, K):
    expected = K.T @ K / len(K)
    assert C.dtype == torch.float64 and C.shape == expected.shape
    assert torch.allclose(C, expected, rtol=1e-5, atol=1e-9), (C - expected).abs().max()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """RIPPLE_CACHE in a fresh directory; returns the folder the moment files go to."""
    monkeypatch.setenv("RIPPLE_CACHE", str(tmp_path))
    return tmp_path / "mom2"


class Calls(list):
    """The layers collect_keys was called for; while ``forbid`` is set, a call fails the test."""

    forbid = False


@pytest.fixture
def counted(monkeypatch):
    """Count the calls of collect_keys (the expensive part second_moment must skip on a hit)."""
    calls = Calls()

    def counting(*args, **kwargs):
        if calls.forbid:
            raise AssertionError("the cached second moment was recomputed")
        calls.append(args[3])
        return collect_keys(*args, **kwargs)

    monkeypatch.setattr(stats, "collect_keys", counting)
    return calls


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_second_moment_counts_every_real_token_and_no_padding(model_type, tiny_tokenizer, cache):
    model, corpus = make_tiny_model(model_type), stats_corpus()
    K = hand_keys(model, model_type, 1, corpus)
    assert len(K) == sum(len(t.split()) for t in corpus) and len({len(t.split()) for t in corpus}) > 1
    assert_moment(second_moment(model, tiny_tokenizer, get_spec(model), 1, corpus, ALL, use_cache=False), K)
    # n_samples takes the first keys in corpus order
    assert_moment(second_moment(model, tiny_tokenizer, get_spec(model), 1, corpus, 50, use_cache=False), K[:50])
    assert not cache.exists()  # use_cache=False writes nothing


def test_collect_keys_keeps_corpus_order_across_batches(tiny_tokenizer):
    model, corpus = make_tiny_model("gpt2"), stats_corpus()
    K = hand_keys(model, "gpt2", 0, corpus)
    got = collect_keys(model, tiny_tokenizer, get_spec(model), 0, corpus, n_samples=50, batch_size=7)
    assert got.shape == (50, K.shape[1])
    assert torch.allclose(got, K[:50], rtol=1e-5, atol=1e-7)


def test_second_moment_is_cached_per_layer_corpus_and_sample_count(tiny_tokenizer, cache, counted):
    model, corpus = make_tiny_model("gpt2"), stats_corpus()
    spec = get_spec(model)
    first = second_moment(model, tiny_tokenizer, spec, 1, corpus, 200)
    assert len(counted) == 1 and len(list(cache.iterdir())) == 1
    counted.forbid = True
    assert torch.equal(second_moment(model, tiny_tokenizer, spec, 1, corpus, 200), first)
    counted.forbid = False

    for layer, text, n in [(0, corpus, 200), (1, corpus[:-1], 200), (1, corpus, 100)]:
        C = second_moment(model, tiny_tokenizer, spec, layer, text, n)
        assert_moment(C, hand_keys(model, "gpt2", layer, text)[:n])
    assert counted == [1, 0, 1, 1] and len(list(cache.iterdir())) == 4


def test_an_edited_model_gets_its_own_statistics(tiny_tokenizer, cache, counted):
    model, corpus = make_tiny_model("gpt2"), stats_corpus()
    spec = get_spec(model)
    original = second_moment(model, tiny_tokenizer, spec, 1, corpus, ALL)
    with torch.no_grad():  # an edit at layer 1 itself: its keys (the inputs) stay, but the file is not shared
        model.get_submodule(MLP_OUT["gpt2"].format(1)).weight.add_(0.01)
    assert torch.allclose(second_moment(model, tiny_tokenizer, spec, 1, corpus, ALL), original, rtol=1e-6)
    assert len(counted) == 2 and len(list(cache.iterdir())) == 2

    with torch.no_grad():  # an edit at layer 0 changes the keys at layer 1
        model.get_submodule(MLP_OUT["gpt2"].format(0)).weight.mul_(3.0)
    edited = second_moment(model, tiny_tokenizer, spec, 1, corpus, ALL)
    assert len(counted) == 3 and len(list(cache.iterdir())) == 3
    assert not torch.allclose(edited, original, rtol=1e-3)
    assert_moment(edited, hand_keys(model, "gpt2", 1, corpus))
