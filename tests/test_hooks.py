"""Trace / TraceDict / SiteTrace against HF's own outputs and hand-made oracles.

Note on ``output_hidden_states``: in every supported architecture ``hidden_states[i + 1]`` is the
raw output of block ``i`` EXCEPT the last entry, which HF replaces by ``final_norm(last block)``.
So the last block's traced output is compared after passing it through the final norm (and it
must equal the final norm's input).
"""

import copy

import pytest
import torch

from ripple.arch import get_module, get_spec, mlp_out_param, weight_as_out_in
from ripple.errors import RippleError
from ripple.hooks import MlpGradProbe, SiteTrace, Trace, TraceDict
from ripple.modes import held

from helpers import ARCH_TYPES


def all_hooks_gone(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("model_type", ARCH_TYPES)
def test_block_outputs_match_hidden_states(tiny_model, token_ids, model_type):
    model = tiny_model(model_type)
    spec = get_spec(model)
    last = spec.depth - 1
    sites = [f"blocks.{i}.out" for i in range(spec.depth)] + ["final_norm", "unembed", "embed"]
    with SiteTrace(model, spec, sites) as st, Trace(model, spec.final_norm, retain_input=True) as norm:
        out = model(token_ids, output_hidden_states=True)
    hidden = out.hidden_states
    assert len(hidden) == spec.depth + 1
    for i in range(last):
        torch.testing.assert_close(st[f"blocks.{i}.out"], hidden[i + 1])
    torch.testing.assert_close(st[f"blocks.{last}.out"], norm.input)
    final_norm = get_module(model, spec.final_norm)
    torch.testing.assert_close(final_norm(st[f"blocks.{last}.out"]), hidden[-1])
    torch.testing.assert_close(st["final_norm"], hidden[-1])
    torch.testing.assert_close(st["unembed"], out.logits)
    if model_type == "gpt2":  # gpt2's token embedding excludes the learned position embedding
        positions = model.transformer.wpe(torch.arange(token_ids.shape[1]))
        torch.testing.assert_close(st["embed"] + positions, hidden[0])
    else:
        torch.testing.assert_close(st["embed"], hidden[0])


@pytest.mark.parametrize("model_type", ARCH_TYPES)
def test_attention_tuple_is_unwrapped(tiny_model, token_ids, model_type):
    """HF attention modules return ``(output, weights_or_None)``; llama-family ones get kwargs only."""
    model = tiny_model(model_type)
    spec = get_spec(model)
    shape = (*token_ids.shape, model.config.hidden_size)
    with SiteTrace(model, spec, ["blocks.0.attn.out"]) as st, \
            Trace(model, spec.block(0, spec.attn), retain_input=True) as attn:
        model(token_ids)
    assert isinstance(st["blocks.0.attn.out"], torch.Tensor)
    assert st["blocks.0.attn.out"].shape == attn.input.shape == shape


@pytest.mark.parametrize("model_type", ARCH_TYPES)
def test_zeroing_mlp_output_equals_zeroing_its_projection(tiny_model, token_ids, model_type):
    model = tiny_model(model_type)
    spec = get_spec(model)
    zeroed = copy.deepcopy(model)
    proj = get_module(zeroed, spec.block(1, spec.mlp_out))
    with torch.no_grad():
        proj.weight.zero_()
        if proj.bias is not None:
            proj.bias.zero_()
        expected = zeroed(token_ids).logits
        with Trace(model, spec.block(1, spec.mlp), edit_output=lambda out, name: torch.zeros_like(out)) as t:
            edited = model(token_ids).logits
        plain = model(token_ids).logits
    torch.testing.assert_close(edited, expected)
    assert not torch.allclose(plain, expected)
    assert torch.count_nonzero(t.output) == 0


class Pair(torch.nn.Module):
    def forward(self, x):
        return x * 2, "extra"


class Chain(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pair = Pair()
        self.after = torch.nn.Identity()

    def forward(self, x):
        y, tag = self.pair(x)
        return self.after(y), tag


def test_edit_replaces_element_zero_and_keeps_rest_of_tuple():
    net = Chain()
    seen = []
    with Trace(net, "pair", retain_input=True, edit_output=lambda out, name: seen.append(name) or out + 1) as t:
        y, tag = net(torch.ones(3))
    assert seen == ["pair"] and tag == "extra"
    torch.testing.assert_close(y, torch.full((3,), 3.0))
    torch.testing.assert_close(t.output, y)
    torch.testing.assert_close(t.input, torch.ones(3))


def test_edit_returning_none_keeps_in_place_edit():
    net = Chain()
    with Trace(net, "pair", edit_output=lambda out, name: out.mul_(0)):
        y, _ = net(torch.ones(3))
    assert torch.count_nonzero(y) == 0


def test_detach_and_clone():
    lin = torch.nn.Sequential(torch.nn.Linear(4, 4))
    x = torch.ones(1, 4)
    with Trace(lin, "0", detach=False) as kept, Trace(lin, "0", clone=True) as copied:
        y = lin(x)
    assert kept.output.requires_grad and kept.output is y
    assert not copied.output.requires_grad and copied.output.data_ptr() != y.data_ptr()


def count_calls(module):
    calls = []
    return calls, module.register_forward_hook(lambda *args: calls.append(1))


def test_stop_ends_forward_after_the_module(tiny_model, token_ids):
    model = tiny_model("llama")
    calls, handle = count_calls(model.model.layers[1])
    try:
        with Trace(model, "model.layers.0", stop=True) as t:
            result = model(token_ids)
            pytest.fail(f"forward should have stopped, got {type(result)}")
    finally:
        handle.remove()
    assert calls == [] and t.output is not None
    assert all_hooks_gone(model)


def test_tracedict_stops_after_last_layer_to_fire(tiny_model, token_ids):
    model = tiny_model("gpt2")
    calls, handle = count_calls(model.transformer.ln_f)
    layers = ["transformer.h.1", "transformer.h.0.mlp"]  # listed out of execution order
    try:
        with TraceDict(model, layers, stop=True) as td:
            model(token_ids)
    finally:
        handle.remove()
    assert calls == []
    assert all(td[name].output is not None for name in layers)
    assert all_hooks_gone(model)


def test_site_trace_stop_returns_sites_reached(tiny_model, token_ids):
    model = tiny_model("gpt_neox")
    with SiteTrace(model, None, ["blocks.0.mlp.key", "blocks.0.out"], stop=True) as st:
        model(token_ids)
    assert st["blocks.0.mlp.key"].shape[-1] == model.config.intermediate_size
    assert st["blocks.0.out"].shape[-1] == model.config.hidden_size


@pytest.mark.parametrize("make", [
    lambda m: Trace(m, "model.layers.0.mlp", retain_input=True),
    lambda m: TraceDict(m, ["model.layers.0.mlp", "model.norm"], retain_input=True),
    lambda m: SiteTrace(m, None, ["blocks.1.mlp.key", "blocks.0.out"]),
])
def test_hooks_removed_on_normal_exit_and_on_exception(tiny_model, token_ids, make):
    model = tiny_model("mistral")
    with make(model):
        assert not all_hooks_gone(model)
        model(token_ids)
    assert all_hooks_gone(model)
    with pytest.raises(ValueError, match="boom"):
        with make(model):
            model(token_ids)
            raise ValueError("boom")
    assert all_hooks_gone(model)


@pytest.mark.parametrize("make, expected", [
    (lambda m: Trace(m, "model.layers.0.mpl"), r"did you mean 'model\.layers\.0\.mlp'"),
    (lambda m: TraceDict(m, ["model.layers.0.mlp", "model.nrom"]), "no module named 'model.nrom'"),
    (lambda m: SiteTrace(m, None, ["blocks.0.out", "blocks.7.out"]), r"valid layers: 0\.\.1"),
    (lambda m: SiteTrace(m, None, ["blocks.0.resid"]), "unknown site 'blocks.0.resid'"),
])
def test_bad_names_raise_before_any_hook(tiny_model, make, expected):
    model = tiny_model("qwen2")
    with pytest.raises(RippleError, match=expected):
        make(model)
    assert all_hooks_gone(model)


@pytest.mark.parametrize("model_type", ARCH_TYPES)
def test_mlp_grad_probe_gives_the_weight_gradient(tiny_model, token_ids, model_type):
    """Σ_t g_t k_tᵀ from the probe's keys and output gradients equals autograd's gradient of the
    same loss with respect to the projection's weight, and the forward pass is unchanged."""
    model = tiny_model(model_type)
    spec = get_spec(model)
    layers = [spec.depth - 1, 0]
    with torch.no_grad():
        plain = model(token_ids).logits
    weights = [dict(model.named_parameters())[mlp_out_param(spec, layer)] for layer in layers]
    with held(model, trainable=weights), MlpGradProbe(model, spec, layers) as gp:
        logits = model(token_ids).logits
        loss = logits[:, -1].log_softmax(-1)[:, 3].sum() + logits[:, 1, 5].sum()
        got = torch.autograd.grad(loss, gp.zeros() + weights)
    torch.testing.assert_close(logits.detach(), plain)
    for i, layer in enumerate(layers):
        g, k = got[i], gp.key(layer)
        assert g.shape[:2] == k.shape[:2] == token_ids.shape
        expected = weight_as_out_in(got[len(layers) + i], spec)
        torch.testing.assert_close(torch.einsum("bto,bti->oi", g, k), expected, rtol=1e-4, atol=1e-6)
        assert expected.abs().max() > 0
    assert all_hooks_gone(model)


def test_mlp_grad_probe_names_a_layer_that_did_not_run(tiny_model, token_ids):
    model = tiny_model("gpt2")
    spec = get_spec(model)
    with MlpGradProbe(model, spec, [0]) as gp:
        pass
    with pytest.raises(RuntimeError, match="layer 0 did not run"):
        gp.zeros()
