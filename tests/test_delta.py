"""EditDelta and WeightSnapshot: bit-exact restore, all-or-nothing apply, hand oracles, save/load."""

import copy

import pytest
import torch

import ripple.editing.delta as delta_mod
from ripple.arch import get_spec, mlp_out_weight, out_in_to_storage, weight_as_out_in
from ripple.editing.delta import EditDelta, WeightSnapshot, snapshot_all
from ripple.editing.requests import EditRequest
from ripple.errors import RippleError

from helpers import assert_state, state

GPT2_MLP0 = "transformer.h.0.mlp.c_proj.weight"


def random_delta(model, scale=0.5, seed=0) -> EditDelta:
    """A delta on every parameter (``transformer.wte.weight`` and so the tied head too, for gpt2)."""
    g = torch.Generator().manual_seed(seed)
    return EditDelta("test", {n: scale * torch.randn(p.shape, generator=g) for n, p in model.named_parameters()})


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(RippleError) as err:
        fn(*args, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.fixture(params=["gpt2", "llama"])
def model(request, tiny_model):
    return tiny_model(request.param)


def test_apply_then_restore_is_bit_exact_twice(model):
    before = state(model)
    delta = random_delta(model)
    for _ in range(2):
        snapshot = delta.apply(model)
        for name, p in model.named_parameters():
            assert not torch.equal(p, before[name]), name
        snapshot.restore(model)
        assert_state(model, before)
    with pytest.raises(KeyError), delta.applied(model):
        raise KeyError("restored even when the block fails")
    assert_state(model, before)


def test_tied_gpt2_embedding_and_head_move_and_restore_together(tiny_model):
    model = tiny_model("gpt2")
    before = state(model)
    assert "lm_head.weight" in before
    wte = torch.randn(model.transformer.wte.weight.shape)
    for name in ("transformer.wte.weight", "lm_head.weight"):  # the alias names the same tensor
        with EditDelta("test", {name: wte}).applied(model):
            assert torch.equal(model.lm_head.weight, before["lm_head.weight"] + wte)
            assert torch.equal(model.transformer.wte.weight, model.lm_head.weight)
        assert_state(model, before)
    msg = one_line_error(EditDelta("test", {"transformer.wte.weight": wte, "lm_head.weight": wte}).apply, model)
    assert "same tied parameter" in msg
    assert_state(model, before)


def test_failing_apply_leaves_the_model_untouched(tiny_model, monkeypatch):
    model = tiny_model("gpt2")
    before = state(model)
    d = torch.ones(model.get_parameter(GPT2_MLP0).shape)
    msg = one_line_error(EditDelta("test", {GPT2_MLP0: d, "transformer.h.0.mlp.c_prj.weight": d}).apply, model)
    assert "'transformer.h.0.mlp.c_prj.weight'" in msg and f"did you mean '{GPT2_MLP0}'" in msg
    msg = one_line_error(EditDelta("test", {GPT2_MLP0: d, "transformer.h.1.mlp.c_proj.weight": d.T}).apply, model)
    assert "(32, 128)" in msg and "(128, 32)" in msg
    assert "NaN" in one_line_error(EditDelta("test", {GPT2_MLP0: d * float("nan")}).apply, model)
    assert_state(model, before)

    calls = []

    def fail_second(model, name, delta):  # a failure after the first weight was already written
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("device lost")
        model.get_parameter(name).add_(delta)

    monkeypatch.setattr(delta_mod, "add_into", fail_second)
    with pytest.raises(RuntimeError, match="device lost"):
        random_delta(model).apply(model)
    assert len(calls) == 2
    assert_state(model, before)


def test_logits_match_hand_edited_copy(model, token_ids):
    spec = get_spec(model)
    g = torch.Generator().manual_seed(3)
    W = mlp_out_weight(model, spec, 1)
    name = next(n for n, p in model.named_parameters() if p is W)
    update = torch.randn(weight_as_out_in(W, spec).shape, generator=g)  # an [out, in] update
    deltas = {name: out_in_to_storage(update, spec), spec.embed + ".weight": torch.randn(
        model.get_parameter(spec.embed + ".weight").shape, generator=g)}
    oracle = copy.deepcopy(model)
    with torch.no_grad():
        for n, d in deltas.items():
            oracle.get_parameter(n).data += d
    with torch.no_grad(), EditDelta("test", deltas).applied(model):
        edited = model(token_ids).logits
    with torch.no_grad():
        assert torch.equal(edited, oracle(token_ids).logits)
        assert not torch.equal(edited, model(token_ids).logits)


def test_deltas_are_float32_on_cpu_and_applied_in_the_parameter_dtype(tiny_model):
    model = tiny_model("llama").to(torch.bfloat16)
    name = "model.layers.0.mlp.down_proj.weight"
    d = torch.randn(model.get_parameter(name).shape, dtype=torch.float64)
    delta = EditDelta("test", {name: d})
    assert delta.deltas[name].dtype == torch.float32 and delta.deltas[name].device.type == "cpu"
    expected = model.get_parameter(name) + d.float().to(torch.bfloat16)
    with delta.applied(model):
        assert model.get_parameter(name).dtype == torch.bfloat16
        assert torch.equal(model.get_parameter(name), expected)


def test_snapshots_as_context_managers(tiny_model):
    model = tiny_model("llama")
    before = state(model)
    with torch.no_grad():
        with WeightSnapshot.take(model, ["model.norm.weight"]) as snap:
            model.model.norm.weight.mul_(3)
        assert snap.names == ["model.norm.weight"]
        backup = snapshot_all(model)
        for p in model.parameters():
            p.zero_()
    backup.restore()
    assert_state(model, before)
    assert "'model.nrom.weight'" in one_line_error(WeightSnapshot.take, model, ["model.nrom.weight"])


def test_norm_ratios_match_hand_computation_and_guard(tiny_model):
    model = tiny_model("gpt2")
    small, big = "transformer.h.0.mlp.c_fc.weight", GPT2_MLP0
    delta = EditDelta("rome", {small: 0.01 * model.get_parameter(small).detach(),
                               big: torch.full(model.get_parameter(big).shape, 0.5)})
    ratios = delta.norm_ratios(model)
    W = model.get_parameter(big).detach().double()
    assert ratios[small] == pytest.approx(0.01, rel=1e-5)
    assert ratios[big] == pytest.approx(0.5 * W.numel() ** 0.5 / W.pow(2).sum().sqrt().item(), rel=1e-5)
    assert ratios[big] > 1
    msg = one_line_error(delta.check_norms, model, max_ratio=1.0)
    assert big in msg and f"{ratios[big]:.3g}" in msg and "--force" in msg
    assert delta.check_norms(model, max_ratio=1.0, force=True) == ratios
    assert delta.check_norms(model, max_ratio=ratios[big]) == ratios


def test_save_load_round_trip(tmp_path, tiny_model):
    model = tiny_model("gpt2")
    req = EditRequest("{} w5 w6", "w3", "w9", target_true="w6", paraphrase_prompts=("w3 w7",), case_id="1")
    delta = random_delta(model)
    delta.requests, delta.hparams, delta.info = [req.to_dict()], {"layers": [1], "lam": 0.5}, {"seconds": 1.25}
    path = tmp_path / "edit.safetensors"
    for _ in range(2):  # the second save replaces the first
        delta.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["edit.safetensors"]  # no temp file left behind
    loaded = EditDelta.load(path)
    assert (loaded.method, loaded.requests, loaded.hparams, loaded.info) == (
        "test", [req.to_dict()], {"layers": [1], "lam": 0.5}, {"seconds": 1.25})
    assert loaded.deltas.keys() == delta.deltas.keys()  # safetensors stores names sorted
    assert all(torch.equal(loaded.deltas[n], d) for n, d in delta.deltas.items())


def test_save_and_load_errors(tmp_path):
    from safetensors.torch import save_file

    assert "does not exist" in one_line_error(EditDelta.load, tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    assert "not a ripple edit delta" in one_line_error(EditDelta.load, tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, tmp_path / "plain.safetensors")
    assert "no ripple_method" in one_line_error(EditDelta.load, tmp_path / "plain.safetensors")
    bad = EditDelta("test", {"w": torch.zeros(2)}, hparams={"dtype": torch.float16})
    assert "hparams" in one_line_error(bad.save, tmp_path / "bad.safetensors")
    assert "does not exist" in one_line_error(bad.save, tmp_path / "no" / "dir.safetensors")
    shared = torch.zeros(3)
    EditDelta("test", {"a": shared, "b": shared}).save(tmp_path / "shared.safetensors")
    assert set(EditDelta.load(tmp_path / "shared.safetensors").deltas) == {"a", "b"}


def test_combined_sums_deltas_and_concatenates_requests():
    a = EditDelta("rome", {"x": torch.ones(2, 2), "y": torch.ones(3)}, [{"subject": "A"}], {"lam": 1}, {"s": 1})
    b = EditDelta("rome", {"x": torch.full((2, 2), 2.0)}, [{"subject": "B"}], {"lam": 1}, {"s": 2})
    both = a.combined(b)
    assert torch.equal(both.deltas["x"], torch.full((2, 2), 3.0)) and torch.equal(both.deltas["y"], torch.ones(3))
    assert both.requests == [{"subject": "A"}, {"subject": "B"}]
    assert (both.method, both.hparams, both.info) == ("rome", {"lam": 1}, {"combined": [{"s": 1}, {"s": 2}]})
    assert torch.equal(a.deltas["x"], torch.ones(2, 2))  # the parts are unchanged
    assert "shapes" in one_line_error(a.combined, EditDelta("memit", {"y": torch.ones(4)}))
