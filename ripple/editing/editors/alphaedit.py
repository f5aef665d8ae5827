"""AlphaEdit: MEMIT's plan with the update projected onto the null space of preserved keys.

In a sequential run, each applied edit's keys (as the edited model computes them) join a running
sum per layer, ``ctx.editor_state("alphaedit")[layer] = Σ K Kᵀ``, which later edits preserve too.
It takes MEMIT's layer choice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from ripple.editing.compute import fact_keys, form_requests, token_requests
from ripple.editing.editor import EDITORS, Editor, make_delta
from ripple.editing.editors.memit import MemitHParams, spread
from ripple.editing.limits import NON_NEGATIVE, POSITIVE, Limit
from ripple.editing.solvers import alphaedit_update, null_space_projector, null_space_share

NAME = "alphaedit"


@dataclass(frozen=True)
class AlphaEditHParams(MemitHParams):
    null_threshold: float = 1e-2
    reg: float = 1.0

    LIMITS: ClassVar[dict[str, Limit]] = {"null_threshold": POSITIVE, "reg": NON_NEGATIVE}


def compute_alphaedit(ctx, requests, hp: AlphaEditHParams):
    t0 = time.perf_counter()
    projectors = {}
    earlier = ctx.editor_state(NAME)

    def project(layer):
        # an eigendecomposition of C per layer, once per context (seconds each at a real model's width),
        # and the share of the preserved keys' second moment inside the null space, tr(P C) / tr(C):
        # what the projection lets the update reach (0 protects every preserved key, 1 none)
        C = ctx.C(layer, hp)
        P = null_space_projector(C, hp.null_threshold)
        return P, round(float(null_space_share(P, C)), 4)

    def solve(layer, R, K):
        projectors[layer] = ctx.derived((NAME, "P", layer, hp.stats_samples, hp.C_reg, hp.null_threshold),
                                        lambda: project(layer))
        return alphaedit_update(R, K, projectors[layer][0], earlier.get(layer), hp.reg)

    deltas, info = spread(ctx, requests, hp, solve)
    info["null_space_dims"] = {str(k): int(round(torch.trace(P).item())) for k, (P, _) in projectors.items()}
    info["null_space_share"] = {str(k): share for k, (_, share) in projectors.items()}
    return make_delta(ctx, NAME, requests, hp, deltas, info, t0)


def remember_keys(ctx, requests, hp, delta) -> None:
    """After the edit is applied: add the keys the edited model computes to the running sums
    (new tensors, so a copy of the state dict is a snapshot)."""
    state = ctx.editor_state(NAME)
    # every key the edit wrote: one per subject form (compute.subject_forms)
    forms, form_contexts, _ = form_requests(ctx.tok, token_requests(ctx.tok, requests, hp.fact_token),
                                            ctx.contexts(hp), hp.fact_token)
    for layer in hp.layers_for(ctx.n_layers()):
        K = fact_keys(ctx.model, ctx.tok, ctx.spec, layer, forms, form_contexts, hp.fact_token)
        state[layer] = state.get(layer, 0) + K @ K.T


EDITORS.register(Editor(
    NAME, AlphaEditHParams, compute_alphaedit, layers_from="memit", after_apply=remember_keys,
    reads_key_stats=True,
    summary="MEMIT projected onto the null space of preserved keys (Fang et al. 2025)"))
