"""SIR, selective impact revision: re-revise the neurons that carried an edit's unintended impact.

One revision step (:func:`revise`) takes the plain edit (an :class:`EditDelta` of any
locate-then-edit editor: its updates to MLP output projections) and the damaged items (answered
right before the edit, wrong after, and not required to change by the ground truth) and returns
a revised :class:`EditDelta`. :func:`ripple.mitigation.run.mitigate` repeats GIE's measurement
and this step until no damage is left or a budget is spent. Per edited layer ``l`` (ΔW in the
``[out, in]`` orientation, keys read on the model as edited, so a later MEMIT layer sees the
earlier layers' updates):

1. **Split the damage.** A damaged item of the edited subject whose key is close to the edit's
   key ``k*`` (``C⁻¹``-cosine at least ``same_subject_cos`` at the first edited layer) is damaged
   through the subject's own representation: no update can keep ``k*``'s new value and leave a
   nearly parallel key alone. For those, the target value is re-optimized (the editor runs again)
   with the damaged prompts, and ``paraphrases`` phrasings of their relations (the world's
   training templates, then the relation library's; :mod:`ripple.mitigation.phrasings`), added to
   the KL term that keeps the subject's other predictions (weight ``kl_factor``).
2. **Attribution.** For the other damaged items, at every position whose output predicts or feeds
   their answers (``positions="all"``; ``"fact"``: the fact token only): the key ``k_p``, the
   edit's contribution to the MLP output ``ΔW k_p`` and the gradient ``g_p`` of log P(right answer)
   with respect to that output. ``g_p ⊙ ΔW k_p`` is each output neuron's first-order effect; a
   neuron's harm is the sum of its negative effects. The responsible neurons are the fewest carrying
   ``neuron_share`` of the harm (:func:`~ripple.editing.solvers.select_rows`).
3. **Re-solve.** On the responsible rows only, the least ``C``-norm correction ``E`` with
   ``(ΔW + E) k = ΔW k`` for the edit's keys (each request averaged over the editor's contexts, then
   every position of the rewrite and paraphrase prompts) and ``(ΔW + E) k_p = 0`` for the damaged
   keys, each damaged fact's keys taken in its own prompt and, at its fact token
   (``phrasing_positions``), in ``paraphrases`` phrasings of its relation, so the repair holds in
   wordings the probe set does not ask
   (:func:`~ripple.editing.solvers.keep_and_zero_correction`); kept and damaged keys enter
   through their principal directions (``energy`` of their squared norm,
   :func:`~ripple.editing.solvers.principal_basis`). Other rows keep ΔW's.

::

    revised, info = revise(ctx, "rome", requests, edit_hp, plain, damaged, SirHParams(), world)
    info["layers"]["5"]["neurons"], info["kl_items"]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from ripple.arch import act_name, mlp_out_param, out_in_to_storage, weight_as_out_in
from ripple.devices import input_device
from ripple.editing.compute import fact_keys, form_requests
from ripple.editing.delta import EditDelta
from ripple.editing.editor import get_editor
from ripple.editing.external import EXTERNAL
from ripple.editing.limits import AT_LEAST_0, NON_NEGATIVE, POSITIVE, SHARE, UNIT, Limit
from ripple.editing.solvers import c_cosine, keep_and_zero_correction, principal_basis, select_rows
from ripple.editing.variant import Variant
from ripple.errors import RippleError
from ripple.hooks import MlpGradProbe, SiteTrace, TraceDict
from ripple.mitigation import MITIGATIONS, Mitigation
from ripple.mitigation.phrasings import sir_phrasings
from ripple.modes import held
from ripple.probes.record import encode_items
from ripple.probes.sets import ProbeItem
from ripple.scoring import answer_window, pad_ids, window_logits
from ripple.tokens import answer_ids, bos_prefix, text_ids

NAME = "sir"


@dataclass(frozen=True)
class SirHParams:
    iterations: int = 3  # GIE -> SIR rounds at most (ripple.mitigation.run)
    neuron_share: float = 0.9  # re-solve the fewest output neurons carrying this share of the harm
    same_subject_cos: float = 0.8  # C⁻¹-cosine to k* from which a same-subject item is re-optimized, not constrained
    kl_factor: float = 1.0  # weight of the damaged prompts' KL term when the value is re-optimized
    paraphrases: int = 10  # phrasings of each damaged relation SIR reads (ripple.mitigation.phrasings.sir_phrasings):
    # added to the KL prompts of a re-optimized value, and their keys constrained with the damaged item's
    max_norm_growth: float = 3.0  # budget: |revised| / |plain| at any edited parameter
    ridge: float = 1e-9  # relative ridge on the constraint Gram matrix (0: exact)
    positions: str = "all"  # where damaged items' keys are constrained: all (every scored position) | fact
    energy: float = 0.995  # share of the kept and of the damaged keys' energy whose directions are constrained
    #: where a damaged fact's other phrasings have their keys constrained: fact (its fact token) | all | none
    phrasing_positions: str = "fact"

    LIMITS: ClassVar[dict[str, Limit]] = {
        "iterations": AT_LEAST_0, "neuron_share": SHARE, "same_subject_cos": UNIT, "kl_factor": NON_NEGATIVE,
        "paraphrases": AT_LEAST_0, "max_norm_growth": POSITIVE, "ridge": NON_NEGATIVE, "energy": SHARE}


def _position(where: dict, fact_token: str) -> list[int]:
    return where["last"] if fact_token == "last" else where[fact_token]


@torch.no_grad()
def item_keys(model, tok, spec, layers, items, fact_token: str) -> dict[int, torch.Tensor]:
    """Each item's MLP key ``[in, n]`` (float64) at each layer, at its fact token, on its own prompt."""
    prompts, where = encode_items(tok, items)
    pos = torch.tensor(_position(where, fact_token))
    sites = [act_name(layer, "mlp.key") for layer in layers]
    device = input_device(model)
    ids, mask = pad_ids(prompts, tok, device)
    with SiteTrace(model, spec, sites) as st:
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    rows = torch.arange(len(items))
    return {layer: st[site][rows, pos.to(st[site].device)].double().cpu().T for layer, site in zip(layers, sites)}


def _cells(seqs: list[list[int]], skip: int, exclude=frozenset(), at: list[int] | None = None
           ) -> tuple[list[tuple[int, int]], list[int], int]:
    """The positions ``(row, index)`` of ``seqs`` from ``skip`` on (``at``: only ``at[row]``), each
    with the column of its token prefix (a key depends only on the tokens up to it, so one prefix is
    one key), leaving out the prefixes in ``exclude``; and the prefix -> column map."""
    slot: dict[tuple, int] = {}
    cells, owner = [], []
    for j, s in enumerate(seqs):
        for p in (range(skip, len(s)) if at is None else (at[j],)):
            prefix = tuple(s[: p + 1])
            if prefix not in exclude:
                cells.append((j, p))
                owner.append(slot.setdefault(prefix, len(slot)))
    return cells, owner, slot


@torch.no_grad()
def keep_terms(ctx, hp, requests, layers) -> tuple[dict[int, torch.Tensor], set, int]:
    """The keys whose MLP output the revision must keep, per layer ``[in, n]``: each request's keys
    averaged over the editor's contexts, one per subject form (what the editor solved for; their
    count is returned last), then every position of the rewrite prompt and of each paraphrase
    prompt, followed by the new object but its last token (the positions whose outputs predict
    it); and the token prefixes of those positions."""
    model, tok, spec = ctx.model, ctx.tok, ctx.spec
    seqs = []
    for r in requests:
        target = answer_ids(tok, r.target_new)[:-1]
        seqs += [text_ids(tok, t) + target for t in (r.rendered, *r.paraphrase_prompts)]
    cells, owner, slot = _cells(seqs, len(bos_prefix(tok)))
    device = input_device(model)
    ids, mask = pad_ids(seqs, tok, device)
    names = {layer: spec.block(layer, spec.mlp_out) for layer in layers}
    with TraceDict(model, names.values(), retain_input=True, retain_output=False) as td:
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    first = {}  # one cell per prefix
    for cell, column in zip(cells, owner):
        first.setdefault(column, cell)
    rows = torch.tensor([first[c][0] for c in range(len(slot))], device=device)
    pos = torch.tensor([first[c][1] for c in range(len(slot))], device=device)
    out = {}
    forms, form_contexts, _ = form_requests(tok, list(requests), ctx.contexts(hp), hp.fact_token)
    for layer in layers:
        k_star = fact_keys(model, tok, spec, layer, forms, form_contexts, hp.fact_token)
        k = td[names[layer]].input[rows, pos].double().cpu()
        out[layer] = torch.cat([k_star, k.T], dim=1)
    return out, set(slot), len(forms)


def damage_terms(model, tok, spec, layers, items, fact_token: str, positions: str = "all", exclude=frozenset(),
                 chunk: int = 16) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer ``(K, G)``: the MLP keys ``[in, P]`` where the edit can reach the items' answers and
    the gradient of log P(item's answer) with respect to the MLP output there ``[out, P]`` (float64).

    ``positions="fact"``: each item's fact token only; ``"all"``: every position whose output
    predicts an answer token or feeds one (the prompt and the answer but its last token), a lone BOS
    token left out (its key never changes). A position shared by several items (the same token
    prefix: the same key) is taken once with its gradients added; prefixes in ``exclude`` (keys the
    edit must keep) are left out. Empty when no position is left. The items run ``chunk`` at a
    time (one forward and backward pass each), so memory stays bounded however many there are."""
    prompts, where = encode_items(tok, items)
    answers = [answer_ids(tok, item.answer) for item in items]
    seqs = [p + a for p, a in zip(prompts, answers)]
    device = input_device(model)
    at = _position(where, fact_token) if positions == "fact" else None
    cells, owner, slot = _cells([s[:-1] for s in seqs], len(bos_prefix(tok)), exclude, at)
    if not cells:
        return {}
    K: dict[int, torch.Tensor] = {}
    G: dict[int, torch.Tensor] = {}
    for start in range(0, len(items), chunk):  # a chunk at a time: the logits over a 262k vocabulary are large
        mine = [(c, col) for c, col in zip(cells, owner) if start <= c[0] < start + chunk]
        if not mine:
            continue
        rows = list(range(start, min(start + chunk, len(items))))
        ids, mask = pad_ids([seqs[j] for j in rows], tok, device)
        rows_t = torch.tensor([j - start for (j, _), _ in mine], device=device)
        pos_t = torch.tensor([p for (_, p), _ in mine], device=device)
        with held(model, trainable=()):
            with MlpGradProbe(model, spec, layers) as gp:
                lo, hi = answer_window([prompts[j] for j in rows], [answers[j] for j in rows])
                logits = window_logits(model, ids, mask, lo, hi, use_cache=False)
            logp = torch.log_softmax(logits.float(), -1)
            total = 0
            for r, j in enumerate(rows):
                p, a = prompts[j], answers[j]
                span = torch.arange(len(p) - 1 - lo, len(p) + len(a) - 1 - lo, device=device)
                total = total + logp[r, span, torch.tensor(a, device=device)].sum()
            grads = torch.autograd.grad(total, gp.zeros())
        index = torch.tensor([col for _, col in mine])
        for layer, g in zip(gp.layers, grads):
            k = gp.key(layer)[rows_t, pos_t].double().cpu()
            g = g[rows_t, pos_t].double().cpu()
            if layer not in K:
                K[layer] = torch.zeros(len(slot), k.shape[1], dtype=torch.float64)
                G[layer] = torch.zeros(len(slot), g.shape[1], dtype=torch.float64)
            K[layer].index_copy_(0, index, k)
            G[layer].index_add_(0, index, g)
        del logits, logp, grads
    return {layer: (K[layer].T, G[layer].T) for layer in K}


def kl_prompts_for(items, world, n_paraphrases: int) -> tuple[str, ...]:
    """The damaged prompts (templates with ``{}`` for the subject), with up to ``n_paraphrases``
    phrasings of each one's relation (:func:`~ripple.mitigation.phrasings.sir_phrasings`)."""
    out = []
    for item in items:
        out.append(item.prompt)
        out += sir_phrasings(world, item.relation, n_paraphrases) if n_paraphrases else []
    return tuple(dict.fromkeys(out))


def phrased_items(items, world, n_paraphrases: int) -> list:
    """The damaged ``items`` and each one's fact in up to ``n_paraphrases`` other phrasings of its
    relation (:func:`~ripple.mitigation.phrasings.sir_phrasings`): the keys a repair must hold in
    wordings the probe set does not ask."""
    out, seen = list(items), {(item.subject, item.prompt, item.answer) for item in items}
    for item in items:
        for k, template in enumerate(sir_phrasings(world, item.relation, n_paraphrases) if n_paraphrases else ()):
            if (item.subject, template, item.answer) not in seen:
                seen.add((item.subject, template, item.answer))
                out.append(ProbeItem(f"{item.id}#phrasing{k}", item.subject, item.relation, template, item.answer))
    return out


def _out_in(delta: EditDelta, spec, layer: int) -> torch.Tensor:
    return weight_as_out_in(delta.deltas[mlp_out_param(spec, layer)], spec).double()


def _key_cosines(ctx, plain: EditDelta, requests, edit_hp, layer: int, damaged) -> torch.Tensor:
    """Per damaged item: the largest C-cosine between its key at ``layer`` and an edited fact's key
    (both on the model with ``plain`` applied)."""
    model, tok, spec = ctx.model, ctx.tok, ctx.spec
    with plain.applied(model):
        forms, form_contexts, _ = form_requests(tok, list(requests), ctx.contexts(edit_hp), edit_hp.fact_token)
        k_star = fact_keys(model, tok, spec, layer, forms, form_contexts, edit_hp.fact_token)
        k_dam = item_keys(model, tok, spec, (layer,), damaged, edit_hp.fact_token)[layer]
    C0 = ctx.C(layer, edit_hp)
    return torch.stack([c_cosine(C0, k_dam, k_star[:, i]) for i in range(k_star.shape[1])]).max(0).values


def _resolve(D: torch.Tensor, terms, keep: torch.Tensor, n_exact: int, C: torch.Tensor,
             hp: SirHParams) -> tuple[torch.Tensor, dict]:
    """One layer's correction ``E`` of the update ``D`` ``[out, in]``: the neurons that harm the
    damaged answers most are re-solved so the damaged keys map to zero change and the kept keys
    keep their values; with the layer's figures for the report."""
    K_d, G_d = terms
    effect = G_d * (D @ K_d)  # [out, P]: each neuron's first-order effect on the answers, per key
    harm = (-effect).clamp(min=0).sum(1)
    rows = select_rows(harm, hp.neuron_share)
    # k* exactly; the other kept keys and the damaged ones through their principal directions,
    # so that many prompts' keys never ask for more constraints than the key space has
    room = D.shape[1] // 2
    U_zero = principal_basis(K_d, hp.energy, room)
    U_keep = principal_basis(keep[:, n_exact:], hp.energy, max(0, room - U_zero.shape[1]))
    K_keep = torch.cat([keep[:, :n_exact], U_keep], dim=1)
    E = keep_and_zero_correction(D, K_keep, U_zero, C, rows, hp.ridge)
    return E, {"neurons": int(len(rows)), "of": int(D.shape[0]), "keys": int(K_d.shape[1]),
               "zero_rank": int(U_zero.shape[1]), "keep_rank": int(U_keep.shape[1]),
               "harm_share_selected": round(float(harm[rows].sum() / harm.sum()), 4) if harm.sum() > 0 else 0.0,
               "correction_norm": round(float(E.norm()), 6)}


def revise(ctx, method: str, requests, edit_hp, plain: EditDelta, damaged, hp: SirHParams, world=None,
           cache: dict | None = None) -> tuple[EditDelta, dict]:
    """One SIR step (see the module docstring): the revised delta for ``plain`` given the damaged
    probe items, computed on ``ctx.model`` unedited (it is left as it was). ``cache``: a dict kept
    across the rounds of one mitigation (re-optimized edits by KL prompts)."""
    t0 = time.perf_counter()
    model, tok, spec = ctx.model, ctx.tok, ctx.spec
    layers = tuple(edit_hp.layers_for(ctx.n_layers()))
    external = method == EXTERNAL
    if external:  # an edit made elsewhere: revise the MLP output projections it changed, leave the rest alone
        layers = tuple(L for L in layers if mlp_out_param(spec, L) in plain.deltas)
    names = [mlp_out_param(spec, layer) for layer in layers]
    left_alone = [n for n in plain.deltas if n not in names]
    if external and not layers:
        return plain, {"damaged": [d.id for d in damaged], "kl_items": [], "layers": {}, "left_alone": left_alone,
                       "norm_growth": 1.0, "constrained": [], "seconds": round(time.perf_counter() - t0, 4),
                       "unrevisable": "the edit changes no MLP output projection: SIR has nothing it can re-solve"}
    missing = [n for n in names if n not in plain.deltas]
    if missing:
        raise RippleError(f"sir revises updates of MLP output projections; the {plain.method} delta has none for "
                          f"{missing[0]!r}; use a locate-then-edit editor (rome, memit, emmet, alphaedit)")
    if hp.positions not in ("all", "fact"):
        raise RippleError(f"unknown sir positions {hp.positions!r}; use all or fact")
    if hp.phrasing_positions not in ("all", "fact", "none"):
        raise RippleError(f"unknown sir phrasing_positions {hp.phrasing_positions!r}; use fact, all or none")
    damaged = list(damaged)
    info: dict = {"damaged": [d.id for d in damaged], "kl_items": [], "layers": {},
                  **({"left_alone": left_alone} if left_alone else {})}
    if not damaged:
        info["seconds"] = round(time.perf_counter() - t0, 4)
        return plain, info

    # 1. which damage flows through the subject's own representation
    cos = _key_cosines(ctx, plain, requests, edit_hp, layers[0], damaged)
    info["key_cos"] = {d.id: round(float(c), 4) for d, c in zip(damaged, cos)}
    subjects = {r.subject for r in requests}
    close = [d for d, c in zip(damaged, cos) if d.subject in subjects and c >= hp.same_subject_cos]
    if external and close:  # re-optimizing the target needs the editor that made the edit: constrain instead
        info["not_reoptimized"] = [d.id for d in close]
        close = []
    constrained = [d for d in damaged if d not in close]

    base = plain
    if close:
        kl = kl_prompts_for(close, world, hp.paraphrases)
        hp2 = replace(edit_hp, kl_prompts=tuple(dict.fromkeys((*edit_hp.kl_prompts, *kl))),
                      kl_factor=max(edit_hp.kl_factor, hp.kl_factor))
        cache = {} if cache is None else cache
        if hp2.kl_prompts not in cache:  # a later round with the same prompts reuses the re-optimized edit
            cache[hp2.kl_prompts] = get_editor(method).compute(ctx, list(requests), hp2)
        base = cache[hp2.kl_prompts]
        info["kl_items"], info["kl_prompts"] = [d.id for d in close], list(kl)

    # 2-3. attribution and the re-solve, on the model with the base update applied
    deltas = {n: d.clone() for n, d in base.deltas.items()}
    if constrained:
        with base.applied(model):
            keep, kept_prefixes, n_star = keep_terms(ctx, edit_hp, requests, layers)
            terms = damage_terms(model, tok, spec, layers, constrained, edit_hp.fact_token, hp.positions,
                                 exclude=kept_prefixes)
            phrased = phrased_items(constrained, world, hp.paraphrases)[len(constrained):]
            more = damage_terms(model, tok, spec, layers, phrased, edit_hp.fact_token, hp.phrasing_positions,
                                exclude=kept_prefixes) if phrased and terms and hp.phrasing_positions != "none" else {}
        if more:  # the damaged facts' other phrasings: their keys join the damaged ones
            terms = {L: (torch.cat([K, more[L][0]], 1), torch.cat([G, more[L][1]], 1)) for L, (K, G) in terms.items()}
            info["phrased_keys"] = int(next(iter(more.values()))[0].shape[1])
        for layer, name in zip(layers, names) if terms else ():
            D = _out_in(base, spec, layer)
            E, info["layers"][str(layer)] = _resolve(D, terms[layer], keep[layer], n_star,
                                                     ctx.C(layer, edit_hp), hp)
            deltas[name] = out_in_to_storage(D + E, spec).float().contiguous()
    growth = {n: float(deltas[n].norm() / plain.deltas[n].norm().clamp(min=1e-30)) for n in names}
    info["norm_growth"] = round(max(growth.values()), 4)
    info["constrained"] = [d.id for d in constrained]
    info["seconds"] = round(time.perf_counter() - t0, 4)
    revised = EditDelta(Variant.parse(plain.method).mitigated(NAME).name, deltas, requests=list(plain.requests),
                        hparams={"edit": plain.hparams, NAME: hp.__dict__}, info={"plain": plain.info, NAME: info})
    return revised, info


MITIGATIONS.register(Mitigation(
    NAME, SirHParams, revise,
    summary="selective impact revision: re-solve the responsible neurons so damaged items' keys keep their values, "
            "re-optimizing the target where the damage runs through the edited subject"))
