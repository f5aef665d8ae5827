"""``ripple edit`` in-process on a saved tiny gpt2: the files it writes, and one-line input errors."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from ripple.editing.delta import EditDelta

from helpers import assert_one_line_error, cli, edit_requests, stats_corpus, word_ids, write_jsonl

EDITED = "transformer.h.0.mlp.c_proj.weight"
CHEAP = ["--set", "v_steps=2", "context_prefixes=0", "stats_samples=300", "layers=(0,)", "--force"]


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """``(edits.jsonl, corpus.txt)`` for the two standard requests; RIPPLE_CACHE in tmp_path."""
    monkeypatch.setenv("RIPPLE_CACHE", str(tmp_path / "cache"))
    edits, corpus = tmp_path / "edits.jsonl", tmp_path / "corpus.txt"
    write_jsonl(edits, [r.to_dict() for r in edit_requests()])
    corpus.write_text("\n".join(stats_corpus()) + "\n")
    return edits, corpus


def edit_argv(model, edits, out, method="memit", corpus=None):
    return ["edit", "--model", model, "--method", method, "--edits", edits, "--out", out,
            *(["--stats-corpus", corpus] if corpus else []), *CHEAP]


@torch.no_grad()
def new_beats_old(model, req) -> bool:
    """P(target_new) > P(target_true) after the rendered prompt: one-token answers, read by hand."""
    logits = model(word_ids(req.rendered)).logits[0, -1]
    return bool(logits[word_ids(req.target_new)[0, 0]] > logits[word_ids(req.target_true)[0, 0]])


def test_edit_writes_the_model_the_delta_and_metrics(capfd, saved_gpt2, inputs, tmp_path):
    path, _ = saved_gpt2
    edits, corpus = inputs
    out = tmp_path / "run"
    code, stdout, err = cli(capfd, *edit_argv(path, edits, out, corpus=corpus))
    assert code == 0, err
    assert str(out) in stdout and "memit (batch, 2 edits" in stdout
    assert list((tmp_path / "cache" / "mom2").iterdir())  # statistics went to RIPPLE_CACHE

    delta = EditDelta.load(out / "delta.safetensors")
    assert list(delta.deltas) == [EDITED] and delta.deltas[EDITED].abs().max() > 0
    assert [r["subject"] for r in delta.requests] == ["w10 w11", "w14"]
    original = AutoModelForCausalLM.from_pretrained(path).eval()
    expected = AutoModelForCausalLM.from_pretrained(path).eval()
    delta.apply(expected)
    edited = AutoModelForCausalLM.from_pretrained(out).eval()
    got = edited.state_dict()
    assert got.keys() == expected.state_dict().keys()
    for name, value in expected.state_dict().items():
        assert torch.equal(got[name], value), name
    assert not torch.equal(got[EDITED], original.state_dict()[EDITED])

    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["method"], metrics["mode"], metrics["n_requests"]) == ("memit", "batch", 2)
    assert [r["case_id"] for r in metrics["per_request"]] == ["a", "b"]
    for phase, model in (("before", original), ("after", edited)):
        wins = [new_beats_old(model, r) for r in edit_requests()]
        assert metrics[phase]["efficacy"] == pytest.approx(sum(wins) / 2), phase
        if phase == "after":
            assert [r["efficacy"] for r in metrics["per_request"]] == [float(w) for w in wins]
    assert set(metrics["norm_ratios"]) == {EDITED} and metrics["hparams"]["v_steps"] == 2


def test_default_corpus_without_world_is_model_samples(capfd, saved_gpt2, inputs, tmp_path, monkeypatch):
    """A model without a world and without --stats-corpus gets the measured default: passages sampled
    from the model itself, cached, and named in metrics.json."""
    from ripple.editing.corpora import DEFAULT_REAL, parse_spec, sample_corpus_dir

    monkeypatch.setenv("RIPPLE_CACHE", str(tmp_path / "cache"))
    path, _ = saved_gpt2
    edits, _ = inputs
    out = tmp_path / "run"
    code, _, err = cli(capfd, *edit_argv(path, edits, out, "memit", None))
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stats_corpus"] == {"source": DEFAULT_REAL, "passages": parse_spec(DEFAULT_REAL)[1]}
    cached = list(sample_corpus_dir().glob("*.txt"))
    assert len(cached) == 1 and len(cached[0].read_text().splitlines()) == parse_spec(DEFAULT_REAL)[1]


@pytest.mark.parametrize("case", ["unknown_method", "rome_batch", "subject_not_in_prompt",
                                  "dataset_offline"])
def test_bad_inputs_exit_2_with_one_line(capfd, saved_gpt2, inputs, tmp_path, case, monkeypatch):
    path, _ = saved_gpt2
    edits, corpus = inputs
    method, needle = "memit", None
    if case == "unknown_method":
        method, needle = "romee", "unknown editing method 'romee'"
    elif case == "rome_batch":
        method, needle = "rome", "pass --sequential for 2 requests"
    elif case == "dataset_offline":  # not installed, or offline with no cached copy: one line either way
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
        corpus, needle = "hf:no_such_dataset_xyz", "or pass a text file"
    else:
        write_jsonl(edits, [{"prompt": "w1 w2 w3", "subject": "w10", "target_new": "w50"}])
        needle = "does not contain the subject 'w10'"
    out = tmp_path / "run"
    code, _, err = cli(capfd, *edit_argv(path, edits, out, method, corpus))
    assert needle in assert_one_line_error(code, err)
    assert not (out / "config.json").exists() and not (out / "delta.safetensors").exists()
