"""The lm-eval bridge on the organism: scores against an independent oracle (ripple's own scoring),
in-place edits seen without a reload, determinism, preserved RNG and mode, silence, one-line errors;
and the perplexity collapse indicator against a hand-computed case."""

import json
import math
import random

import numpy as np
import pytest
import torch

from ripple.editing.delta import WeightSnapshot
from ripple.errors import RippleError
from ripple.evaluate.lm_eval_bridge import LmEvalBridge
from ripple.evaluate.organism_tasks import write_organism_tasks
from ripple.evaluate.perplexity import sentence_nlls
from ripple.loading import load_model
from ripple.organism.evaluate import load_world
from ripple.scoring import answer_logprobs

from helpers import make_tiny_model


@pytest.fixture(scope="module")
def organism(tmp_path_factory):
    import os

    os.environ["RIPPLE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    model, tok, spec = load_model("organism")
    world = load_world()
    return model, tok, world, LmEvalBridge(model, tok, ["organism"], world=world, limit=40)


def docs(world, name, limit=40):
    directory, _ = write_organism_tasks(world)
    lines = (directory / f"{name}.jsonl").read_text().splitlines()[:limit]
    return [json.loads(x) for x in lines]


def oracle_mc(model, tok, world):
    hits = []
    for d in docs(world, "organism_mc"):
        lp = [x[0] for x in answer_logprobs(model, tok, [(d["prompt"], c) for c in d["choices"]])]
        hits.append(int(np.argmax(lp)) == d["gold"])
    return sum(hits) / len(hits)


def oracle_cloze(model, tok, world, name):
    res = answer_logprobs(model, tok, [(d["prompt"], d["answer"]) for d in docs(world, name)])
    return sum(g for _, g in res) / len(res)


def test_scores_match_ripples_own_scoring(organism):
    model, tok, world, bridge = organism
    res = bridge.evaluate()
    assert set(res) >= {"organism", "organism_mc", "organism_cloze", "organism_ppl", "organism_skill"}
    assert res["organism_mc"]["acc"] == pytest.approx(oracle_mc(model, tok, world))
    assert res["organism_cloze"]["acc"] == pytest.approx(oracle_cloze(model, tok, world, "organism_cloze"))
    assert res["organism_skill"]["acc"] == pytest.approx(oracle_cloze(model, tok, world, "organism_skill"))
    assert res["organism_ppl"]["word_perplexity"] > 1


@pytest.mark.slow
def test_in_place_edit_is_seen_and_state_is_preserved(organism, capfd):
    model, tok, world, bridge = organism
    before = bridge.evaluate()
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    expect = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    model.train()
    capfd.readouterr()
    again = bridge.evaluate()
    out, err = capfd.readouterr()
    assert again == before  # deterministic
    assert model.training  # the caller's mode is back
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expect  # and its random state
    assert out == "" and err == ""  # lm-eval's logging and progress bars stay out
    model.eval()
    name = "transformer.h.5.mlp.c_proj.weight"
    snap = WeightSnapshot.take(model, [name])
    try:
        with torch.no_grad():
            model.get_parameter(name).mul_(0.0)  # a destructive in-place "edit"
        broken = bridge.evaluate()
        broken_oracle = oracle_mc(model, tok, world)
    finally:
        snap.restore(model)
    assert broken != before
    assert broken["organism_mc"]["acc"] == pytest.approx(broken_oracle)
    assert bridge.evaluate() == before


def test_unknown_task_is_one_line(organism):
    model, tok, world, _ = organism
    with pytest.raises(RippleError, match="unknown lm-eval task 'organism_nope'"):
        LmEvalBridge(model, tok, ["organism_nope"], world=world)


@pytest.mark.slow
def test_hub_task_offline_is_one_line(organism, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok, world, _ = organism
    with pytest.raises(RippleError) as err:
        LmEvalBridge(model, tok, ["arc_easy"], world=world)
    msg = str(err.value)
    assert "'arc_easy'" in msg and "cache the dataset" in msg and "\n" not in msg


def test_organism_tasks_need_a_world():
    model = make_tiny_model("gpt2")
    with pytest.raises(RippleError, match="need a model with a world.json"):
        LmEvalBridge(model, None, ["organism"], world=None)


def test_sentence_nll_matches_a_hand_computed_loop(tiny_tokenizer):
    model = make_tiny_model("gpt2")
    sentences = ["w5 w6 w7", "w8 w9 w10 w11 w12 w13", "w3 w4"]
    got = sentence_nlls(model, tiny_tokenizer, sentences, batch_size=3)  # padded batch
    for s, nll in zip(sentences, got):
        ids = [tiny_tokenizer.bos_token_id] + tiny_tokenizer(s, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
        manual = -sum(logp[i, ids[i + 1]].item() for i in range(len(ids) - 1)) / (len(ids) - 1)
        assert nll == pytest.approx(manual, abs=1e-5)
        assert math.exp(nll) > 1
