"""The unedited probe states cached on disk: read back exactly, keyed by weights, items and layers,
measured apart from the edit's own items on both sides, and an audit that reads them writes the
report that one measuring them wrote."""

import json

import pytest
import torch

from ripple.arch import get_spec
from ripple.editing.context import EditContext
from ripple.gie.measure import measure_items
from ripple.gie.pipeline import ItemProbe
from ripple.gie.state_cache import cached_states, concat_states, state_path
from ripple.probes.sets import ProbeItem

from helpers import make_tiny_model, make_tiny_tokenizer, stats_corpus, tiny_probe_items


def same_state(a, b):
    assert a.ids == b.ids and a.greedy == b.greedy and a.correct == b.correct
    assert torch.equal(a.logp, b.logp)
    assert a.layers == b.layers and a.positions == b.positions
    for layer in a.layers:
        assert torch.equal(a.reps[layer], b.reps[layer]) and torch.equal(a.last[layer], b.last[layer])


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("RIPPLE_CACHE", str(tmp_path / "cache"))
    model, tok = make_tiny_model("gpt2"), make_tiny_tokenizer()
    return model, tok, get_spec(model), tiny_probe_items()


def test_a_cached_state_is_read_back_exactly_and_written_once(setup, tmp_path):
    model, tok, spec, items = setup
    measured = measure_items(model, tok, spec, items)
    first = cached_states(model, tok, spec, items)
    files = list((tmp_path / "cache" / "probe_states").iterdir())
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    second = cached_states(model, tok, spec, items)
    assert files[0].stat().st_mtime_ns == stamp  # read, not written again
    same_state(first, measured)
    same_state(second, measured)


def test_other_weights_items_or_layers_are_other_entries(setup):
    model, tok, spec, items = setup
    base = state_path(model, tok, items, None)
    assert state_path(model, tok, items[:-1], None) != base
    assert state_path(model, tok, items, [0]) != base
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    assert state_path(model, tok, items, None) != base


def test_a_damaged_cache_file_is_measured_again(setup):
    model, tok, spec, items = setup
    path = state_path(model, tok, items, None)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a safetensors file")
    same_state(cached_states(model, tok, spec, items), measure_items(model, tok, spec, items))


def test_the_edits_own_items_are_measured_apart_on_both_sides(setup):
    model, tok, spec, items = setup
    extra = ProbeItem("edit-1:w40", "w40", "edited", "{} w20 w21", "w60")
    ctx = EditContext(model, tok, spec, stats_corpus())
    probe = ItemProbe(ctx, [*items, extra], cached=len(items))
    before = probe.before()
    after = probe.after(None).state  # nothing changed: both sides batch the rows alike, so equal
    same_state(before, after)
    same_state(before, concat_states([measure_items(model, tok, spec, items), measure_items(model, tok, spec, [extra])]))
    assert before.ids[-1] == extra.id


def test_an_audit_reading_the_cache_reports_what_the_first_one_measured(tiny_inputs, tmp_path):
    from ripple.cli import main

    path, edit, probes, corpus = tiny_inputs
    reports = []
    for run in ("a", "b"):
        out = tmp_path / run
        code = main(["audit", "--model", str(path), "--method", "rome", "--edit", str(edit), "--probes", str(probes),
                     "--stats-corpus", str(corpus), "--out", str(out), "--set", "v_steps=2", "layers=0", "--no-chat", "--force"])
        assert code in (0, 1)
        reports.append(json.loads((out / "report.json").read_text()))
    assert len(list((tmp_path / "cache" / "probe_states").iterdir())) == 1
    for report in reports:
        report.pop("created", None)
    assert json.dumps(reports[0], sort_keys=True) == json.dumps(reports[1], sort_keys=True)
