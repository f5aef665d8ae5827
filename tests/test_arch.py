"""The architecture table: every site resolves, orientation helpers reproduce the projection."""

from dataclasses import replace

import pytest
import torch

from ripple.arch import (
    ARCH_TABLE,
    fraction_to_layer,
    get_module,
    get_spec,
    mlp_out_weight,
    out_in_to_storage,
    resolve_site,
    site_names,
    weight_as_out_in,
)
from ripple.errors import RippleError
from ripple.hooks import SiteTrace, Trace

from helpers import ARCH_TYPES


def test_table_covers_exactly_the_supported_types():
    assert set(ARCH_TABLE) == set(ARCH_TYPES)


@pytest.mark.parametrize("model_type", ARCH_TYPES)
def test_every_site_and_field_resolves(tiny_model, model_type):
    model = tiny_model(model_type)
    spec = get_spec(model)
    modules = dict(model.named_modules())
    assert spec.model_type == model_type and spec.depth == spec.n_layers(model) == 2
    for site in site_names(spec):
        path, kind = resolve_site(spec, site)
        assert path in modules, (site, path)
        assert kind == ("input" if site.endswith("mlp.key") else "output")
    for field in ("mlp", "mlp_in", "mlp_out", "attn", "attn_out"):
        for layer in range(spec.depth):
            assert spec.block(layer, getattr(spec, field)) in modules
    for field in ("embed", "final_norm", "unembed"):
        assert getattr(spec, field) in modules
    assert modules[spec.unembed] is model.get_output_embeddings()


def test_get_spec_accepts_model_config_or_type(tiny_model):
    model = tiny_model("gpt2")
    assert get_spec(model) == get_spec(model.config)
    assert get_spec("gpt2").depth is None and get_spec(model).depth == 2
    assert get_spec("llama").mlp_out == "mlp.down_proj"


def test_unembed_falls_back_to_the_models_output_embeddings(tiny_model):
    """transformers < 5 names the gpt_neox head ``embed_out``; get_spec(model) follows the model."""
    model = tiny_model("gpt_neox")
    head = model.lm_head
    del model.lm_head
    model.embed_out = head
    model.get_output_embeddings = lambda: head
    assert get_spec(model).unembed == "embed_out" and get_spec(model.config).unembed == "lm_head"


def test_unknown_model_type_is_one_line_naming_supported():
    with pytest.raises(RippleError) as err:
        get_spec("bert")
    message = str(err.value)
    assert "\n" not in message and "'bert'" in message
    assert all(t in message for t in ARCH_TYPES)


@pytest.mark.parametrize("site, expected", [
    ("blocks.2.out", "valid layers: 0..1"),
    ("blocks.-1.mlp.key", "valid layers: 0..1"),
    ("blocks.0.mlp.value", "unknown site"),
    ("embedding", "unknown site"),
])
def test_bad_sites_raise(site, expected):
    spec = replace(get_spec("gpt2"), depth=2)
    with pytest.raises(RippleError, match=expected):
        resolve_site(spec, site)


def test_get_module_suggests_close_names(tiny_model):
    with pytest.raises(RippleError, match=r"did you mean 'transformer\.h\.0\.mlp'"):
        get_module(tiny_model("gpt2"), "transformer.h.0.mpl")


@pytest.mark.parametrize("model_type", ARCH_TYPES)
def test_key_times_weight_reproduces_mlp_out(tiny_model, token_ids, model_type):
    """Oracle: a hand matmul ``key @ W_oi.T + b`` equals the traced mlp_out (and whole MLP) output."""
    model = tiny_model(model_type)
    spec = get_spec(model)
    for layer in range(spec.depth):
        proj_path = spec.block(layer, spec.mlp_out)
        sites = [f"blocks.{layer}.mlp.key", f"blocks.{layer}.mlp.out"]
        with SiteTrace(model, spec, sites) as st, Trace(model, proj_path) as proj:
            model(token_ids)
        W_oi = weight_as_out_in(mlp_out_weight(model, spec, layer), spec)
        bias = get_module(model, proj_path).bias
        by_hand = st[sites[0]] @ W_oi.detach().T + (0 if bias is None else bias.detach())
        assert W_oi.shape == (model.config.hidden_size, st[sites[0]].shape[-1])
        torch.testing.assert_close(by_hand, proj.output)
        torch.testing.assert_close(by_hand, st[sites[1]])  # eval: MLP dropout is the identity


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_out_in_update_lands_in_storage(tiny_model, model_type):
    model = tiny_model(model_type)
    spec = get_spec(model)
    W = mlp_out_weight(model, spec, 1)
    delta = torch.randn(weight_as_out_in(W, spec).shape)
    before = weight_as_out_in(W, spec).detach().clone()
    with torch.no_grad():
        W += out_in_to_storage(delta, spec)
    torch.testing.assert_close(weight_as_out_in(W, spec).detach(), before + delta)
    with pytest.raises(RippleError, match="valid layers: 0..1"):
        mlp_out_weight(model, spec, 5)


def test_fraction_to_layer(tiny_model):
    model = tiny_model("qwen2")
    n = get_spec(model).n_layers(model)
    assert [fraction_to_layer(n, f) for f in (0.0, 0.4, 0.6, 1.0)] == [0, 0, 1, 1]
    assert fraction_to_layer(get_spec(model).n_layers(model), 1.0) == 1
    with pytest.raises(RippleError, match="outside"):
        fraction_to_layer(n, 1.5)
