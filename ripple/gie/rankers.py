"""GIE rankers: which probe items to score first, to find what an edit changed without scoring all.

A :class:`Ranker` orders the other probe items by how likely the edit is to move them, from the
unedited model's :class:`~ripple.gie.measure.ItemState` alone. Each is declared once and
registered in :data:`RANKERS`; benchmarks/gie_estimate.py reads the registry.

>>> import torch
>>> from ripple.gie.measure import ItemState
>>> reps = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7]])
>>> state = ItemState(ids=("e", "a", "b", "c"), reps={0: reps}, greedy=("x",) * 4,
...                   logp=torch.zeros(4, dtype=torch.float64), correct=(True,) * 4)
>>> RANKERS.get("similarity").rank(state, edited=0, layer=0, position="subject_last")
[1, 3, 2]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ripple.registry import Registry


@dataclass(frozen=True)
class Ranker:
    """``scores(state, edited, layer, position) -> [n]`` float scores (higher: score sooner);
    :meth:`rank` turns them into the order of every item but the edited one (ties: lower index)."""

    name: str
    scores: Callable[..., torch.Tensor]
    summary: str = ""

    def rank(self, state, edited: int, layer: int, position: str) -> list[int]:
        s = self.scores(state, edited, layer, position).tolist()
        return sorted((i for i in range(len(s)) if i != edited), key=lambda i: (-s[i], i))


RANKERS: Registry[Ranker] = Registry("GIE ranker")


def cosine_to_edited(state, edited: int, layer: int, position: str) -> torch.Tensor:
    """Cosine similarity of each item's hidden state to the edited item's (float64)."""
    x = state.rep(layer, position).double()
    unit = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return unit @ unit[edited]


RANKERS.register(Ranker("similarity", cosine_to_edited,
                        summary="cosine similarity to the edited item's hidden state before the edit (GIE)"))
