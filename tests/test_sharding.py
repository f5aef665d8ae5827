"""Models spread out by accelerate (``--device-map``). This machine has one device, so the map
puts every other block of the organism, and its final norm, on disk: those weights sit on the
``meta`` device and accelerate's hooks load them for each forward pass, which is the case that
breaks code assuming ``next(model.parameters())`` says where things are. Everything ripple
computes on it equals the same computation on the model in one piece: the forward pass, causal
tracing, probing, key statistics, every editor's delta (MEMIT's layers 3-5 include two on disk),
applying and restoring (bit-exact, snapshots on the CPU), the lm-eval bridge, and the CLI's
reports byte for byte. On a GPU machine the same tests run with blocks on ``cuda`` (the map then
uses device 0 where this one says ``cpu``)."""

import json
import os

import pytest
import torch

from ripple.causal_trace import causal_trace
from ripple.cli import main
from ripple.commands.options import max_memory
from ripple.devices import input_device, is_dispatched, param_value
from ripple.editing.dist_stats import second_moments
from ripple.editing.editor import get_editor
from ripple.editing.requests import parse_request
from ripple.editing.session import edited
from ripple.editing.setup import load_setup
from ripple.errors import RippleError
from ripple.evaluate.lm_eval_bridge import LmEvalBridge
from ripple.probes.record import record
from ripple.probes.sets import probe_items

FAST = "cuda" if torch.cuda.is_available() else "cpu"
#: blocks 1, 3, 4 and the final norm on disk; the rest on the fast device
MAP = {"transformer.wte": FAST, "transformer.wpe": FAST, "transformer.h.0": FAST, "transformer.h.1": "disk",
       "transformer.h.2": FAST, "transformer.h.3": "disk", "transformer.h.4": "disk", "transformer.h.5": FAST,
       "transformer.ln_f": "disk", "lm_head": FAST}
EDIT = {"prompt": "{} is a citizen of", "subject": "Treimair Mouzis", "target_new": "Noutusia"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The organism whole (on the fast device) and spread by :data:`MAP`, with their contexts."""
    old = os.environ.get("RIPPLE_CACHE")
    os.environ["RIPPLE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    whole = load_setup("organism", device=FAST)
    spread = load_setup("organism", device_map=MAP, offload_folder=str(tmp_path_factory.mktemp("offload")))
    yield whole, spread
    if old is None:
        os.environ.pop("RIPPLE_CACHE", None)
    else:
        os.environ["RIPPLE_CACHE"] = old


def test_offloaded_weights_are_on_meta_and_read_through_accelerate(pair):
    whole, spread = pair
    name = "transformer.h.3.mlp.c_proj.weight"
    assert is_dispatched(spread.model) and not is_dispatched(whole.model)
    assert spread.model.get_parameter(name).device.type == "meta"
    assert input_device(spread.model).type == FAST
    assert torch.equal(param_value(spread.model, name).to(FAST), whole.model.get_parameter(name))
    ids = torch.tensor([[5, 6, 7, 8]], device=FAST)
    torch.testing.assert_close(spread.model(ids).logits, whole.model(ids).logits, rtol=0, atol=1e-5)


def test_tracing_and_probing_equal_the_whole_model(pair):
    whole, spread = pair
    args = dict(prompt="{} was born in", subject="Brazouth Kaibour", samples=3, kinds=("hidden", "mlp", "attn"))
    a = causal_trace(whole.model, whole.tok, whole.spec, **args)
    b = causal_trace(spread.model, spread.tok, spread.spec, **args)
    assert a.answer == b.answer and a.p_clean == pytest.approx(b.p_clean, abs=1e-6)
    for kind in args["kinds"]:
        torch.testing.assert_close(a.effects[kind], b.effects[kind], rtol=0, atol=1e-5, equal_nan=True)
    items = probe_items(None, whole.world)[:40]
    ra = record(whole.model, whole.tok, whole.spec, items, sites=("out", "mlp.out"))
    rb = record(spread.model, spread.tok, spread.spec, items, sites=("out", "mlp.out"))
    assert set(ra) == set(rb) and len(ra) > 0
    for site in ra:
        torch.testing.assert_close(ra[site], rb[site], rtol=0, atol=1e-4)


def test_key_statistics_equal_the_whole_model(pair):
    whole, spread = pair
    corpus = whole.ctx.corpus[:60]
    a = second_moments(whole.model, whole.tok, whole.spec, [1, 3], corpus, 400, use_cache=False)
    b = second_moments(spread.model, spread.tok, spread.spec, [1, 3], corpus, 400, use_cache=False)
    for layer in (1, 3):
        torch.testing.assert_close(a[layer], b[layer], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", ["rome", "memit", "emmet", "alphaedit"])
@pytest.mark.slow
def test_every_editor_gives_the_same_delta_and_restores_bit_exactly(pair, method):
    whole, spread = pair
    out = {}
    for setup in (whole, spread):
        hp = setup.hparams_for(method)
        requests = setup.complete([parse_request(EDIT)])
        names = [n for n, _ in setup.model.named_parameters()]
        before = {n: param_value(setup.model, n).clone() for n in names}
        with edited(setup.ctx, method, requests, hp) as run:
            delta = run.total
            ids = torch.tensor([[5, 6, 7, 8]], device=FAST)
            logits = setup.model(ids).logits
            if setup is spread:  # the disk-offloaded layers MEMIT edits now give their edited values
                for name, d in delta.deltas.items():
                    torch.testing.assert_close(param_value(setup.model, name).cpu(), before[name].cpu() + d)
                assert all(t.device.type == "cpu" for t in run.snapshot.originals.values())
        for n in names:
            assert torch.equal(param_value(setup.model, n), before[n]), n
        out[setup is spread] = delta, logits
    (da, la), (db, lb) = out[False], out[True]
    assert da.deltas.keys() == db.deltas.keys()
    for name in da.deltas:
        torch.testing.assert_close(da.deltas[name], db.deltas[name], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(la, lb, rtol=0, atol=1e-4)


def test_lm_eval_bridge_equals_the_whole_model(pair):
    whole, spread = pair
    a = LmEvalBridge(whole.model, whole.tok, ["organism"], world=whole.world, limit=12).evaluate()
    b = LmEvalBridge(spread.model, spread.tok, ["organism"], world=spread.world, limit=12).evaluate()
    assert a.keys() == b.keys()
    for task in a:
        for metric, value in a[task].items():
            assert b[task][metric] == pytest.approx(value, abs=1e-6), (task, metric)


def test_fine_tuning_an_offloaded_weight_is_refused_in_one_line(pair):
    _, spread = pair
    hp = spread.hparams_for("ft", ["layers=(3,)"])
    before = param_value(spread.model, "transformer.h.3.mlp.c_proj.weight").clone()
    with pytest.raises(RippleError) as err:
        get_editor("ft").compute(spread.ctx, spread.complete([parse_request(EDIT)]), hp)
    assert "offloaded" in str(err.value) and "--max-memory" in str(err.value) and "\n" not in str(err.value)
    assert torch.equal(param_value(spread.model, "transformer.h.3.mlp.c_proj.weight"), before)


def _audit(out, *extra):
    return main(["audit", "--model", "organism", "--method", "memit", "--prompt", EDIT["prompt"],
                 "--subject", EDIT["subject"], "--target", EDIT["target_new"], "--out", str(out), *extra])


@pytest.mark.slow
def test_cli_audit_with_a_device_map_writes_the_same_report(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("RIPPLE_CACHE", str(tmp_path / "cache"))
    map_file = tmp_path / "map.json"
    map_file.write_text(json.dumps(MAP))
    device = ["--device", FAST]
    assert _audit(tmp_path / "whole", *device) == _audit(tmp_path / "spread", "--device-map", str(map_file))
    for name in ("report.json", "report.md"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "spread" / name).read_bytes()
    # accelerate's own plan: room for the embeddings and two blocks (6 MB), the rest on disk
    limit = "0=6MB,cpu=1MB" if FAST == "cuda" else "cpu=6MB"
    from ripple.loading import load_model

    placed = set(load_model("organism", device_map="auto", max_memory=max_memory(limit)).model.hf_device_map.values())
    assert "disk" in placed and len(placed) > 1, placed
    assert _audit(tmp_path / "auto", "--device-map", "auto", "--max-memory", limit) == 0
    assert (tmp_path / "whole" / "report.json").read_bytes() == (tmp_path / "auto" / "report.json").read_bytes()
    capfd.readouterr()


@pytest.mark.parametrize("args, needle", [
    (["--max-memory", "cpu=1GiB"], "--max-memory bounds a device map"),
    (["--device-map", "everywhere"], "--device-map: must be one of auto"),
    (["--device-map", "auto", "--max-memory", "cpu:1GiB"], "--max-memory: must be DEVICE=SIZE pairs"),
    (["--device-map", "auto", "--max-memory", "gpu=1GiB"], "--max-memory: must be DEVICE=SIZE pairs"),
    (["--device", "tpu9"], "unknown device"),
])
def test_bad_placement_is_one_line(tmp_path, capfd, args, needle):
    assert _audit(tmp_path / "bad", *args) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "bad").exists()


def test_a_bad_map_file_is_one_line(tmp_path, capfd):
    for text, needle in (("{not json", "not a readable JSON file"), ('["cpu"]', "JSON object of module name"),
                         (json.dumps(dict(MAP, **{"transformer.h.9": "cpu"})), "not a module of this gpt2 model"),
                         (json.dumps({k: v for k, v in MAP.items() if k != "lm_head"}), "places no module holding")):
        map_file = tmp_path / "map.json"
        map_file.write_text(text)
        assert _audit(tmp_path / "bad", "--device-map", str(map_file)) == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (text, err)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
@pytest.mark.parametrize("method", ["memit", "rome"])
def test_llama_and_gemma_with_a_block_and_the_final_norm_on_disk(tmp_path, model_type, method, tiny_tokenizer):
    """Gemma's MLP writes before a norm, which MEMIT's plan runs through (its weight read from the
    offload map); block 1 and the final norm on disk."""
    from ripple.arch import get_spec
    from ripple.editing.context import EditContext
    from ripple.editing.hparams import resolve_hparams
    from ripple.loading import load_model

    from helpers import edit_requests, make_tiny_model, stats_corpus

    make_tiny_model(model_type).save_pretrained(tmp_path / "m", safe_serialization=True)
    tiny_tokenizer.save_pretrained(tmp_path / "m")
    placement = {"model.embed_tokens": FAST, "model.rotary_emb": FAST, "model.layers.0": FAST,
                 "model.layers.1": "disk", "model.norm": "disk", "lm_head": FAST}
    layers = "(0,1)" if method == "memit" else "(1,)"
    hp = resolve_hparams(method, model_type, 2, overrides=["v_steps=3", "context_prefixes=2", "stats_samples=500",
                                                           f"layers={layers}", "fact_token=last"])
    reqs = edit_requests()[:1 if method == "rome" else 2]
    out = []
    for kwargs in ({"device": FAST}, {"device_map": placement, "offload_folder": str(tmp_path / "off")}):
        model, tok, spec = load_model(str(tmp_path / "m"), **kwargs)
        ctx = EditContext(model, tok, get_spec(model), stats_corpus(), use_disk_cache=False)
        names = [n for n, _ in model.named_parameters()]
        before = {n: param_value(model, n).clone() for n in names}
        with edited(ctx, method, reqs, hp, force=True) as run:
            logits = model(torch.tensor([[5, 6, 7]], device=FAST)).logits
        assert all(torch.equal(param_value(model, n), before[n]) for n in names)
        out.append((run.total, logits))
    assert model.get_parameter("model.layers.1.mlp.down_proj.weight").device.type == "meta"
    (da, la), (db, lb) = out
    for name in da.deltas:
        torch.testing.assert_close(da.deltas[name], db.deltas[name], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(la, lb, rtol=0, atol=1e-5)
