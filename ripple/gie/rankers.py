"""GIE rankers: which probe items to evaluate first, to find what an edit broke without evaluating all.

A :class:`Ranker` scores every probe item's risk of damage from what is cheap: the unedited
model's probe measurement (:class:`~ripple.gie.measure.ItemState`), the cached keys and gradients
(:class:`~ripple.gie.keys.KeyCache`) and the edit itself; higher scores are evaluated sooner.
Each is declared once and registered in :data:`RANKERS`; benchmarks/gie/recall.py measures them.

* ``similarity``: cosine similarity to the edited item's hidden state (GIE's own ranking);
* ``hops``: knowledge-graph distance from the edited item (nearer first; similarity within a hop);
* ``key_norm``: ``max_t ‖ΔW k_t‖`` over the item's prompt positions (all edited layers together);
  ``key_norm_fact`` at its fact token only; ``key_margin``: ``key_norm`` over the answer's margin;
* ``direct``: the edit's change at the prompt's last token taken straight to the logits (final norm
  and unembedding, linearized), as a share of the margin it would erase;
* ``taylor``: the first-order change of the margin through the whole network,
  ``Σ_t g_t·ΔW k_t`` with ``g_t`` the margin's gradient at the projection's output, over the margin;
* ``gradsim``: cosine of the item's and the edit's loss gradients at the edited weights (GradSim,
  Qin et al. 2024);
* ``combined``: reciprocal-rank fusion of ``key_sqrt_margin`` and ``taylor``.

>>> import torch
>>> from ripple.gie.measure import ItemState
>>> reps = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7]])
>>> state = ItemState(ids=("e", "a", "b", "c"), reps={0: reps}, greedy=("x",) * 4,
...                   logp=torch.zeros(4, dtype=torch.float64), correct=(True,) * 4)
>>> RANKERS.get("similarity").rank(RankInput(state, edited=(0,), layer=0, position="subject_last"))
[1, 3, 2]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import networkx as nx
import torch

from ripple.devices import input_device
from ripple.errors import RippleError
from ripple.hooks import MlpGradProbe
from ripple.modes import held
from ripple.registry import Registry
from ripple.scoring import pad_ids
from ripple.tokens import answer_ids, text_ids

MARGIN_FLOOR = 1e-3  # logits; a margin below it counts as this (the answer is a coin flip)
RRF_K = 60  # reciprocal-rank fusion's constant (Cormack et al. 2009)


@dataclass
class RankInput:
    """What a ranker may read. ``edited``: indices of the items the edit rewrites (left out of
    the ranking); ``layer``/``position``: where similarity is read; ``items``: the probe items (for
    their links); ``cache``/``delta``/``spec``: keys and gradients, the edit, the architecture;
    ``model``/``tok``/``requests``: for the edit's own gradient (``gradsim``)."""

    state: object
    edited: tuple[int, ...]
    layer: int
    position: str
    items: Sequence = ()
    cache: object = None
    delta: object = None
    spec: object = None
    model: object = None
    tok: object = None
    requests: Sequence = ()
    memo: dict = field(default_factory=dict)  # shared between rankers of one input (ΔW k, ...)

    @property
    def n(self) -> int:
        return len(self.state.ids)


@dataclass(frozen=True)
class Ranker:
    """``scores(inp) -> [n]`` float scores (higher: evaluate sooner); :meth:`rank` turns them into
    the order of every item but the edited ones (ties: lower index). ``needs``: what it reads
    beyond the probe state (``keys``, ``margin``, ``logp``: the cache's gradient kinds; ``links``)."""

    name: str
    scores: Callable[[RankInput], torch.Tensor]
    needs: tuple[str, ...] = ()
    summary: str = ""

    def rank(self, inp: RankInput) -> list[int]:
        if any(need in ("keys", "margin", "logp") for need in self.needs):
            _require_cache(inp, self)
        s = self.scores(inp).double()
        s = torch.where(torch.isnan(s), torch.full_like(s, -float("inf")), s).tolist()
        skip = set(inp.edited)
        return sorted((i for i in range(len(s)) if i not in skip), key=lambda i: (-s[i], i))


RANKERS: Registry[Ranker] = Registry("GIE ranker")


def _require_cache(inp: RankInput, ranker: Ranker) -> None:
    if inp.cache is None or inp.delta is None or inp.spec is None:
        raise RippleError(f"ranker {ranker.name!r} needs the key cache and the edit; build a KeyCache on the "
                          "unedited model and pass the delta, or use the similarity ranker")
    if inp.cache.ids != tuple(inp.state.ids):
        raise RippleError("the key cache was built on other probe items; build it on the probe set being ranked")
    kinds = {"margin": inp.cache.grad_margin, "logp": inp.cache.grad_logp}
    missing = [need for need in ranker.needs if need in kinds and not kinds[need]]
    if missing:
        raise RippleError(f"ranker {ranker.name!r} needs the {missing[0]} gradients; build the KeyCache with "
                          f"grads=({missing[0]!r},)")


def cosine_to_edited(inp: RankInput) -> torch.Tensor:
    """Cosine similarity of each item's hidden state to the edited items' (the nearest one, float64)."""
    x = inp.state.rep(inp.layer, inp.position).double()
    unit = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return (unit @ unit[list(inp.edited)].T).max(dim=1).values


def link_hops(inp: RankInput) -> torch.Tensor:
    """Minus the knowledge-graph distance (links only) from the nearest edited item, plus half the
    similarity to order items within one distance; unreachable items last."""
    ids = list(inp.state.ids)
    g = nx.Graph()
    g.add_nodes_from(ids)
    for item in inp.items:
        for link in item.links:
            g.add_edge(item.id, link.to)
    best: dict[str, int] = {}
    for e in inp.edited:
        for node, d in nx.single_source_shortest_path_length(g, ids[e]).items():
            best[node] = min(d, best.get(node, d))
    hops = torch.tensor([float(best.get(i, 1e6)) for i in ids], dtype=torch.float64)
    return -hops + 0.5 * cosine_to_edited(inp)


def _changes(inp: RankInput) -> dict[int, torch.Tensor]:
    if "dwk" not in inp.memo:
        inp.memo["dwk"] = inp.cache.output_change(inp.delta, inp.spec)
    return inp.memo["dwk"]


def _per_item_max(values: torch.Tensor, inp: RankInput, rows: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(inp.n, dtype=torch.float64)
    return out.scatter_reduce(0, inp.cache.item[rows], values[rows], reduce="amax", include_self=True)


def _margin(inp: RankInput) -> torch.Tensor:
    return inp.cache.margin.clamp_min(MARGIN_FLOOR)


def key_norm(inp: RankInput) -> torch.Tensor:
    """``max_t (Σ_layers ‖ΔW k_t‖²)^½`` over each item's prompt positions."""
    sq = sum(c.pow(2).sum(1) for c in _changes(inp).values())
    return _per_item_max(sq.sqrt(), inp, inp.cache.in_prompt.nonzero().squeeze(1))


def key_norm_fact(inp: RankInput) -> torch.Tensor:
    """``(Σ_layers ‖ΔW k‖²)^½`` at each item's fact token (``position``: subject_last or last)."""
    at = inp.cache.last if inp.position == "last" else inp.cache.subject_last
    rows = inp.cache.rows_at(at)
    return sum(c[rows].pow(2).sum(1) for c in _changes(inp).values()).sqrt()


def key_margin(inp: RankInput) -> torch.Tensor:
    return key_norm(inp) / _margin(inp)


def key_sqrt_margin(inp: RankInput) -> torch.Tensor:
    """``key_norm / √m``: between the two, for a real model whose margins span decades (a flip
    needs the change to beat the margin, but the change's gain to the logits grows with it too)."""
    return key_norm(inp) / _margin(inp).sqrt()


def direct_effect(inp: RankInput) -> torch.Tensor:
    """``-(∂m/∂x_L) · Σ_layers ΔW k_last / m``: the share of the margin ``m`` that the edit's change
    at the last prompt token erases if it went straight to the logits."""
    rows = inp.cache.rows_at(inp.cache.last)
    hidden = inp.cache.direct.shape[1]
    change = sum(c[rows] for c in _changes(inp).values() if c.shape[1] == hidden)
    if not torch.is_tensor(change):
        raise RippleError("the direct-path ranker needs an edit of a projection that writes the residual stream")
    return -(inp.cache.direct.double() * change).sum(1) / _margin(inp)


def taylor_effect(inp: RankInput) -> torch.Tensor:
    """``-Σ_layers Σ_t g_t · ΔW k_t / m``: the first-order change of the margin, as a share of it."""
    total = torch.zeros(inp.n, dtype=torch.float64)
    for layer, c in _changes(inp).items():
        total.index_add_(0, inp.cache.item, (inp.cache.grad_margin[layer].double() * c).sum(1))
    return -total / _margin(inp)


def edit_gradient(model, tok, spec, requests, layers) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer ``(K, G)``: the keys ``[S, in]`` and the gradients ``[S, out]`` of the requests'
    log P(new object | prompt) at the MLP output projection, over every scored position."""

    seqs, spans = [], []
    for r in requests:
        p, a = text_ids(tok, r.rendered), answer_ids(tok, r.target_new)
        seqs.append(p + a)
        spans.append((len(p), len(a)))
    device = input_device(model)
    ids, mask = pad_ids(seqs, tok, device)
    with held(model, trainable=()):
        with MlpGradProbe(model, spec, layers) as gp:
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float(), -1)
        total = sum(logp[j, p - 1 + torch.arange(a, device=device), torch.tensor(seqs[j][p:], device=device)].sum()
                    for j, (p, a) in enumerate(spans))
        grads = torch.autograd.grad(total, gp.zeros())
    cells = [(j, t) for j, (p, a) in enumerate(spans) for t in range(p + a - 1)]
    cr, cp = torch.tensor([c[0] for c in cells]), torch.tensor([c[1] for c in cells])
    return {layer: (gp.key(layer)[cr, cp].detach().double().cpu(), g[cr, cp].double().cpu())
            for layer, g in zip(gp.layers, grads)}


def gradient_similarity(inp: RankInput) -> torch.Tensor:
    """Cosine between ``∇_W log P(answer)`` of each item and of the edit, over the edited weights
    (``∇_W = Σ_t g_t k_tᵀ``, so inner products need only the positions' Gram matrices)."""
    cache = inp.cache
    layers = sorted(cache.layer_deltas(inp.delta, inp.spec))
    if "edit_grad" not in inp.memo:
        if not inp.requests or inp.model is None:
            raise RippleError("the gradsim ranker needs the model and the edit's requests; pass them in RankInput")
        inp.memo["edit_grad"] = edit_gradient(inp.model, inp.tok, inp.spec, list(inp.requests), layers)
    edit = inp.memo["edit_grad"]
    num = torch.zeros(inp.n, dtype=torch.float64)
    sq = torch.zeros(inp.n, dtype=torch.float64)
    e_sq = 0.0
    for layer in layers:
        K, G = cache.keys[layer].double(), cache.grad_logp[layer].double()
        Ke, Ge = edit[layer]
        num.index_add_(0, cache.item, ((G @ Ge.T) * (K @ Ke.T)).sum(1))
        e_sq += float(((Ge @ Ge.T) * (Ke @ Ke.T)).sum())
        Gp, Kp = _by_item(G, cache), _by_item(K, cache)  # [n, T, .], zero-padded
        sq += ((Gp @ Gp.transpose(1, 2)) * (Kp @ Kp.transpose(1, 2))).sum((1, 2))
    return num / (sq.clamp_min(0).sqrt() * max(e_sq, 0.0) ** 0.5).clamp_min(1e-300)


def _by_item(rows: torch.Tensor, cache) -> torch.Tensor:
    """The cached rows ``[P, d]`` as ``[n, T, d]``, each item's positions zero-padded to the longest."""
    counts = torch.bincount(cache.item, minlength=cache.n)
    out = rows.new_zeros(cache.n, int(counts.max()), rows.shape[1])
    out[cache.item, cache.pos] = rows
    return out


def fused(inp: RankInput, names: Sequence[str] = ("key_sqrt_margin", "taylor")) -> torch.Tensor:
    """Reciprocal-rank fusion: ``Σ_r 1 / (RRF_K + rank_r(i))`` over the rankers ``names``."""
    total = torch.zeros(inp.n, dtype=torch.float64)
    for name in names:
        s = RANKERS.get(name).scores(inp).double()
        order = sorted(range(inp.n), key=lambda i: (-s[i].item(), i))
        rank = torch.empty(inp.n, dtype=torch.float64)
        rank[torch.tensor(order)] = torch.arange(1, inp.n + 1, dtype=torch.float64)
        total += 1.0 / (RRF_K + rank)
    return total


for _r in (
    Ranker("similarity", cosine_to_edited, summary="cosine similarity to the edited item's hidden state (GIE)"),
    Ranker("hops", link_hops, ("links",), "knowledge-graph distance from the edited item, nearest first"),
    Ranker("key_norm", key_norm, ("keys",), "largest |ΔW k| over the item's prompt positions"),
    Ranker("key_norm_fact", key_norm_fact, ("keys",), "|ΔW k| at the item's fact token"),
    Ranker("key_margin", key_margin, ("keys",), "largest |ΔW k| over the answer's margin"),
    Ranker("key_sqrt_margin", key_sqrt_margin, ("keys",), "largest |ΔW k| over the square root of the margin"),
    Ranker("direct", direct_effect, ("keys",), "the edit's change at the last token, straight to the logits, "
           "over the margin"),
    Ranker("taylor", taylor_effect, ("keys", "margin"), "first-order change of the margin through the network, "
           "over the margin"),
    Ranker("gradsim", gradient_similarity, ("keys", "logp"), "cosine of the item's and the edit's loss gradients "
           "at the edited weights (GradSim)"),
    Ranker("combined", fused, ("keys", "margin"), "reciprocal-rank fusion of key_sqrt_margin and taylor"),
):
    RANKERS.register(_r)
