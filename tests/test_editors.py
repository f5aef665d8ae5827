"""The editors end to end on tiny random models: what they touch, that computing never edits,
that ROME writes exactly its optimized vector, AlphaEdit's running key sums, atomic failure,
the norm guard, and how hyperparameters resolve."""

import dataclasses
import json

import pytest
import torch

from ripple.arch import SUPPORTED_MODEL_TYPES, get_spec
from ripple.editing.compute import context_templates, optimize_delta
from ripple.editing.editor import EDITORS, get_editor
from ripple.editing.hparams import resolve_hparams
from ripple.editing.session import run_edits
from ripple.errors import RippleError

from helpers import (
    MLP_OUT,
    SPREAD,
    assert_state,
    context,
    edit_requests,
    hooked_io,
    hparams,
    make_tiny_model,
    state,
    word_ids,
)

TWO_LAYERS = (*SPREAD, "rledit")


def requests_for(method):
    reqs = edit_requests()
    return reqs[:1] if method in ("rome", "ft") else reqs


def weight_names(model_type, layers):
    return [MLP_OUT[model_type].format(layer) + ".weight" for layer in layers]


@pytest.mark.parametrize("method", EDITORS.names())
@pytest.mark.parametrize("model_type", SUPPORTED_MODEL_TYPES)
def test_every_editor_on_every_architecture(model_type, method, tiny_tokenizer, tmp_path):
    model = make_tiny_model(model_type)
    before = state(model)
    ctx, reqs, hp = context(model, tiny_tokenizer), requests_for(method), hparams(method, model_type)
    if method == "rledit":  # an untrained hypernetwork for this model (a normalized gradient step)
        from ripple.rledit.hypernet import Hypernetwork

        Hypernetwork.build(model, ctx.spec, (0, 1), 8, 2, 1e-2, 0).save(tmp_path)
        hp = dataclasses.replace(hp, hypernet=str(tmp_path))
    planned = weight_names(model_type, (0, 1) if method in TWO_LAYERS else (0,))

    pure = get_editor(method).compute(ctx, reqs, hp)
    assert_state(model, before)  # computing an edit never changes the model
    assert sorted(pure.deltas) == planned
    for name in planned:
        assert pure.deltas[name].shape == before[name].shape and pure.deltas[name].abs().max() > 0, name

    run = run_edits(ctx, method, reqs, hp, force=True)
    now = state(model)
    for name, value in before.items():
        expected = value + run.total.deltas[name] if name in planned else value
        assert torch.equal(now[name], expected), name
    for name in planned:  # the same computation on the same model gives the same delta
        assert torch.equal(run.total.deltas[name], pure.deltas[name]), name
    run.snapshot.restore()
    assert_state(model, before)


def test_rome_moves_the_mlp_output_at_the_fact_token_by_its_optimized_vector(tiny_tokenizer):
    model = make_tiny_model("gpt2")
    req = edit_requests()[0]  # "w10 w11 w20 w21": the last subject token is position 1
    hp = hparams("rome", "gpt2", "v_steps=10", "context_prefixes=0")
    module = MLP_OUT["gpt2"].format(0)
    ids = word_ids(req.rendered)
    key, out_before = hooked_io(model, module, ids)
    # with no context prefixes k* is the bare prompt's key and ROME's v* is W k* + δ
    delta_v = optimize_delta(model, tiny_tokenizer, get_spec(model), req, "blocks.0.mlp.out", hp, ["{}"])["delta"]
    assert delta_v.norm() > 1e-3

    run = run_edits(context(model, tiny_tokenizer), "rome", [req], hp, force=True)
    key_after, out_after = hooked_io(model, module, ids)
    assert torch.equal(key_after, key)  # the key is upstream of the edited weight
    change = (out_after - out_before)[0, 1].double()
    assert torch.allclose(change, delta_v, atol=2e-6), (change - delta_v).abs().max()
    delta_oi = run.total.deltas[module + ".weight"].T.double()  # gpt2's Conv1D stores [in, out]
    assert torch.allclose(delta_oi @ key[0, 1].double(), delta_v, atol=2e-6)
    # the other positions move by Δ k_j, which is not δ (the check above is not vacuous)
    assert (out_after - out_before)[0, 0].double().sub(delta_v).norm() > 1e-4


def last_token_key(model, tok, module, text):
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    return hooked_io(model, module, ids)[0][0, -1].double()


def test_sequential_alphaedit_sums_the_outer_products_of_each_edits_keys(tiny_tokenizer):
    model = make_tiny_model("gpt2")
    reqs, hp = edit_requests(), hparams("alphaedit")
    ctx = context(model, tiny_tokenizer)
    run = run_edits(ctx, "alphaedit", reqs, hp, mode="sequential")
    assert len(run.deltas) == 2 and sorted(ctx.editor_state("alphaedit")) == [0, 1]

    oracle = make_tiny_model("gpt2")  # the same weights, edited here by hand one delta at a time
    contexts = context_templates(oracle, tiny_tokenizer, hp.context_prefixes, hp.prefix_tokens, hp.seed)
    assert len(contexts) == 3
    expected = {0: 0, 1: 0}
    for req, delta in zip(reqs, run.deltas):
        delta.apply(oracle)  # each edit's keys are those of the model it leaves behind
        for layer in expected:
            texts = [c.replace("{}", req.rendered) for c in contexts]  # fact_token=last: the last token
            k = torch.stack([last_token_key(oracle, tiny_tokenizer, MLP_OUT["gpt2"].format(layer), t)
                             for t in texts]).mean(0)
            expected[layer] = expected[layer] + torch.outer(k, k)
    for layer, outer in expected.items():
        assert torch.allclose(ctx.editor_state("alphaedit")[layer], outer, rtol=1e-5, atol=1e-9), layer


def test_alphaedit_decomposes_each_layers_statistics_once_per_context(tiny_tokenizer, monkeypatch):
    import ripple.editing.editors.alphaedit as alphaedit

    model = make_tiny_model("gpt2")
    reqs, hp = edit_requests(), hparams("alphaedit")
    fresh = [get_editor("alphaedit").compute(context(model, tiny_tokenizer), [r], hp) for r in reqs]
    calls = []
    real = alphaedit.null_space_projector
    monkeypatch.setattr(alphaedit, "null_space_projector", lambda C, t: calls.append(1) or real(C, t))
    ctx = context(model, tiny_tokenizer)
    shared = [get_editor("alphaedit").compute(ctx, [r], hp) for r in reqs]
    assert len(calls) == 2  # layers 0 and 1, for the first request only
    for a, b in zip(fresh, shared):
        assert all(torch.equal(a.deltas[k], b.deltas[k]) for k in a.deltas)
    for d in shared:  # what the projection leaves to the update, per layer, is reported
        assert set(d.info["null_space_share"]) == set(d.info["null_space_dims"]) == {"0", "1"}
        assert all(0.0 <= v < 1.0 for v in d.info["null_space_share"].values())


@pytest.mark.parametrize("method", ["rome", "alphaedit"])
def test_a_failing_sequential_step_leaves_model_and_context_as_they_were(method, tiny_tokenizer, monkeypatch):
    model = make_tiny_model("gpt2")
    before = state(model)
    ctx = context(model, tiny_tokenizer)
    earlier = {0: torch.eye(128, dtype=torch.float64)}
    ctx.editor_state("alphaedit").update(earlier)
    real, calls = get_editor(method), []

    def second_fails(ctx, group, hp):
        calls.append(group)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real.compute(ctx, group, hp)

    monkeypatch.setitem(EDITORS._entries, method, dataclasses.replace(real, compute=second_fails))
    with pytest.raises(RuntimeError, match="boom"):
        run_edits(ctx, method, edit_requests(), hparams(method), mode="sequential", force=True)
    assert len(calls) == 2
    assert_state(model, before)
    prev_key_outer = ctx.editor_state("alphaedit")
    assert list(prev_key_outer) == [0] and torch.equal(prev_key_outer[0], earlier[0])


def test_the_norm_guard_refuses_and_leaves_the_model_unchanged(tiny_tokenizer):
    model = make_tiny_model("gpt2")
    before = state(model)
    hp = hparams("rome", "gpt2", "max_update_ratio=1e-9")
    with pytest.raises(RippleError) as err:
        run_edits(context(model, tiny_tokenizer), "rome", edit_requests()[:1], hp)
    assert "norm ratio" in str(err.value) and "--force" in str(err.value) and "\n" not in str(err.value)
    assert_state(model, before)


# ---- hyperparameters ----------------------------------------------------------------------------

@pytest.mark.parametrize("method,model_type,n_layers,layers", [
    ("rome", "gpt2", 48, (17,)),                    # 17/47 of the way down, as in the ROME paper
    ("emmet", "gpt2", 48, (17,)),                   # EMMET takes ROME's layer
    ("emmet", "gemma3_text", 18, (1, 2, 3)),        # but MEMIT's on Gemma-3 (its own default wins)
    ("memit", "gpt2", 48, (13, 14, 15, 16, 17)),
    ("alphaedit", "gpt2", 48, (13, 14, 15, 16, 17)),  # AlphaEdit takes MEMIT's layers
    ("rome", "gpt2", 12, (4,)),                     # relative to depth: round(17/47 * 11) = 4
    ("memit", "gptj", 28, (3, 4, 5, 6, 7, 8)),
    ("rome", "llama", 32, (5,)),
    ("rome", "gpt_neox", 11, (3,)),                 # 0.3 * 10
])
def test_layers_resolve_relative_to_depth(method, model_type, n_layers, layers):
    assert resolve_hparams(method, model_type, n_layers).layers_for(n_layers) == layers


def test_overrides_are_cast_to_the_field_types():
    hp = resolve_hparams("memit", "gpt2", 9, overrides=["layer_fracs=(0.25,0.75)", "lam=300", "v_steps=4",
                                                         "rect=0.4", "fact_token=last"])
    assert hp.layers_for(9) == (2, 6) and hp.layers is None
    assert (hp.lam, hp.v_steps, hp.rect, hp.fact_token) == (300.0, 4, 0.4, "last")
    assert resolve_hparams("memit", "gpt2", 9, overrides=["rect=0.4", "rect=none"]).rect is None
    assert resolve_hparams("rome", "gpt2", 9, overrides=["layers=(3,)"]).layers_for(9) == (3,)


def test_shipped_file_then_user_file_then_overrides(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "ripple_hparams.json").write_text(json.dumps(
        {"all": {"v_steps": 7, "v_lr": 0.2}, "rome": {"layer_fracs": [0.5], "kl_factor": 0.5}}))
    user = tmp_path / "hp.json"
    user.write_text(json.dumps({"v_steps": 8}))

    shipped = resolve_hparams("rome", "gpt2", 11, model_dir=model_dir)
    assert shipped.layers_for(11) == (5,)  # the file beats the gpt2 default 17/47 -> 4
    assert (shipped.v_steps, shipped.v_lr, shipped.kl_factor) == (7, 0.2, 0.5)
    emmet = resolve_hparams("emmet", "gpt2", 11, model_dir=model_dir)
    assert emmet.layers_for(11) == (5,) and emmet.kl_factor == 0.0625  # only ROME's layers carry over
    assert resolve_hparams("memit", "gpt2", 11, model_dir=model_dir).layer_fracs[0] == 13 / 47

    hp = resolve_hparams("rome", "gpt2", 11, model_dir=model_dir, json_file=user)
    assert (hp.v_steps, hp.v_lr) == (8, 0.2)
    hp = resolve_hparams("rome", "gpt2", 11, model_dir=model_dir, json_file=user, overrides=["v_steps=9"])
    assert (hp.v_steps, hp.v_lr) == (9, 0.2)
    assert resolve_hparams("rome", "gpt2", 11).v_steps == 25


@pytest.mark.parametrize("kwargs,needle", [
    (dict(method="nope"), "unknown editing method 'nope'"),
    (dict(overrides=["bogus=1"]), "unknown hyperparameter 'bogus'"),
    (dict(overrides=["v_steps"]), "NAME=VALUE"),
    (dict(overrides=["v_steps=many"]), "bad value 'many'"),
    (dict(overrides=["fact_token=middle"]), "unknown fact_token 'middle'"),
    (dict(overrides=["layers=(2,)"]), "layer 2 is out of range for a 2-layer model"),
    (dict(overrides=["layers=(-1,)"]), "layer -1 is out of range"),
    (dict(json_file="{tmp}/missing.json"), "does not exist"),
    (dict(json_file="{tmp}/bad.json"), "not valid JSON"),
    (dict(json_file="{tmp}/unknown.json"), "unknown hyperparameter 'lamda'"),
])
def test_hparam_errors_are_one_line(tmp_path, kwargs, needle):
    (tmp_path / "bad.json").write_text("{v_steps: 3")
    (tmp_path / "unknown.json").write_text(json.dumps({"lamda": 3}))
    kwargs = {k: v.format(tmp=tmp_path) if k == "json_file" else v for k, v in kwargs.items()}
    with pytest.raises(RippleError) as err:
        resolve_hparams(kwargs.pop("method", "rome"), "gpt2", 2, **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_unknown_editor_name_is_one_line():
    with pytest.raises(RippleError, match="unknown editing method 'romee'; choose one of alphaedit, emmet"):
        get_editor("romee")


@pytest.mark.parametrize("method", ["rome", "memit"])
def test_rect_on_a_computed_edit_equals_solving_with_rect(method, tiny_tokenizer):
    from ripple.editing.editor import with_rect

    model = make_tiny_model("gpt2")
    ctx, reqs = context(model, tiny_tokenizer), requests_for(method)
    plain = get_editor(method).compute(ctx, reqs, hparams(method))
    solved = get_editor(method).compute(ctx, reqs, hparams(method, "gpt2", "rect=0.4"))
    masked = with_rect(ctx, plain, 0.4)
    assert masked.method == solved.method == f"{method}+rect" and masked.hparams["rect"] == 0.4
    assert sorted(masked.deltas) == sorted(solved.deltas)
    for name, d in solved.deltas.items():
        assert torch.equal(masked.deltas[name], d), name
        assert (d == 0).any() and not torch.equal(d, plain.deltas[name])  # the mask did remove entries
    with pytest.raises(RippleError, match="already masked"):
        with_rect(ctx, masked, 0.4)


@pytest.mark.parametrize("model_type", ["gemma2", "gemma3_text"])
def test_memit_moves_the_residual_by_its_target_through_the_post_mlp_norm(model_type, tiny_tokenizer):
    """Gemma 2 and 3 normalize the MLP's output before adding it to the residual: the MLP output
    change MEMIT asks of a layer must move the block's output by the residual target R."""
    from ripple.arch import act_name
    from ripple.editing.compute import fact_position, site_values
    from ripple.editing.editors.memit import mlp_output_change
    from ripple.hooks import Trace

    model = make_tiny_model(model_type)
    torch.manual_seed(1)
    norm = model.model.layers[0].post_feedforward_layernorm
    with torch.no_grad():
        norm.weight.normal_(0.0, 3.0)  # a scale far from one, as in a trained Gemma
    ctx, req = context(model, tiny_tokenizer), edit_requests()[:1]
    pos = fact_position(tiny_tokenizer, req[0].rendered, req[0].prompt, req[0].subject, "subject_last")
    spec = ctx.spec

    def residual(change=None):
        def add(out, name):
            out = out.clone()
            out[0, pos] += change.to(out.dtype)
            return out
        if change is None:
            return site_values(model, tiny_tokenizer, spec, act_name(0, "out"), req, "subject_last")
        with Trace(model, spec.block(0, spec.mlp), edit_output=add, retain_output=False):
            return site_values(model, tiny_tokenizer, spec, act_name(0, "out"), req, "subject_last")

    M = site_values(model, tiny_tokenizer, spec, act_name(0, "mlp.out"), req, "subject_last")
    with torch.no_grad():  # a reachable target: what the norm gives for another MLP output (of the same RMS:
        other = M + 0.5 * M.abs().mean() * torch.randn_like(M)  # the norm's eps makes the scale matter)
        other = other * M.pow(2).mean().sqrt() / other.pow(2).mean().sqrt()
        R = (norm(other.T.float()) - norm(M.T.float())).double().T
    D = mlp_output_change(ctx, 0, req, R, "subject_last")
    base = residual()
    assert torch.allclose(residual(D[:, 0]) - base, R, atol=1e-4 * float(R.norm()))
    naive = residual(R[:, 0]) - base  # the residual target written as the MLP's change misses
    assert (naive - R).norm() > 0.5 * R.norm()


@pytest.mark.parametrize("method", SPREAD)
def test_an_edit_does_not_depend_on_the_edits_computed_before_it(method, tiny_tokenizer):
    """The key statistics of every layer come from the model before the edit: an edit computed after
    another one in the same context equals the same edit computed alone (they were once read inside
    MEMIT's layer loop, after the first edit had changed the earlier layers, and then cached)."""
    model = make_tiny_model("gpt2")
    hp = hparams(method)
    first, second = edit_requests()
    after = context(model, tiny_tokenizer)
    get_editor(method).compute(after, [first], hp)
    late = get_editor(method).compute(after, [second], hp)
    alone = get_editor(method).compute(context(model, tiny_tokenizer), [second], hp)
    for name in alone.deltas:
        assert torch.equal(late.deltas[name], alone.deltas[name]), name


@pytest.mark.parametrize("model_type", SUPPORTED_MODEL_TYPES)
@pytest.mark.parametrize("site", ["blocks.0.out", "blocks.1.mlp.out"])
def test_replaying_the_blocks_before_the_site_gives_the_same_value(model_type, site, tiny_tokenizer):
    """optimize_delta computes the blocks before its site once (ripple.editing.compute.replayed):
    the same vector, NLLs and steps, bit for bit, with block 0 run once instead of at every step;
    the blocks' forward methods come back."""
    model = make_tiny_model(model_type)
    spec, req = get_spec(model), edit_requests()[0]
    hp = hparams("rome", model_type, "v_steps=6", "early_stop_loss=0")
    contexts = context_templates(model, tiny_tokenizer, 2, 3)
    mlp0 = model.get_submodule(spec.block(0, spec.mlp))
    calls = []
    hook = mlp0.register_forward_hook(lambda *a: calls.append(1))
    plain = optimize_delta(model, tiny_tokenizer, spec, req, site, hp, contexts, replay=False)
    n_plain = len(calls)
    fast = optimize_delta(model, tiny_tokenizer, spec, req, site, hp, contexts)
    hook.remove()
    assert n_plain == plain["steps"] + 1 and len(calls) - n_plain == 1
    assert torch.equal(fast["delta"], plain["delta"]) and fast["nll"] == plain["nll"]
    assert all("forward" not in model.get_submodule(spec.block(i)).__dict__ for i in range(2))
    again = optimize_delta(model, tiny_tokenizer, spec, req, site, hp, contexts, replay=False)
    assert torch.equal(again["delta"], plain["delta"])  # the model computes every block again
