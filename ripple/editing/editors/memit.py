"""MEMIT: many facts, spread over a range of layers by least squares against ``lam·C``.

:func:`spread` is MEMIT's plan, which EMMET and AlphaEdit share with their own solves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from ripple.arch import act_name, mlp_out_param, out_in_to_storage
from ripple.devices import add_into, module_device, param_value
from ripple.editing.compute import fact_keys, form_requests, site_values, token_requests
from ripple.editing.delta import WeightSnapshot
from ripple.editing.editor import EDITORS, Editor, make_delta
from ripple.editing.editors.rome import RomeHParams
from ripple.editing.limits import POSITIVE, Limit
from ripple.editing.solvers import memit_update, through_rms_norm
from ripple.editing.value_cache import target_values
from ripple.errors import RippleError


@dataclass(frozen=True)
class MemitHParams(RomeHParams):
    layer_fracs: tuple[float, ...] = (0.27, 0.3, 0.33, 0.36, 0.4)
    lam: float = 15000.0  # mom2_update_weight

    LIMITS: ClassVar[dict[str, Limit]] = {"lam": POSITIVE}


def memit_targets(ctx, requests, hp) -> tuple[list, str, list[str], list[dict]]:
    """MEMIT's targets (EMMET's and AlphaEdit's too): the token requests, the site of the values
    (the last edited layer's output), the context prefixes and each request's optimized value
    (through ``ctx.value_cache`` when set; computing them ahead fills the cache)."""
    requests = token_requests(ctx.tok, requests, hp.fact_token)
    z_site = act_name(hp.layers_for(ctx.n_layers())[-1], "out")
    contexts = ctx.contexts(hp)
    return requests, z_site, contexts, target_values(ctx, requests, z_site, hp, contexts)


def spread(ctx, requests, hp, solve) -> tuple[dict, dict]:
    """MEMIT's plan (on :func:`~ripple.editing.compute.token_requests`: with the fact at the last
    token, one request per target token): optimize targets at the last layer's output, then for each layer in order
    recompute keys and residuals with the model updated so far and solve with
    ``solve(layer, R, K) -> [out, in] update``. The model is restored before returning.

    Every layer's key statistics ``C`` are read before any layer is updated (and then cached in
    ``ctx``): computed inside the loop, a later layer's ``C`` would come from the model as this
    edit had changed the earlier layers, and, cached, it would carry that edit into every later
    one (a run's results would depend on its first edit)."""
    layers = hp.layers_for(ctx.n_layers())
    t1 = time.perf_counter()
    for layer in layers:
        ctx.C(layer, hp)
    timing = {"stats": time.perf_counter() - t1, "values": 0.0, "keys": 0.0, "solve": 0.0}
    t1 = time.perf_counter()
    requests, z_site, contexts, opts = memit_targets(ctx, requests, hp)
    # one column per request and subject form (compute.subject_forms), all of a request's with its
    # value; a form's residual is read at the bare prompt when the form holds it (MEMIT's rule),
    # else averaged over the form's contexts
    requests, form_contexts, owner = form_requests(ctx.tok, requests, contexts, hp.fact_token)
    value_contexts = [["{}"] if "{}" in c else c for c in form_contexts]
    Z = site_values(ctx.model, ctx.tok, ctx.spec, z_site, requests, hp.fact_token, value_contexts) + torch.stack(
        [opts[i]["delta"] for i in owner], dim=1)
    timing["values"] = time.perf_counter() - t1
    timing["values_reused"] = sum(o["seconds"] for o in opts if o["cached"])  # what they took when computed
    deltas = {}
    with WeightSnapshot.take(ctx.model, [mlp_out_param(ctx.spec, layer) for layer in layers]):
        for i, layer in enumerate(layers):
            t1 = time.perf_counter()
            K = fact_keys(ctx.model, ctx.tok, ctx.spec, layer, requests, form_contexts, hp.fact_token)
            cur = site_values(ctx.model, ctx.tok, ctx.spec, z_site, requests, hp.fact_token, value_contexts)
            timing["keys"] += time.perf_counter() - t1
            t1 = time.perf_counter()
            R = (Z - cur) / (len(layers) - i)
            if ctx.spec.mlp_post_norm:  # R is a change of the residual; the MLP writes before a norm
                R = mlp_output_change(ctx, layer, requests, R, hp.fact_token, value_contexts)
            delta_oi = solve(layer, R, K)
            timing["solve"] += time.perf_counter() - t1
            name = mlp_out_param(ctx.spec, layer)
            deltas[name] = out_in_to_storage(delta_oi, ctx.spec).float().contiguous()
            with torch.no_grad():
                add_into(ctx.model, name, deltas[name])
    info = {"layers": list(layers), "v_steps": [o["steps"] for o in opts], "timing": timing,
            "keys_written": len(requests)}
    return deltas, info


def mlp_output_change(ctx, layer: int, requests, R: torch.Tensor, fact_token: str, contexts=None) -> torch.Tensor:
    """The change of block ``layer``'s MLP output that moves the residual stream by ``R`` through
    the norm after the MLP (:func:`ripple.editing.solvers.through_rms_norm`), at the bare prompts
    or averaged over ``contexts`` (:func:`ripple.editing.compute.site_values`)."""
    name = ctx.spec.block(layer, ctx.spec.mlp_post_norm)
    norm = ctx.model.get_submodule(name)
    M = site_values(ctx.model, ctx.tok, ctx.spec, act_name(layer, "mlp.out"), requests, fact_token, contexts)
    dtype = param_value(ctx.model, f"{name}.{next(n for n, _ in norm.named_parameters())}").dtype
    device = module_device(norm)
    eps = float(getattr(norm, "eps", getattr(norm, "variance_epsilon", 0.0)))
    with torch.no_grad():
        g = norm(torch.ones(M.shape[0], dtype=dtype, device=device)).double().cpu() * (1 + eps) ** 0.5
        out = norm(M.T.to(device, dtype)).double().cpu().T
    expect = g[:, None] * M / (M.pow(2).mean(0, keepdim=True) + eps).sqrt()
    if not torch.allclose(out, expect, rtol=1e-2, atol=1e-3 * float(out.abs().max())):
        raise RippleError(f"{name} is not an RMS norm (out = g * x / rms(x)), which MEMIT's plan through a "
                          "post-MLP norm assumes; edit this model with rome or ft")
    return through_rms_norm(g, M, R, eps)


def compute_memit(ctx, requests, hp: MemitHParams):
    t0 = time.perf_counter()
    deltas, info = spread(ctx, requests, hp, lambda layer, R, K: memit_update(R, K, ctx.C(layer, hp), hp.lam))
    return make_delta(ctx, "memit", requests, hp, deltas, info, t0)


EDITORS.register(Editor(
    "memit", MemitHParams, compute_memit,
    arch_defaults={"gpt2": {"layer_fracs": (13 / 47, 14 / 47, 15 / 47, 16 / 47, 17 / 47), "lam": 20000.0},
                   "gptj": {"layer_fracs": tuple(i / 27 for i in range(3, 9)), "lam": 15000.0},
                   # llama: lam chosen on SmolLM2-135M (MLP width 1536), where 15000 does not take
                   # (reports/real_models.md); the layers are the papers' 4-8 of 32
                   "llama": {"layer_fracs": tuple(i / 31 for i in range(4, 9)), "lam": 1000.0},
                   # Gemma-3-270M: layers 1-3 of 18 (where its trace carries the fact) and lam 100, the
                   # best of a 30-edit sweep once the plan goes through the post-MLP norm
                   "gemma3_text": {"layer_fracs": (1 / 17, 2 / 17, 3 / 17), "lam": 100.0}},
    reads_key_stats=True,
    summary="many facts over a range of layers, least squares against lam*C (Meng et al. 2023)"))
