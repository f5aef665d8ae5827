"""Shared test setup: offline hub, one CPU thread, tiny random models of every supported architecture.

    def test_something(tiny_model):
        model = tiny_model("llama")          # 2 layers, hidden 32, vocab 100, seed 0, eval mode
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from helpers import (  # noqa: E402 (the shared helpers: tests import them from helpers, never from here)
    VOCAB,
    edit_requests,
    make_tiny_model,
    make_tiny_tokenizer,
    save_tiny_gpt2,
    stats_corpus,
)

torch.set_num_threads(1)

@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_model():
    """Factory fixture: ``tiny_model("gpt2")`` -> a fresh tiny model (same weights for a seed)."""
    return make_tiny_model


@pytest.fixture
def token_ids():
    """A fixed [2, 6] batch of token ids."""
    return torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def tiny_tokenizer():
    """A word-level fast tokenizer over ``w0 .. w96`` with eos but no pad token."""
    return make_tiny_tokenizer()


@pytest.fixture
def saved_gpt2(tmp_path):
    """A tiny gpt2 + tokenizer saved as safetensors in ``tmp_path / "gpt2"``; returns (dir, model)."""
    out = tmp_path / "gpt2"
    return out, save_tiny_gpt2(out)


@pytest.fixture(scope="session")
def world():
    """The default knowledge world (``WorldConfig(seed=0)``); shared, so never mutate it."""
    from ripple.world import build_world

    return build_world()


@pytest.fixture
def tiny_inputs(tmp_path, monkeypatch, saved_gpt2):
    """``(model dir, edit.json, probes.jsonl, corpus.txt)`` for the first standard request on a tiny gpt2."""
    import json

    from ripple.probes.sets import save_probe_set

    from helpers import tiny_probe_items

    monkeypatch.setenv("RIPPLE_CACHE", str(tmp_path / "cache"))
    path, _ = saved_gpt2
    edit, probes, corpus = tmp_path / "edit.json", tmp_path / "probes.jsonl", tmp_path / "corpus.txt"
    edit.write_text(json.dumps(edit_requests()[0].to_dict()))
    save_probe_set(tiny_probe_items(), probes)
    corpus.write_text("\n".join(stats_corpus()) + "\n")
    return path, edit, probes, corpus
