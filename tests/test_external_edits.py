"""Edits made elsewhere (ripple.editing.external): a checkpoint, ripple's delta file and tensor files
(new weights or differences) become an EditDelta whose sum with the base is the edited model, bit
for bit; every bad input is one line."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from ripple.editing.delta import EditDelta
from ripple.editing.external import load_edited
from ripple.errors import RippleError

from helpers import make_tiny_model

MLP = "transformer.h.1.mlp.c_proj.weight"
ATTN = "transformer.h.0.attn.c_attn.weight"
NORM = "transformer.ln_f.weight"


@pytest.fixture
def pair():
    """The base and an edited copy: a rank-one MLP change, an attention change and a norm change
    (the kinds an external tool may touch), made by hand."""
    base = make_tiny_model("gpt2")
    edited = make_tiny_model("gpt2")
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        p = dict(edited.named_parameters())
        w = p[MLP]
        p[MLP].add_(torch.outer(torch.randn(w.shape[0], generator=g), torch.randn(w.shape[1], generator=g)) * 0.1)
        p[ATTN].mul_(1.01)
        p[NORM].add_(0.5)
    return base, edited


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _assert_recovers(base, edited, delta):
    """Applying ``delta`` to ``base`` gives ``edited``'s weights exactly, and restores ``base`` exactly."""
    before, want = _weights(base), _weights(edited)
    with delta.applied(base):
        got = _weights(base)
        assert all(torch.equal(got[n], want[n]) for n in want), "base + delta is not the edited model"
    assert all(torch.equal(v, dict(base.named_parameters())[n]) for n, v in before.items())


def test_a_checkpoint_becomes_the_changed_tensors_only(pair, tmp_path):
    base, edited = pair
    edited.save_pretrained(tmp_path / "edited", safe_serialization=True)
    delta = load_edited(base, tmp_path / "edited")
    assert sorted(delta.deltas) == sorted([MLP, ATTN, NORM])
    wb, we = _weights(base), _weights(edited)
    for name, d in delta.deltas.items():  # exactly edited - base, computed here independently
        assert torch.equal(d, we[name] - wb[name])
    source = delta.info["source"]
    assert source["kind"] == "checkpoint" and source["changed"] == 3 and set(source["norms"]) == set(delta.deltas)
    _assert_recovers(base, edited, delta)


def test_an_unchanged_checkpoint_gives_an_empty_delta(tmp_path):
    base = make_tiny_model("gpt2")
    base.save_pretrained(tmp_path / "same", safe_serialization=True)
    delta = load_edited(base, tmp_path / "same")
    assert delta.deltas == {} and delta.info["source"]["changed"] == 0


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("stored", ["weights", "diff"])
def test_a_tensor_file_of_weights_or_differences_is_recognised(pair, tmp_path, suffix, stored):
    base, edited = pair
    wb, we = _weights(base), _weights(edited)
    tensors = {n: (we[n] if stored == "weights" else we[n] - wb[n]).contiguous() for n in (MLP, ATTN, NORM)}
    path = tmp_path / f"edit{suffix}"
    save_file(tensors, str(path)) if suffix == ".safetensors" else torch.save(tensors, path)
    delta = load_edited(base, path)
    assert delta.info["source"]["kind"] == stored  # detected, and said
    if stored == "weights":
        _assert_recovers(base, edited, delta)
    else:
        assert all(torch.equal(delta.deltas[n], tensors[n]) for n in tensors)
    assert sorted(delta.deltas) == sorted(tensors)


def test_ripples_own_delta_file_is_read_as_it_is(pair, tmp_path):
    base, _ = pair
    d = EditDelta("rome", {MLP: torch.full(dict(base.named_parameters())[MLP].shape, 0.01)}, info={"x": 1})
    d.save(tmp_path / "delta.safetensors")
    got = load_edited(base, tmp_path / "delta.safetensors")
    assert got.method == "rome" and torch.equal(got.deltas[MLP], d.deltas[MLP]) and got.info["x"] == 1
    assert got.info["source"]["kind"] == "ripple delta (rome)" and got.info["source"]["changed"] == 1


def _bad(tmp_path, tensors, name="bad.safetensors"):
    save_file(tensors, str(tmp_path / name))
    return tmp_path / name


@pytest.mark.parametrize("case, match", [
    ("unknown", "names 1 parameter\\(s\\) the base lacks"),
    ("shape", "has shape \\(3, 3\\) but the base's is"),
    ("nan", "holds NaN or infinite values"),
])
def test_bad_tensor_files_are_one_line_errors(tmp_path, case, match):
    base = make_tiny_model("gpt2")
    w = dict(base.named_parameters())[MLP].detach().clone()
    tensors = {"unknown": {"transformer.h.9.mlp.c_proj.weight": w}, "shape": {MLP: torch.zeros(3, 3)},
               "nan": {MLP: w.clone().fill_(float("nan"))}}[case]
    before = _weights(base)
    with pytest.raises(RippleError, match=match) as err:
        load_edited(base, _bad(tmp_path, tensors))
    assert "\n" not in str(err.value)
    assert all(torch.equal(v, dict(base.named_parameters())[n]) for n, v in before.items())


def test_other_bad_inputs_are_one_line_errors(tmp_path):
    base = make_tiny_model("gpt2")
    other = make_tiny_model("llama")
    other.save_pretrained(tmp_path / "llama", safe_serialization=True)
    with pytest.raises(RippleError, match="is a llama checkpoint but the base is gpt2"):
        load_edited(base, tmp_path / "llama")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(RippleError, match="adapter .* does not fit this base"):
        load_edited(base, tmp_path / "adapter")
    with pytest.raises(RippleError, match="does not exist"):
        load_edited(base, tmp_path / "nowhere")
    (tmp_path / "junk.pt").write_bytes(b"not a tensor file")
    with pytest.raises(RippleError, match="cannot read tensors from"):
        load_edited(base, tmp_path / "junk.pt")
    with pytest.raises(RippleError, match="unknown kind"):
        load_edited(base, tmp_path / "junk.pt", kind="sum")


# --- PEFT adapters ------------------------------------------------------------------------------------

def _lora(model, path, r=2, targets=("c_proj",), seed=0):
    """A LoRA adapter on ``model`` with random (non-zero) B, saved to ``path``; returns the merged
    weights peft computes on a separate copy (the independent expectation)."""
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    wrapped = get_peft_model(copy.deepcopy(model), LoraConfig(r=r, lora_alpha=4, target_modules=list(targets),
                                                              fan_in_fan_out=True, init_lora_weights=False))
    wrapped.save_pretrained(path)
    return _weights(wrapped.merge_and_unload())


def test_a_lora_adapter_is_merged_on_a_copy_and_becomes_its_difference(tmp_path):
    base = make_tiny_model("gpt2")
    before = _weights(base)
    merged = _lora(base, tmp_path / "lora", targets=("c_proj",))
    delta = load_edited(base, tmp_path / "lora")
    assert all(torch.equal(v, dict(base.named_parameters())[n]) for n, v in before.items())  # base untouched
    assert type(base).__name__ == "GPT2LMHeadModel" and not hasattr(base, "peft_config")
    changed = sorted(n for n in merged if not torch.equal(merged[n], before[n]))
    assert sorted(delta.deltas) == changed and changed  # the c_proj weights (attention and MLP) of each block
    for name in changed:
        assert torch.equal(delta.deltas[name], merged[name] - before[name])
    source = delta.info["source"]
    assert source["kind"] == "peft lora adapter" and source["adapter"]["r"] == 2


def test_an_adapter_for_another_base_is_a_one_line_error(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    wider = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=24, n_layer=2, n_head=2))
    wider.config.name_or_path = "someone/wider-gpt2"
    _lora(wider, tmp_path / "lora")
    base = make_tiny_model("gpt2")
    with pytest.raises(RippleError, match="does not fit this base") as err:
        load_edited(base, tmp_path / "lora")
    assert "\n" not in str(err.value)
