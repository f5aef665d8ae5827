"""RLEdit: edits predicted by a hypernetwork trained over whole edit sequences (Li et al., ICML 2025).

An edit reads, on the model as it is now, the input ``k`` of each edited MLP output projection and
the gradient ``δ`` of the new answers' loss at its output, at every answer token of the batch;
the hypernetwork (:mod:`ripple.rledit`) turns them into the weight change. Its running moments
keep updating as edits are applied (``ctx.editor_state("rledit")["moments"]``, rolled back with the
weights by the sandbox). Training is ``ripple rledit train`` (:mod:`ripple.rledit.train`); its
hyperparameters are the training fields below. The hypernetwork is ``hypernet=DIR`` (the CLI's
``--hypernet DIR``); without it, the one shipped with the organism, or the one ``ripple rledit
train`` cached for this model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from ripple.editing.editor import EDITORS, Editor, make_delta
from ripple.editing.hparams import LayeredHParams
from ripple.editing.limits import UNIT, Limit
from ripple.errors import RippleError
from ripple.rledit.features import keys_and_grads
from ripple.rledit.hypernet import Hypernetwork
from ripple.rledit.store import find_hypernet

NAME = "rledit"


def _whole(lo: int, hi: int) -> Limit:
    return Limit(lo, hi, integer=True, text=f"a whole number from {lo} to {hi}")


def _up_to(hi: float) -> Limit:
    return Limit(0, hi, lo_open=True, text=f"a finite number above 0 and at most {hi:g}")


def _from_zero(hi: float) -> Limit:
    return Limit(0, hi, text=f"a finite number from 0 to {hi:g}")


@dataclass(frozen=True)
class RLEditHParams(LayeredHParams):
    hypernet: str | None = None  # a directory written by 'ripple rledit train'
    layer_fracs: tuple[float, ...] = tuple(i / 31 for i in range(22, 31))  # the paper's 22-30 of 32 (Llama-3)
    rank: int = 1024
    n_blocks: int = 4
    lr_init: float = 1e-6  # each module's step size at initialisation
    meta_lr: float = 1e-5  # Adam on the hypernetwork's blocks, one step per sequence
    # Adam on each module's step size and ridge weight (the paper's lr_lr); None: meta_lr. The blocks
    # and the step sizes want different rates: 1e-3 trains the organism's step sizes well but, once the
    # blocks train at all (format 2), throws their edit loss from 1.6 to 7.7 in three sequences
    lr_lr: float | None = None
    loc_coef: float = 0.6  # weight of the KL locality term
    reg_coef: float = 1e-4  # weight of ‖ΔW‖²
    time_decay: float = 0.95  # weight of the loss of the batch j steps back: time_decay ** j
    back_depth: int = 10  # how many batches back the loss reaches (memory backtracking)
    max_grad_norm: float = 1.0
    batch_edits: int = 20  # edits per batch in training
    seq_batches: int = 10  # batches per training sequence (the model is not reset within one)
    n_sequences: int = 20  # training sequences; one optimiser step each
    paraphrases: int = 2  # paraphrase prompts per edit in the training loss
    loc_prompts: int = 20  # unrelated prompts per batch for the locality term

    # every number bounded above too: past these a training run would not end in a session or fit in memory
    LIMITS: ClassVar[dict[str, Limit]] = {
        "rank": _whole(1, 8192), "n_blocks": _whole(1, 64), "lr_init": _up_to(1.0), "meta_lr": _up_to(1.0),
        "lr_lr": _up_to(1.0),
        "loc_coef": _from_zero(1e6), "reg_coef": _from_zero(1e6), "time_decay": UNIT, "back_depth": _whole(1, 1000),
        "max_grad_norm": _up_to(1e6), "batch_edits": _whole(1, 10_000), "seq_batches": _whole(1, 10_000),
        "n_sequences": _whole(1, 1_000_000), "paraphrases": _whole(1, 100), "loc_prompts": _whole(1, 10_000)}


def hypernetwork(ctx, hp: RLEditHParams):
    """``(directory, hypernetwork)`` for this model (loaded once per context), checked against the model and
    against the layers ``hp`` asks for."""

    found = ctx.loaded.get((NAME, hp.hypernet))
    if found is None:

        where = find_hypernet(ctx.model, ctx.spec, hp.hypernet)
        hn = Hypernetwork.load(where)
        hn.check_model(ctx.model, ctx.spec, str(where))
        found = ctx.loaded[(NAME, hp.hypernet)] = (where, hn)
    where, hn = found
    want = hp.layers_for(ctx.n_layers())
    if tuple(want) != hn.layers:
        raise RippleError(f"the RLEdit hypernetwork in {where} edits layers {list(hn.layers)}, not {list(want)}; "
                          "drop the layers setting, or train a hypernetwork for these layers")
    return where, hn


def compute_rledit(ctx, requests, hp: RLEditHParams):

    t0 = time.perf_counter()
    where, hn = hypernetwork(ctx, hp)
    state = ctx.editor_state(NAME)
    feats = keys_and_grads(ctx.model, ctx.tok, ctx.spec, hn.layers, [(r.rendered, r.target_new) for r in requests])
    moments = hn.updated_moments(state.get("moments", hn.moments), feats)
    with torch.no_grad():
        deltas = {n: d.detach().float().cpu().contiguous() for n, d in hn.shifts(ctx.spec, feats, moments).items()}
    info = {"layers": list(hn.layers), "hypernet": str(where),
            "answer_tokens": int(next(iter(feats.values()))[0].shape[0]),
            "trained_batch_edits": hn.meta.get("hparams", {}).get("batch_edits")}
    delta = make_delta(ctx, NAME, requests, hp, deltas, info, t0)
    state["pending"] = (id(delta), moments)
    return delta


def commit_moments(ctx, requests, hp, delta) -> None:
    """After the edit is applied: the moments that included its tokens become the running ones."""
    state = ctx.editor_state(NAME)
    pending = state.pop("pending", None)
    if pending is not None and pending[0] == id(delta):
        state["moments"] = pending[1]


EDITORS.register(Editor(
    NAME, RLEditHParams, compute_rledit, after_apply=commit_moments,
    # the organism's settings come with its ripple_hparams.json. llama: the paper's late layers, and a
    # training budget sized for a ~100M model on a CPU (~40 CPU minutes on SmolLM2-135M): smaller
    # batches, a shorter backtrack, one paraphrase, and a step size at which an untrained network's
    # edits already land (the paper's 1e-6 leaves SmolLM2's answers unchanged; see reports/rledit.md), and
    # a step-size rate a tenth of it (Adam moves lr_m by about lr_lr a step; at 1e-3 the first step
    # zeroed it); the blocks at the organism's 1e-5 (at 1e-4 its edit loss rose over training; not yet
    # measured on llama)
    arch_defaults={"llama": {"rank": 256, "lr_init": 1e-3, "meta_lr": 1e-5, "lr_lr": 1e-4, "batch_edits": 10,
                             "seq_batches": 10,
                             "back_depth": 5, "n_sequences": 25, "paraphrases": 1, "loc_prompts": 10}},
    summary="a hypernetwork trained over edit sequences predicts each edit (Li et al. 2025); needs "
            "'ripple rledit train' or the organism's shipped one"))
