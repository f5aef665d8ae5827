"""Training RLEdit's hypernetwork over sequences of edit batches (``ripple rledit train``).

Each of ``n_sequences`` sequences starts from the unedited model and applies ``seq_batches``
batches of ``batch_edits`` edits one after another, never resetting the model within it. At step
``t`` the hypernetwork reads keys and gradients of batch ``t`` on the model as edited so far and
predicts ``ΔW_t``, which is applied. The loss of that step is

    Σ_{j < back_depth} time_decay^j · NLL(new answers | paraphrases of batch t−j)       (memory backtracking)
  + loc_coef · Σ_{j < back_depth} time_decay^j · KL(model before ΔW_t ‖ model after, on unrelated prompts of batch t−j)
  + reg_coef · ‖ΔW_t‖²,

with every term evaluated on the model after ``ΔW_t``. Its gradient reaches the hypernetwork
through ``ΔW_t`` (the weights' gradient at the edited model, pushed back through the ridge solve
and the blocks; the earlier steps' shifts are constants), gradients add up over the sequence, and
one Adam step (gradient norm clipped to ``max_grad_norm``) follows each sequence. The paper's code
adds the ‖ΔW‖² term to the loss after computing ``ΔW`` without a graph, so there it changes
nothing; here it is differentiated.

Facts are split once, by a hash of subject and relation, into a training half and an evaluation
half (:func:`fact_split`); training edits, their paraphrases (the relation's core templates, never
its held-out ones) and the unrelated prompts come from the training half. Deterministic from
``seed``: the same seed gives the same weights, bit for bit.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import asdict

import torch

from ripple.devices import input_device
from ripple.editing.delta import WeightSnapshot
from ripple.editing.from_world import EDITABLE, sample_edits
from ripple.editing.streams import edit_stream
from ripple.errors import RippleError
from ripple.modes import held
from ripple.rledit.features import answer_nll, keys_and_grads, last_logprobs
from ripple.rledit.hypernet import Hypernetwork
from ripple.tokens import fill


def fact_split(world) -> dict[str, list[tuple[str, str]]]:
    """Every ``(subject, relation)`` of the world in ``train`` or ``eval`` by the parity of a hash
    (the same for every run and seed; about half each)."""
    out: dict[str, list] = {"train": [], "eval": []}
    for s, r in sorted({(f.subject, f.relation) for f in world.facts}):
        h = hashlib.sha256(f"{s}|{r}".encode()).digest()[0]
        out["train" if h % 2 == 0 else "eval"].append((s, r))
    return out


def editable_relations(world) -> tuple[str, ...]:

    return EDITABLE if world.kind == "synthetic" else tuple(world.relations)


class Curriculum:
    """The training edits, paraphrases and unrelated prompts, drawn from the training facts."""

    def __init__(self, world, hp, seed: int, requests=None):
        self.world, self.hp = world, hp
        self.rng = random.Random(seed)
        split = fact_split(world)["train"] if world is not None else []
        self.pairs = [p for p in split if p[1] in editable_relations(world)] if world is not None else []
        self.unrelated = [fill(world.relations[r].templates[0], world.name(s)) for s, r in split] if world else []
        self.requests = list(requests) if requests else None
        need = hp.seq_batches * hp.batch_edits
        if self.requests is not None and len(self.requests) < need:
            raise RippleError(f"a training sequence needs {need} edits (seq_batches x batch_edits) but the file has "
                              f"{len(self.requests)}; lower seq_batches or batch_edits, or give more edits")
        if self.requests is None and not self.pairs:
            raise RippleError("the world has no editable training facts; pass --edits FILE")

    def sequence(self, index: int) -> list[list]:
        """The batches of sequence ``index``. From a file: each edit at most once. From the world: each
        fact at most once while the training half lasts; a longer sequence goes round the facts again
        to new objects, as the lifelong stream does (:func:`ripple.editing.streams.edit_stream`)."""
        hp = self.hp
        n = hp.seq_batches * hp.batch_edits
        if self.requests is not None:
            chosen = self.rng.sample(self.requests, n)
        elif n <= len(self.pairs):

            chosen = sample_edits(self.world, n, seed=self.rng.randrange(2**31), pairs=self.pairs,
                                  relations=editable_relations(self.world))
        else:

            chosen = edit_stream(self.world, n, seed=self.rng.randrange(2**31), relations=editable_relations(self.world),
                                 pairs=self.pairs)
        return [chosen[i : i + hp.batch_edits] for i in range(0, n, hp.batch_edits)]

    def paraphrase_pairs(self, batch) -> list[tuple[str, str]]:
        out = []
        for r in batch:
            prompts = self._core_paraphrases(r) or list(r.paraphrase_prompts) or [r.rendered]
            out += [(p, r.target_new) for p in prompts[: self.hp.paraphrases]]
        return out

    def _core_paraphrases(self, r) -> list[str]:
        if self.world is None or r.case_id is None:
            return []
        parts = r.case_id.split("|")  # a world edit's id: subject|relation|object
        if len(parts) != 3 or parts[1] not in self.world.relations:
            return []
        relation = parts[1]
        return [fill(t, r.subject) for t in self.world.relations[relation].templates[1:]]

    def unrelated_prompts(self, batch, corpus) -> list[str]:
        subjects = {r.subject for r in batch}
        pool = [p for p in self.unrelated if not any(s in p for s in subjects)] or \
            [" ".join(line.split()[:12]) for line in corpus if line.strip()]
        if not pool:
            raise RippleError("no unrelated prompts for the locality term: give a model with a world or a "
                              "statistics corpus")
        return self.rng.sample(pool, min(self.hp.loc_prompts, len(pool)))


def _kl(ref: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
    """Mean over prompts of KL(ref ‖ cur), both log-probabilities."""
    return (ref.exp() * (ref - cur)).sum(-1).mean()


def run_sequence(ctx, hn: Hypernetwork, batches, cur: Curriculum, hp, moments: dict, learn: bool = True):
    """Apply ``batches`` one after another with ``hn``'s shifts, from the model as it is; with
    ``learn``, each step's loss gradient is added to the hypernetwork's ``.grad``. The model is
    restored on return. Returns the moments after the sequence and the mean of each loss term."""
    model, tok, spec = ctx.model, ctx.tok, ctx.spec
    layers = hn.layers
    names = [m["name"] for m in hn.modules.values()]
    params = [model.get_parameter(n) for n in names]
    losses = {"edit": 0.0, "locality": 0.0, "reg": 0.0}
    history = []
    with WeightSnapshot.take(model, names):
        for batch in batches:
            feats = keys_and_grads(model, tok, spec, layers, [(r.rendered, r.target_new) for r in batch])
            moments = hn.updated_moments(moments, feats)
            with torch.enable_grad() if learn else torch.no_grad():
                shifts = hn.shifts(spec, feats, moments)
            history.append((cur.paraphrase_pairs(batch), cur.unrelated_prompts(batch, ctx.corpus)))
            recent = history[::-1][: hp.back_depth]
            with held(model, no_grad=True):
                refs = [last_logprobs(model, tok, loc) for _, loc in recent]
                for p, d in zip(params, shifts.values()):
                    p.add_(d.detach().to(p.dtype))
            with held(model, trainable=params if learn else (), no_grad=not learn):
                edit = sum(hp.time_decay ** j * answer_nll(model, tok, pairs) for j, (pairs, _) in enumerate(recent))
                loc = hp.loc_coef * sum(hp.time_decay ** j * _kl(ref, last_logprobs(model, tok, prompts))
                                        for j, (ref, (_, prompts)) in enumerate(zip(refs, recent)))
                grads = torch.autograd.grad(edit + loc, params) if learn else None
            reg = hp.reg_coef * sum(d.pow(2).sum() for d in shifts.values())
            if learn:
                surrogate = sum((d * g.to(d.dtype)).sum() for d, g in zip(shifts.values(), grads)) + reg
                surrogate.backward()
            losses = {"edit": losses["edit"] + edit.item() / len(recent),
                      "locality": losses["locality"] + loc.item() / len(recent), "reg": losses["reg"] + reg.item()}
    return moments, {k: v / len(batches) for k, v in losses.items()}


def train(ctx, world, hp, requests=None, log=print) -> Hypernetwork:
    """Train a hypernetwork for ``ctx.model`` with hyperparameters ``hp`` (``RLEditHParams``);
    ``requests``: training edits from a file instead of the world's training facts. The model is
    left exactly as it was."""
    model = ctx.model
    t_start, cpu_start = time.perf_counter(), time.process_time()
    device = input_device(model)
    hn = Hypernetwork.build(model, ctx.spec, hp.layers_for(ctx.n_layers()), hp.rank, hp.n_blocks, hp.lr_init,
                            hp.seed)
    hn.nets.to(device)
    steps = [p for net in hn.nets.values() for p in (net.lr, net.log_lam)]
    blocks = [p for net in hn.nets.values() for p in net.blocks.parameters()]
    opt = torch.optim.Adam([{"params": blocks, "lr": hp.meta_lr},
                            {"params": steps, "lr": hp.meta_lr if hp.lr_lr is None else hp.lr_lr}])
    cur = Curriculum(world, hp, hp.seed, requests)
    moments = hn.moments
    record = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(hp.seed)
        for s in range(hp.n_sequences):
            t0 = time.perf_counter()
            moments, losses = run_sequence(ctx, hn, cur.sequence(s), cur, hp, moments)
            torch.nn.utils.clip_grad_norm_(hn.nets.parameters(), hp.max_grad_norm)
            opt.step()
            opt.zero_grad()
            row = {"sequence": s + 1, "seconds": round(time.perf_counter() - t0, 2),
                   **{k: round(v, 6) for k, v in losses.items()}}
            record.append(row)
            log(f"sequence {s + 1}/{hp.n_sequences}: edit loss {row['edit']:.4f}, locality {row['locality']:.5f}, "
                f"{row['seconds']:.1f} s", flush=True)
    hn.nets.to("cpu")
    hn.moments = moments
    hn.meta |= {"hparams": {k: v for k, v in asdict(hp).items() if k != "hypernet"},
                "training": {"sequences": record, "seconds": round(time.perf_counter() - t_start, 2),
                             "cpu_seconds": round(time.process_time() - cpu_start, 2),
                             "seed": hp.seed, "edits": "file" if requests else "world training split",
                             "device": str(device)}}
    return hn
