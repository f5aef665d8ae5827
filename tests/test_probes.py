"""Probe sets (format, errors, the world's set, the bundled sets), the activation cache and record().

record() is checked against two oracles: HF's ``output_hidden_states`` (via plain_hidden_states; the
last entry is ``final_norm(last block)``, so the last block is compared through the final norm) and
plain torch hooks on a single unpadded prompt, gathered at positions found by hand.
"""

import json
from pathlib import Path

import pytest
import torch

from ripple.arch import get_module, get_spec
from ripple.errors import RippleError
from ripple.probes.cache import ActivationCache
from ripple.probes.record import plain_hidden_states, record
from ripple.probes.sets import ProbeItem, ProbeLink, load_probe_set, save_probe_set, world_probe_set

from helpers import MLP_OUT, hooked_io, scan, word_ids

ROOT = Path(__file__).resolve().parent.parent


def tiny_items() -> list[ProbeItem]:
    """Prompts of different lengths over the tiny tokenizer's words (every word unique per prompt)."""
    rows = [("a", "w10 w11", "{} w20 w21"), ("b", "w12", "w30 {} w21 w22 w23"),
            ("c", "w13 w14 w15", "w31 w32 {} w24"), ("d", "w16", "{} w25"), ("e", "w17 w18", "w33 {} w26 w27 w28")]
    return [ProbeItem(i, s, "r", p, "w50") for i, s, p in rows]


def hand_positions(item: ProbeItem) -> dict[str, int]:
    words = item.rendered.split()
    return {"subject_last": words.index(item.subject.split()[-1]), "last": len(words) - 1}


def one_line_error(fn, *args) -> str:
    with pytest.raises(RippleError) as err:
        fn(*args)
    message = str(err.value)
    assert "\n" not in message
    return message


# --- format -------------------------------------------------------------------------------------

def linked_items() -> list[ProbeItem]:
    return [ProbeItem("fr", "France", "capital", "The capital of {} is", "Paris", ("French Republic",),
                      (ProbeLink("paris", "object_is_subject"),)),
            ProbeItem("paris", "Paris", "located_in", "{} is located in the country of", "France")]


def test_round_trip_keeps_items_and_order_and_is_deterministic(tmp_path):
    items = linked_items()[::-1]
    save_probe_set(items, tmp_path / "a.jsonl")
    save_probe_set(load_probe_set(tmp_path / "a.jsonl"), tmp_path / "b.jsonl")
    assert load_probe_set(tmp_path / "a.jsonl") == items
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    first, second = (json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines())
    assert "aliases" not in first and "links" not in first  # empty optional fields are left out
    assert second["links"] == [{"to": "paris", "type": "object_is_subject"}]
    assert items[1].rendered == "The capital of France is"


GOOD = '{"id": "x", "subject": "A", "relation": "r", "prompt": "{} is", "answer": "B"}'


@pytest.mark.parametrize("lines, expected", [
    ([GOOD, "{not json"], ":2: invalid JSON"),
    ([GOOD.replace('"answer": "B"', '"answer2": "B"')], "unknown field 'answer2'"),
    ([GOOD.replace(', "answer": "B"', "")], ":1: missing field 'answer'"),
    ([GOOD, "", GOOD], ":3: duplicate id 'x' (first at"),
    ([GOOD[:-1] + ', "links": [{"to": "y", "type": "same_subject"}]}'], "links to unknown id 'y'"),
    ([GOOD.replace("{} is", "A is")], "must contain '{}' exactly once"),
    ([GOOD.replace("{} is", "{} and {} is")], "must contain '{}' exactly once"),
    ([GOOD.replace('"B"', "3")], "field 'answer' must be a non-empty string"),
    ([GOOD[:-1] + ', "aliases": "C"}'], "'aliases' must be a list"),
    ([GOOD[:-1] + ', "links": [{"to": "x"}]}'], "'links' must be a list of"),
    (["[1, 2]"], "expected a JSON object"),
    (["", "  "], "has no items"),
])
def test_load_errors_are_one_line_with_the_line_number(tmp_path, lines, expected):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    message = one_line_error(load_probe_set, path)
    assert expected in message and str(path) in message


def test_missing_file_and_bad_set_on_save(tmp_path):
    assert "does not exist" in one_line_error(load_probe_set, tmp_path / "nope.jsonl")
    broken = [linked_items()[0]]
    assert "links to unknown id 'paris'" in one_line_error(save_probe_set, broken, tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()


# --- the world's probe set ----------------------------------------------------------------------

def test_world_probe_set_one_item_per_fact_with_correct_links(world):
    items = world_probe_set(world)
    by_id = {item.id: item for item in items}
    assert len(items) == len(by_id) == len(world.facts)
    assert all(link.to in by_id for item in items for link in item.links)

    person = world.persons[0]
    (born,) = [f for f in world.facts if f.subject == person.id and f.relation == "born_in"]
    item = by_id[f"{person.id}|born_in|{born.object}"]
    assert item.subject == person.name and item.aliases == person.aliases
    assert item.prompt == "{} was born in" and item.answer == world.name(born.object)
    links = {kind: [link.to for link in item.links if link.type == kind] for kind in
             ("same_subject", "object_is_subject", "same_object", "inverse")}
    own = [f"{f.subject}|{f.relation}|{f.object}" for f in world.facts if f.subject == person.id]
    assert sorted(links["same_subject"]) == sorted(set(own) - {item.id})
    assert len(links["same_subject"]) == len(own) - 1
    city_facts = [f"{f.subject}|{f.relation}|{f.object}" for f in world.facts if f.subject == born.object]
    assert links["object_is_subject"] == city_facts and city_facts
    born_there = [s for s in scan(world, relation="born_in", obj=born.object) if s != person.id]
    assert links["same_object"] == [f"{s}|born_in|{born.object}" for s in born_there][:10]
    assert links["inverse"] == []

    (spouse,) = scan(world, person.id, "married_to")
    married = by_id[f"{person.id}|married_to|{spouse}"]
    assert [link.to for link in married.links if link.type == "inverse"] == [f"{spouse}|married_to|{person.id}"]
    capital = next(i for i in items if i.relation == "capital")
    country, _, city = capital.id.split("|")
    assert ProbeLink(f"{city}|located_in|{country}", "inverse") in capital.links
    assert ProbeLink(capital.id, "inverse") in by_id[f"{city}|located_in|{country}"].links


# --- the bundled probe sets ---------------------------------------------------------------------

def test_bundled_probe_sets_are_valid_and_linked():
    sizes = {}
    for name in ("organism", "real_world"):
        items = load_probe_set(ROOT / "probes" / f"{name}.jsonl")  # unique ids, links resolve
        by_id = {item.id: item for item in items}
        assert len(by_id) == len(items)
        assert all(item.prompt.count("{}") == 1 for item in items)
        for item in items:
            for link in item.links:
                target = by_id[link.to]
                if link.type == "object_is_subject":
                    assert target.subject == item.answer
                if link.type == "same_subject":
                    assert target.subject == item.subject
        sizes[name] = len(items)
    assert sizes["real_world"] >= 300
    real = {item.subject: item for item in load_probe_set(ROOT / "probes" / "real_world.jsonl")}
    assert {"USA", "United States of America"} <= set(real["United States"].aliases)
    assert "Einstein" in real["Albert Einstein"].aliases


def test_bundled_probe_sets_are_up_to_date():
    from benchmarks.probes import make_sets as make
    from ripple.organism.evaluate import load_world

    for name, built in [("real_world", make.real_world_probe_set()), ("organism", world_probe_set(load_world()))]:
        fresh = load_probe_set(ROOT / "probes" / f"{name}.jsonl") == built
        assert fresh, f"probes/{name}.jsonl is stale; rebuild it with python -m benchmarks probes/make_sets"


# --- record() -----------------------------------------------------------------------------------

@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_record_equals_hf_hidden_states(tiny_model, tiny_tokenizer, model_type):
    model, items = tiny_model(model_type), tiny_items()
    spec = get_spec(model)
    got = record(model, tiny_tokenizer, spec, items, batch_size=2)
    want = plain_hidden_states(model, tiny_tokenizer, items, batch_size=2)
    assert got.ids == want.ids == tuple(item.id for item in items)
    last = spec.depth - 1
    assert got.sites == tuple(f"blocks.{i}.out@{p}" for i in range(spec.depth) for p in ("subject_last", "last"))
    final_norm = get_module(model, spec.final_norm)
    for p in ("subject_last", "last"):
        for i in range(last):
            torch.testing.assert_close(got[f"blocks.{i}.out@{p}"], want[f"blocks.{i}.out@{p}"])
        with torch.no_grad():
            torch.testing.assert_close(final_norm(got[f"blocks.{last}.out@{p}"]), want[f"final_norm@{p}"])


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_mlp_key_and_out_equal_hand_hooks_on_unpadded_prompts(tiny_model, tiny_tokenizer, model_type):
    model, items = tiny_model(model_type), tiny_items()
    spec = get_spec(model)
    got = record(model, tiny_tokenizer, spec, items, sites=("mlp.key", "mlp.out"), layers=[1], batch_size=3)
    for row, item in enumerate(items):
        key, _ = hooked_io(model, MLP_OUT[model_type].format(1), word_ids(item.rendered))
        _, out = hooked_io(model, spec.block(1, spec.mlp), word_ids(item.rendered))
        for p, at in hand_positions(item).items():
            torch.testing.assert_close(got[f"blocks.1.mlp.key@{p}"][row], key[0, at])
            torch.testing.assert_close(got[f"blocks.1.mlp.out@{p}"][row], out[0, at])


def test_streaming_gives_the_in_memory_tensors(tiny_model, tiny_tokenizer, tmp_path):
    model, items = tiny_model("gpt2"), tiny_items()
    kwargs = dict(sites=("out", "mlp.key"), layers=[0], positions=("subject_first", "last"), batch_size=2)
    in_memory = record(model, tiny_tokenizer, None, items, **kwargs)
    streamed = record(model, tiny_tokenizer, None, items, stream_to=tmp_path / "s", **kwargs)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [f"chunk_0000{i}.safetensors" for i in range(3)]
    assert streamed.sites == in_memory.sites and streamed.ids == in_memory.ids
    for site in in_memory:
        assert torch.equal(streamed[site], in_memory[site])
    assert "already holds chunk" in one_line_error(record, model, tiny_tokenizer, None, items,
                                                   ("out",), None, ("last",), 2, tmp_path / "s")


def test_record_leaves_weights_mode_rng_and_hooks_untouched(tiny_model, tiny_tokenizer):
    model = tiny_model("gpt2").train()
    model.transformer.h[0].eval()  # a mixed mode must come back exactly as it was
    modes = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    got = record(model, tiny_tokenizer, None, tiny_items(), sites=("out", "mlp.key"))
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    again = record(model.eval(), tiny_tokenizer, None, tiny_items(), sites=("out", "mlp.key"))
    assert all(torch.equal(got[s], again[s]) for s in got)  # no dropout was applied


@pytest.mark.parametrize("kwargs, expected", [
    (dict(sites=("resid",)), "unknown site kind 'resid'"),
    (dict(positions=("middle",)), "unknown position 'middle'"),
    (dict(layers=[7]), "layer 7 is out of range"),
    (dict(batch_size=0), "batch_size must be at least 1"),
])
def test_record_errors_are_one_line(tiny_model, tiny_tokenizer, kwargs, expected):
    assert expected in one_line_error(lambda: record(tiny_model("gpt2"), tiny_tokenizer, None, tiny_items(), **kwargs))
    assert "no probe items" in one_line_error(lambda: record(tiny_model("gpt2"), tiny_tokenizer, None, []))


# --- the activation cache -----------------------------------------------------------------------

def small_cache(seed=0, ids=("a", "b", "c")) -> ActivationCache:
    g = torch.Generator().manual_seed(seed)
    return ActivationCache({"blocks.10.out@last": torch.randn(3, 4, generator=g),
                            "blocks.2.mlp.key@subject_last": torch.randn(3, 8, generator=g)}, ids)


def test_cache_save_load_round_trip_keeps_site_order_and_ids(tmp_path):
    cache = small_cache()
    cache.save(tmp_path / "c.safetensors")
    back = ActivationCache.load(tmp_path / "c.safetensors")
    assert back.sites == ("blocks.10.out@last", "blocks.2.mlp.key@subject_last") and back.ids == cache.ids
    assert all(torch.equal(back[s], cache[s]) and back[s].dtype == torch.float32 for s in cache)
    assert back.n_items == 3 and len(back) == 2
    assert "does not exist" in one_line_error(ActivationCache.load, tmp_path / "none.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    assert "not a ripple activation cache" in one_line_error(ActivationCache.load, tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    assert "cannot read activation cache" in one_line_error(ActivationCache.load, tmp_path / "junk.safetensors")


def test_concat_stacks_rows_and_ids():
    a, b = small_cache(0, ("a", "b", "c")), small_cache(1, ("d", "e", "f"))
    both = ActivationCache.concat([a, b])
    assert both.ids == tuple("abcdef") and both.n_items == 6
    assert torch.equal(both["blocks.10.out@last"][3:], b["blocks.10.out@last"])
    other = ActivationCache({"blocks.0.out@last": torch.zeros(1, 4)})
    assert "differ in their sites" in one_line_error(ActivationCache.concat, [a, other])
    assert "[n_items, hidden]" in one_line_error(ActivationCache, {"x": torch.zeros(2, 3), "y": torch.zeros(3, 3)})


def test_diff_identical_is_zero_and_a_hand_pair_is_right():
    cache = small_cache()
    for d in cache.diff(small_cache()).values():
        assert torch.count_nonzero(d["cosine_distance"]) == 0 and torch.count_nonzero(d["relative_l2"]) == 0
    a = ActivationCache({"s": torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])})
    b = ActivationCache({"s": torch.tensor([[4.0, 3.0], [-2.0, 0.0], [0.0, 0.0], [1.0, 0.0]])})
    d = a.diff(b)["s"]
    # cos([3,4],[4,3]) = 24/25; |(-1,1)| / 5 = sqrt(2)/5; opposite directions: cos = -1, |3| / 1
    torch.testing.assert_close(d["cosine_distance"], torch.tensor([1 / 25, 2.0, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(d["relative_l2"], torch.tensor([2**0.5 / 5, 3.0, 0.0, float("inf")],
                                                             dtype=torch.float64))
    assert "different items" in one_line_error(small_cache(0).diff, small_cache(0, ("x", "y", "z")))
