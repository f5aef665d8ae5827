"""ROME: one fact, one layer, the rank-one closed form with the same k* in both places (with the fact
at the last token, one key per target token: rank n for a target of n tokens; see token_requests;
with a subject tokenized two ways, one key per form: see compute.subject_forms)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from ripple.arch import act_name, mlp_out_param, out_in_to_storage
from ripple.editing.compute import fact_keys, form_requests, token_requests
from ripple.editing.editor import EDITORS, Editor, make_delta
from ripple.editing.hparams import LayeredHParams
from ripple.editing.limits import NON_NEGATIVE, Limit
from ripple.editing.solvers import emmet_update, rank_one_update
from ripple.editing.value_cache import target_values
from ripple.errors import RippleError


@dataclass(frozen=True)
class RomeHParams(LayeredHParams):
    C_reg: float = 1e-6  # relative ridge on C so that C⁻¹ exists on small corpora

    LIMITS: ClassVar[dict[str, Limit]] = {"C_reg": NON_NEGATIVE}


def compute_rome(ctx, requests, hp: RomeHParams):
    """The rank-one update at ``hp``'s layer that writes the optimized value for the request's key."""
    if len(requests) != 1:
        raise RippleError("rome edits one fact at a time; edit sequentially or use memit, emmet or alphaedit "
                          "for a batch")
    t0 = time.perf_counter()
    (layer,) = hp.layers_for(ctx.n_layers())[:1]
    contexts = ctx.contexts(hp)
    parts = token_requests(ctx.tok, requests, hp.fact_token)  # one, unless the fact is at the last token
    t = {"keys": time.perf_counter()}
    forms, form_contexts, owner = form_requests(ctx.tok, parts, contexts, hp.fact_token)
    K = fact_keys(ctx.model, ctx.tok, ctx.spec, layer, forms, form_contexts, hp.fact_token)
    t["keys"] = time.perf_counter() - t["keys"]
    t1 = time.perf_counter()
    opts = target_values(ctx, parts, act_name(layer, "mlp.out"), hp, contexts)
    t["values"] = time.perf_counter() - t1
    t["values_reused"] = sum(o["seconds"] for o in opts if o["cached"])
    t1 = time.perf_counter()
    if len(forms) == 1:
        delta_oi = rank_one_update(opts[0]["delta"], ctx.C(layer, hp), K[:, 0])
    else:  # one key per target token or subject form: the least-C-norm update writing each exactly
        delta_oi = emmet_update(torch.stack([opts[i]["delta"] for i in owner], dim=1), K, ctx.C(layer, hp), eps=0.0)
    t["solve"] = time.perf_counter() - t1
    opt = {"steps": sum(o["steps"] for o in opts), "nll": [o["nll"][-1] for o in opts]}
    info = {"layers": [layer], "v_steps": opt["steps"], "v_nll": opt["nll"] if len(parts) > 1 else opt["nll"][-1:], "timing": t,
            "keys_written": len(forms)}
    deltas = {mlp_out_param(ctx.spec, layer): out_in_to_storage(delta_oi, ctx.spec).float().contiguous()}
    return make_delta(ctx, "rome", requests, hp, deltas, info, t0)


EDITORS.register(Editor(
    "rome", RomeHParams, compute_rome, one_request_per_solve=True,
    arch_defaults={"gpt2": {"layer_fracs": (17 / 47,)}, "gptj": {"layer_fracs": (5 / 27,)},
                   "gpt_neox": {"layer_fracs": (0.3,)}, "llama": {"layer_fracs": (5 / 31,)},
                   "mistral": {"layer_fracs": (5 / 31,)}, "qwen2": {"layer_fracs": (5 / 27,)},
                   # Gemma-3-270M: layer 1 of 18 and a smaller value clamp, because the MLP's output is
                   # normalized (post_feedforward_layernorm) and a value 4x the old one's norm bleeds
                   # into neighbouring subjects (reports/real_models.md)
                   "gemma3_text": {"layer_fracs": (1 / 17,), "clamp_norm_factor": 2.0}},
    reads_key_stats=True,
    summary="one fact at one layer: the rank-one closed form (Meng et al. 2022)"))
