"""The editors, registered by name. Each computes an :class:`EditDelta` and never changes the model.

>>> # doctest: +SKIP
>>> ctx = EditContext(model, tok, spec, corpus=world_text)
>>> delta = get_editor("memit")(ctx, requests, resolve_hparams("memit", "gpt2", 6))
>>> with delta.applied(model):
...     ...                                   # the edited model
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from ripple.arch import mlp_out_weight, out_in_to_storage
from ripple.editing.compute import context_templates, fact_keys, frozen, optimize_delta, site_values
from ripple.editing.delta import EditDelta, WeightSnapshot
from ripple.editing.requests import EditRequest
from ripple.editing.solvers import (alphaedit_update, emmet_update, memit_update, null_space_projector,
                                    rank_one_update, rect_mask)
from ripple.editing.stats import second_moment
from ripple.errors import RippleError


@dataclass
class EditContext:
    """What editors share across calls: the model, the statistics corpus, cached statistics and
    prefixes, and AlphaEdit's running sum of earlier edit keys (sequential editing)."""

    model: torch.nn.Module
    tok: object
    spec: object
    corpus: list[str]
    use_disk_cache: bool = True
    _C: dict = field(default_factory=dict)
    _contexts: dict = field(default_factory=dict)
    prev_key_outer: dict = field(default_factory=dict)  # layer -> Σ K Kᵀ of earlier edits

    def C(self, layer: int, hp) -> torch.Tensor:
        """Second moment at ``layer``, ridge-regularized (``C_reg`` relative to its mean eigenvalue)."""
        key = (layer, hp.stats_samples)
        if key not in self._C:
            self._C[key] = second_moment(self.model, self.tok, self.spec, layer, self.corpus, hp.stats_samples,
                                         use_cache=self.use_disk_cache)
        C = self._C[key]
        return C + hp.C_reg * C.diagonal().mean() * torch.eye(C.shape[0], dtype=C.dtype)

    def contexts(self, hp) -> list[str]:
        key = (hp.context_prefixes, hp.prefix_tokens, hp.seed)
        if key not in self._contexts:
            self._contexts[key] = context_templates(self.model, self.tok, hp.context_prefixes, hp.prefix_tokens,
                                                    hp.seed)
        return self._contexts[key]

    def n_layers(self) -> int:
        return self.spec.n_layers(self.model)


def _param_name(ctx: EditContext, layer: int) -> str:
    return ctx.spec.block(layer, ctx.spec.mlp_out) + ".weight"


def _to_storage(ctx, layer: int, delta_oi: torch.Tensor) -> torch.Tensor:
    return out_in_to_storage(delta_oi, ctx.spec).float().contiguous()


def _finish(ctx, method: str, requests, hp, deltas: dict, info: dict, t0: float) -> EditDelta:
    if hp.rect is not None:
        params = dict(ctx.model.named_parameters())
        deltas = {n: rect_mask(d, params[n].detach().float().cpu(), hp.rect) for n, d in deltas.items()}
    info["seconds"] = round(time.perf_counter() - t0, 4)
    return EditDelta(method=method + ("+rect" if hp.rect is not None else ""), deltas=deltas,
                     requests=[r.to_dict() for r in requests], hparams=asdict(hp), info=info)


def compute_rome(ctx: EditContext, requests: list[EditRequest], hp) -> EditDelta:
    """ROME: one fact, one layer, the rank-one closed form with the same k* in both places."""
    if len(requests) != 1:
        raise RippleError("rome edits one fact at a time; edit sequentially or use memit, emmet or alphaedit "
                          "for a batch")
    t0 = time.perf_counter()
    (layer,) = hp.layers_for(ctx.n_layers())[:1]
    contexts = ctx.contexts(hp)
    t = {"keys": time.perf_counter()}
    k = fact_keys(ctx.model, ctx.tok, ctx.spec, layer, requests, contexts, hp.fact_token)[:, 0]
    t["keys"] = time.perf_counter() - t["keys"]
    t1 = time.perf_counter()
    opt = optimize_delta(ctx.model, ctx.tok, ctx.spec, requests[0], f"blocks.{layer}.mlp.out", hp, contexts)
    t["values"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    delta_oi = rank_one_update(opt["delta"], ctx.C(layer, hp), k)
    t["solve"] = time.perf_counter() - t1
    info = {"layers": [layer], "v_steps": opt["steps"], "v_nll": opt["nll"][-1:], "timing": t}
    return _finish(ctx, "rome", requests, hp, {_param_name(ctx, layer): _to_storage(ctx, layer, delta_oi)}, info, t0)


def _spread(ctx: EditContext, requests, hp, solve) -> tuple[dict, dict]:
    """MEMIT's plan: optimize targets at the last layer's output, then for each layer in order
    recompute keys and residuals with the model updated so far and solve with ``solve``.
    The model is restored before returning."""
    layers = hp.layers_for(ctx.n_layers())
    z_site = f"blocks.{layers[-1]}.out"
    contexts = ctx.contexts(hp)
    timing = {"values": 0.0, "keys": 0.0, "solve": 0.0}
    t1 = time.perf_counter()
    opts = [optimize_delta(ctx.model, ctx.tok, ctx.spec, r, z_site, hp, contexts) for r in requests]
    Z = site_values(ctx.model, ctx.tok, ctx.spec, z_site, requests, hp.fact_token) + torch.stack(
        [o["delta"] for o in opts], dim=1)
    timing["values"] = time.perf_counter() - t1
    deltas = {}
    params = dict(ctx.model.named_parameters())
    with WeightSnapshot.take(ctx.model, [_param_name(ctx, layer) for layer in layers]):
        for i, layer in enumerate(layers):
            t1 = time.perf_counter()
            K = fact_keys(ctx.model, ctx.tok, ctx.spec, layer, requests, contexts, hp.fact_token)
            cur = site_values(ctx.model, ctx.tok, ctx.spec, z_site, requests, hp.fact_token)
            timing["keys"] += time.perf_counter() - t1
            t1 = time.perf_counter()
            R = (Z - cur) / (len(layers) - i)
            delta_oi = solve(layer, R, K)
            timing["solve"] += time.perf_counter() - t1
            name = _param_name(ctx, layer)
            deltas[name] = _to_storage(ctx, layer, delta_oi)
            with torch.no_grad():
                params[name].add_(deltas[name].to(params[name].dtype))
    info = {"layers": list(layers), "v_steps": [o["steps"] for o in opts], "timing": timing}
    return deltas, info


def compute_memit(ctx: EditContext, requests, hp) -> EditDelta:
    """MEMIT: many facts, spread over a range of layers by least squares against ``lam·C``."""
    t0 = time.perf_counter()
    deltas, info = _spread(ctx, requests, hp, lambda layer, R, K: memit_update(R, K, ctx.C(layer, hp), hp.lam))
    return _finish(ctx, "memit", requests, hp, deltas, info, t0)


def compute_emmet(ctx: EditContext, requests, hp) -> EditDelta:
    """EMMET: the batched equality-constrained form (one request, eps=0: ROME's closed form)."""
    t0 = time.perf_counter()
    deltas, info = _spread(ctx, requests, hp, lambda layer, R, K: emmet_update(R, K, ctx.C(layer, hp), hp.eps))
    return _finish(ctx, "emmet", requests, hp, deltas, info, t0)


def compute_alphaedit(ctx: EditContext, requests, hp) -> EditDelta:
    """AlphaEdit: MEMIT's plan with the update projected onto the null space of preserved keys;
    earlier edits' keys (``ctx.prev_key_outer``) are kept by :func:`remember_keys`."""
    t0 = time.perf_counter()
    projectors = {}

    def solve(layer, R, K):
        if layer not in projectors:
            projectors[layer] = null_space_projector(ctx.C(layer, hp), hp.null_threshold)
        return alphaedit_update(R, K, projectors[layer], ctx.prev_key_outer.get(layer), hp.reg)

    deltas, info = _spread(ctx, requests, hp, solve)
    info["null_space_dims"] = {str(k): int(round(torch.trace(P).item())) for k, P in projectors.items()}
    out = _finish(ctx, "alphaedit", requests, hp, deltas, info, t0)
    with out.applied(ctx.model):  # the keys the edited model computes (earlier layers' updates in place)
        out.info["keys_by_layer"] = {layer: fact_keys(ctx.model, ctx.tok, ctx.spec, layer, requests,
                                                      ctx.contexts(hp), hp.fact_token)
                                     for layer in hp.layers_for(ctx.n_layers())}
    out.info["seconds"] = round(time.perf_counter() - t0, 4)
    return out


def remember_keys(ctx: EditContext, delta: EditDelta) -> None:
    """After an AlphaEdit edit is applied in sequence, add its keys to the running sum."""
    for layer, K in delta.info.pop("keys_by_layer", {}).items():
        ctx.prev_key_outer[layer] = ctx.prev_key_outer.get(layer, 0) + K @ K.T


def compute_ft(ctx: EditContext, requests, hp) -> EditDelta:
    """FT-L: Adam on one MLP output projection, each weight kept within ``norm_constraint`` of
    its value (an L-infinity ball), minimizing the new target's NLL on the edit prompts."""
    from ripple.scoring import pad_ids

    t0 = time.perf_counter()
    (layer,) = hp.layers_for(ctx.n_layers())[:1]
    W = mlp_out_weight(ctx.model, ctx.spec, layer)
    name = _param_name(ctx, layer)
    device = W.device
    seqs, spans = [], []
    for r in requests:
        p = ctx.tok(r.rendered, add_special_tokens=False)["input_ids"]
        a = ctx.tok(" " + r.target_new.strip(), add_special_tokens=False)["input_ids"]
        seqs.append(p + a)
        spans.append((len(p), a))
    ids, mask = pad_ids(seqs, ctx.tok, device)
    with WeightSnapshot.take(ctx.model, [name]), frozen(ctx.model, keep=[W]):
        W0 = W.detach().clone()
        opt = torch.optim.Adam([W], lr=hp.ft_lr)
        nll = torch.tensor(float("nan"))
        try:
            for _ in range(hp.ft_steps):
                logp = torch.log_softmax(ctx.model(input_ids=ids, attention_mask=mask).logits.float(), -1)
                nll = -torch.stack([logp[i, s - 1 + j, a[j]] for i, (s, a) in enumerate(spans)
                                    for j in range(len(a))]).mean()
                if nll.item() < hp.early_stop_loss:
                    break
                opt.zero_grad()
                nll.backward()
                opt.step()
                with torch.no_grad():
                    W.copy_(torch.maximum(torch.minimum(W, W0 + hp.norm_constraint), W0 - hp.norm_constraint))
            delta = (W.detach() - W0).float().cpu()
        finally:
            W.grad = None
    info = {"layers": [layer], "final_nll": round(nll.item(), 5)}
    return _finish(ctx, "ft", requests, hp, {name: delta}, info, t0)


EDITORS = {"rome": compute_rome, "memit": compute_memit, "emmet": compute_emmet, "alphaedit": compute_alphaedit,
           "ft": compute_ft}


def get_editor(name: str):
    """The editor function for ``name``; a one-line error naming the known ones otherwise."""
    if name not in EDITORS:
        raise RippleError(f"unknown editing method {name!r}; choose one of {', '.join(sorted(EDITORS))} "
                          "(RECT is an option on any of them: rect=0.4)")
    return EDITORS[name]
