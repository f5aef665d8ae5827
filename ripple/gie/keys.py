"""What the damage rankers read of the unedited model, cached once per probe set: each item's keys
(the input of every edited projection at every position) and the gradients of its answer's margin
and log-probability at that projection's output.

With these, an edit's first-order effect on every item costs a few small matrix products instead
of a forward pass per item (:mod:`ripple.gie.rankers`). One grad-enabled forward pass over the
probe set records the keys; each gradient kind is one backward pass, timed apart so the benchmark
can charge each ranker what it uses.

::

    cache = KeyCache.build(model, tok, spec, items, layers=[5], grads=("margin", "logp"))
    cache.keys[5].shape, cache.margin[:3]
    # -> (torch.Size([P, 1536]), tensor([3.1, 0.4, 7.9], dtype=torch.float64))
    effect = cache.output_change(delta, spec)   # {layer: [P, out]}: ΔW k at every cached position
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ripple.arch import act_name, get_module, get_spec, mlp_out_param, weight_as_out_in
from ripple.devices import input_device, param_value
from ripple.errors import RippleError
from ripple.hooks import MlpGradProbe, SiteTrace
from ripple.modes import held
from ripple.probes.record import encode_items
from ripple.probes.sets import ProbeItem
from ripple.scoring import length_batches, pad_ids
from ripple.tokens import answer_ids

GRAD_KINDS = ("margin", "logp")


@dataclass
class KeyCache:
    """Per cached position (rows ``P``, items' positions in item order): ``item`` index, ``pos`` in
    the item's token sequence, ``in_prompt`` (the position can reach the greedy first answer token).
    ``keys[layer]`` ``[P, in]``: the input of block ``layer``'s MLP output projection;
    ``grad_margin[layer]``/``grad_logp[layer]`` ``[P, out]``: the gradient at that projection's
    output of the item's margin (logit of its greedy first token minus the runner-up's, at the
    prompt's last token) and of log P(answer). Per item (``n``): ``margin`` (float64, >= 0),
    ``top2`` token ids, ``fact`` and ``last`` positions, ``direct`` ``[n, hidden]``: the margin's
    gradient at the residual stream after the last block (the direct path to the logits)."""

    ids: tuple[str, ...]
    layers: tuple[int, ...]
    item: torch.Tensor
    pos: torch.Tensor
    in_prompt: torch.Tensor
    keys: dict[int, torch.Tensor]
    margin: torch.Tensor
    top2: torch.Tensor
    subject_last: torch.Tensor
    last: torch.Tensor
    direct: torch.Tensor
    grad_margin: dict[int, torch.Tensor] = field(default_factory=dict)
    grad_logp: dict[int, torch.Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # forward, direct, margin, logp

    @property
    def n(self) -> int:
        return len(self.ids)

    def rows_at(self, which: torch.Tensor) -> torch.Tensor:
        """The cached row of each item's position ``which[i]``."""
        start = torch.zeros(self.n, dtype=torch.long)
        counts = torch.bincount(self.item, minlength=self.n)
        start[1:] = torch.cumsum(counts, 0)[:-1]
        return start + which

    def layer_deltas(self, delta, spec) -> dict[int, torch.Tensor]:
        """The edit's ``[out, in]`` change (float64) per cached layer; a one-line error when it
        changes a parameter the cache has no keys for."""
        by_name = {mlp_out_param(spec, layer): layer for layer in self.layers}
        unknown = [name for name in delta.deltas if name not in by_name]
        if unknown:
            raise RippleError(f"the edit changes {unknown[0]!r}, which this key cache does not cover (cached: the "
                              f"MLP output projections of layers {', '.join(map(str, self.layers))}); build the "
                              "KeyCache with the edit's layers, or rank with a ranker that needs no keys (similarity)")
        return {by_name[name]: weight_as_out_in(d, spec).double() for name, d in delta.deltas.items()}

    def output_change(self, delta, spec) -> dict[int, torch.Tensor]:
        """``ΔW k`` ``[P, out]`` (float64) at every cached position, per layer the edit changes,
        through a thin SVD of each ``ΔW`` (an edit of a few facts has low rank)."""
        out = {}
        for layer, dw in self.layer_deltas(delta, spec).items():
            u, s, vh = torch.linalg.svd(dw, full_matrices=False)
            r = int((s > s[0] * 1e-9).sum()) if s.numel() and s[0] > 0 else 0
            k = self.keys[layer].double()
            out[layer] = ((k @ vh[:r].T) * s[:r]) @ u[:, :r].T
        return out

    @classmethod
    def build(cls, model, tok, spec, items: Sequence[ProbeItem], layers: Sequence[int],
              grads: Sequence[str] = GRAD_KINDS, batch_size: int = 32) -> KeyCache:
        """Record ``items`` on the unedited ``model`` (see the class); ``grads``: which gradient
        kinds to compute (each one backward pass; ``()``: keys, margins and the direct path only,
        which :func:`~ripple.gie.measure.prepare_resume` also records in its own pass)."""
        spec = get_spec(model) if spec is None else spec
        bad = [g for g in grads if g not in GRAD_KINDS]
        if bad:
            raise RippleError(f"unknown gradient kind {bad[0]!r}; use {' or '.join(GRAD_KINDS)}")
        items = list(items)
        rec = KeyRecorder(model, spec, layers, items, tok)
        device = input_device(model)
        layers = rec.layers
        grad_out = {g: {layer: [] for layer in layers} for g in grads}
        seconds = dict.fromkeys(("forward", "direct", *grads), 0.0)
        prompts, answers = rec.prompts, rec.answers
        for batch in length_batches([len(p) + len(a) for p, a in zip(prompts, answers)], batch_size):
            t0 = time.perf_counter()
            ids, mask = pad_ids([prompts[j] + answers[j] for j in batch], tok, device)
            with held(model, trainable=()):
                with MlpGradProbe(model, spec, layers) as gp, SiteTrace(model, spec, [rec.final]) as st:
                    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
                rows = torch.arange(len(batch), device=device)
                at_last = torch.tensor([len(prompts[j]) - 1 for j in batch], device=device)
                z = logits[rows, at_last].float()
                seconds["forward"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                cr, cp, top2 = rec.record(batch, {layer: gp.key(layer) for layer in layers},
                                          st[rec.final][rows, at_last], z.detach())
                margin = z.gather(1, top2[:, :1]).squeeze(1) - z.gather(1, top2[:, 1:]).squeeze(1)
                seconds["direct"] += time.perf_counter() - t0
                for g in grads:
                    t0 = time.perf_counter()
                    if g == "margin":
                        target = margin.sum()
                    else:
                        lsm = torch.log_softmax(logits.float(), -1)
                        target = sum(lsm[r, len(prompts[j]) - 1 + torch.arange(len(answers[j]), device=device),
                                         torch.tensor(answers[j], device=device)].sum()
                                     for r, j in enumerate(batch))
                    got = torch.autograd.grad(target, gp.zeros(), retain_graph=True)
                    for layer, gr in zip(layers, got):
                        grad_out[g][layer].append(gr[cr, cp].detach().float().cpu())
                    seconds[g] += time.perf_counter() - t0
            del logits
        cache = rec.finish()
        cache.grad_margin = {layer: rec.order(grad_out["margin"][layer]) for layer in layers} if "margin" in grads else {}
        cache.grad_logp = {layer: rec.order(grad_out["logp"][layer]) for layer in layers} if "logp" in grads else {}
        cache.seconds = {k: round(v, 4) for k, v in seconds.items()}
        return cache


class KeyRecorder:
    """Collects a :class:`KeyCache`'s keys, margins and direct-path gradients batch by batch, from
    a forward pass someone else runs (:meth:`KeyCache.build`, or the probe's own measuring pass)."""

    def __init__(self, model, spec, layers: Sequence[int], items: Sequence[ProbeItem], tok):
        self.layers = tuple(sorted(set(layers)))
        self.items = list(items)
        if not self.items or not self.layers:
            raise RippleError("a key cache needs probe items and at least one layer; pass the edit's layers")
        n_layers = spec.n_layers(model)
        if any(not 0 <= layer < n_layers for layer in self.layers):
            raise RippleError(f"layers {self.layers} are out of range for a {n_layers}-block model; "
                              f"use 0..{n_layers - 1}")
        self.spec = spec
        self.prompts, self.where = encode_items(tok, self.items)
        self.answers = [answer_ids(tok, item.answer) for item in self.items]
        self.final = act_name(n_layers - 1, "out")
        self.names = {spec.block(layer, spec.mlp_out): layer for layer in self.layers}
        self.model, self.unembed = model, spec.unembed + ".weight"  # read where it is kept, when needed
        self.norm = get_module(model, spec.final_norm)
        self.chunks: list[tuple[list[int], int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.keys: dict[int, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        self.cells: list[list[tuple[int, int]]] = []

    def record(self, batch: list[int], key_inputs: dict[int, torch.Tensor], x_last: torch.Tensor,
               z_last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch: ``key_inputs[layer]`` ``[b, seq, in]``, the residual after the last block at
        each prompt's last token ``[b, hidden]`` and the logits there ``[b, vocab]``; returns the
        (row, position) index tensors of the batch's cached cells and the top-2 token ids [b, 2]."""
        device = x_last.device
        top2 = z_last.topk(2, dim=-1).indices
        margin = z_last.gather(1, top2[:, :1]).squeeze(1) - z_last.gather(1, top2[:, 1:]).squeeze(1)
        with torch.enable_grad():
            x = x_last.detach().clone().requires_grad_(True)  # the direct path: final norm and unembedding
            unembed = param_value(self.model, self.unembed)
            pick = top2.to(unembed.device)
            w = unembed[pick[:, 0]] - unembed[pick[:, 1]]
            y = self.norm(x).float()
            (direct,) = torch.autograd.grad((y * w.detach().to(y.device).float()).sum(), [x])
        cells = [(r, p) for r, j in enumerate(batch) for p in range(len(self.prompts[j]) + len(self.answers[j]) - 1)]
        cr = torch.tensor([c[0] for c in cells], device=device)
        cp = torch.tensor([c[1] for c in cells], device=device)
        for layer in self.layers:
            self.keys[layer].append(key_inputs[layer][cr, cp].detach().float().cpu())
        self.cells.append(cells)
        self.chunks.append((batch, len(cells), margin.detach().double().cpu(), top2.cpu(), direct.detach().float().cpu()))
        return cr, cp, top2.to(device)

    def order(self, per_chunk: list[torch.Tensor]) -> torch.Tensor:
        """Rows of the batches, concatenated, put in item order (each item's positions in order)."""
        return torch.cat(per_chunk)[self._flat]

    def finish(self) -> KeyCache:
        n = len(self.items)
        per_item: list[list[int]] = [[] for _ in range(n)]
        margin = torch.zeros(n, dtype=torch.float64)
        top2 = torch.zeros(n, 2, dtype=torch.long)
        direct = torch.zeros(n, self.chunks[0][4].shape[1])
        offset = 0
        for (batch, size, m, t2, d), cells in zip(self.chunks, self.cells):
            for i, (r, _) in enumerate(cells):
                per_item[batch[r]].append(offset + i)
            offset += size
            idx = torch.tensor(batch)
            margin[idx], top2[idx], direct[idx] = m, t2, d
        self._flat = torch.tensor([i for rows in per_item for i in rows], dtype=torch.long)
        item = torch.tensor([i for i, rows in enumerate(per_item) for _ in rows], dtype=torch.long)
        pos = torch.cat([torch.arange(len(rows)) for rows in per_item])
        plen = torch.tensor([len(p) for p in self.prompts])
        return KeyCache(ids=tuple(it.id for it in self.items), layers=self.layers, item=item, pos=pos,
                        in_prompt=pos < plen[item], keys={layer: self.order(self.keys[layer]) for layer in self.layers},
                        margin=margin, top2=top2, subject_last=torch.tensor(self.where["subject_last"]),
                        last=torch.tensor(self.where["last"]), direct=direct)
