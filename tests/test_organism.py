"""The bundled organism: plain-transformers loadable, trained on the world it ships, and it knows it."""

from __future__ import annotations

import json
import random

import pytest
import torch

from ripple.organism.paths import model_dir, world_path
from ripple.organism.train import TrainConfig, train
from ripple.world.generate import build_world


@pytest.fixture(scope="module")
def organism():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir())
    tok = AutoTokenizer.from_pretrained(model_dir())
    return model.eval(), tok


def test_bundle_is_small_safetensors_and_complete():
    files = {p.name for p in model_dir().iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "world.json"} <= files
    assert not any(f.endswith(".bin") for f in files)
    size = sum(p.stat().st_size for p in model_dir().iterdir())
    assert size <= 20 * 2**20, f"organism bundle is {size / 2**20:.1f} MB, over 20 MB"


def test_shipped_world_is_the_one_the_default_recipe_builds():
    shipped = json.loads(world_path().read_text())
    cfg = TrainConfig()
    assert shipped == json.loads(json.dumps(build_world(cfg.world).to_dict()))
    trained_with = json.loads((model_dir() / "train_config.json").read_text())
    trained_with.pop("train_seconds", None)
    from dataclasses import asdict

    assert trained_with == json.loads(json.dumps(asdict(cfg))), "train_config.json differs from TrainConfig()"


def test_organism_recalls_single_hop_facts(organism):
    """A sample of 150 facts on their core templates (the full figures are in reports/organism.md)."""
    from ripple.organism.evaluate import load_world
    from ripple.scoring import accuracy
    from ripple.world import queries as Q

    model, tok = organism
    qs = random.Random(0).sample(Q.single_hop(load_world()), 150)
    assert accuracy(model, tok, qs) >= 0.95


def test_organism_answers_a_fact_by_hand(organism):
    """Oracle by hand: the first fact of the world, greedy next token, no ripple scoring code."""
    model, tok = organism
    world = json.loads(world_path().read_text())
    fact = next(f for f in world["facts"] if f["relation"] == "born_in")
    ids = tok(f"{fact['subject_name']} was born in", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        top = model(input_ids=ids).logits[0, -1].argmax().item()
    assert tok.decode([top]).strip() == fact["object_name"]


def test_training_is_deterministic(tmp_path):
    cfg = TrainConfig().with_overrides(["steps=3", "n_layer=1", "n_embd=16", "n_head=2", "batch_size=4",
                                        "world.n_persons=20", "threads=1"])
    a = train(cfg, tmp_path / "a", log=lambda *_: None)
    b = train(cfg, tmp_path / "b", log=lambda *_: None)
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "world.json").read_text() == (b / "world.json").read_text()


def test_world_export_writes_json_and_graphml(tmp_path, capsys):
    import networkx as nx

    from ripple.cli import main

    assert main(["organism", "world", "--out", str(tmp_path)]) == 0
    shipped = json.loads(world_path().read_text())
    g = nx.read_graphml(tmp_path / "world.graphml", force_multigraph=True)
    assert len(g) == len(shipped["entities"]) and g.number_of_edges() == len(shipped["facts"])
    fact = shipped["facts"][0]
    assert any(d["relation"] == fact["relation"] for d in g.get_edge_data(fact["subject"], fact["object"]).values())
    assert json.loads((tmp_path / "world.json").read_text()) == shipped
