"""RLEdit's hypernetwork, one per shape of edited projection (Li et al., ICML 2025; written from the
description in ../shared/methods.md and the paper's public code, not copied from it).

For one edited linear layer and a batch of answer tokens, the inputs are the layer's input ``k``
(``[tokens, in]``) and the loss gradient at its output ``δ`` (``[tokens, out]``):

1. ``h = normalize([k; δ])`` by a running mean and standard deviation (:class:`Moments`, which
   keep updating as edits arrive, at test time too);
2. ``n_blocks`` residual low-rank blocks ``h ← h + scale_m · max(h A B + b, 0) + shift_m``, with
   ``B = 0``, ``b = 0``, ``shift = 0`` at first, so every block starts as the identity
   (``A`` is a standard normal ``[d, rank]``; ``scale_m``, ``shift_m`` are per-module embeddings).
   The rectifier is ``clamp(min=0)``, whose gradient at 0 is 1: ``relu``'s is 0, and with
   ``h A B + b`` exactly 0 at the start, ``A``, ``B``, ``b`` and ``scale`` would never get a
   gradient (the format-1 hypernetworks trained so: their blocks stayed the identity);
3. ``h`` splits back into ``k̃, δ̃``; each token's value change is ``Δv = -lr_m ⟨k, k̃⟩ δ̃`` (``lr_m``
   learnable per module, ``1e-6`` at first in the paper);
4. the weight change solves a ridge regression over the batch's tokens,
   ``ΔW = (KᵀK + e^{λ_m} I)⁻¹ Kᵀ ΔV`` (``[in, out]``; ``λ_m`` learnable, 0 at first), and every
   step is differentiable, so training reaches the blocks, ``lr_m`` and ``λ_m`` through the solve.

>>> import torch
>>> net = HyperNet(key_size=3, value_size=2, rank=4, n_blocks=2, n_modules=1, lr=1e-6)
>>> h = torch.randn(5, 5)
>>> bool(torch.equal(net.blocks_forward(h, 0), h))      # identity at initialisation
True
"""

from __future__ import annotations

import torch
from torch import nn

EPS = torch.finfo(torch.float32).eps


class Moments:
    """Running count, mean and sum of squared deviations of the rows seen so far (Chan et al.'s
    pairwise update), as three tensors; :meth:`updated` returns a new value, never changes this one."""

    def __init__(self, n: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor):
        self.n, self.mean, self.m2 = n, mean, m2

    @classmethod
    def empty(cls, size: int) -> Moments:
        return cls(torch.zeros((), dtype=torch.float64), torch.zeros(size, dtype=torch.float64),
                   torch.zeros(size, dtype=torch.float64))

    def updated(self, x: torch.Tensor) -> Moments:
        x = x.detach().double().cpu()
        nb = x.shape[0]
        if nb == 0:
            return self
        mb = x.mean(0)
        m2b = ((x - mb) ** 2).sum(0)
        n = self.n + nb
        d = mb - self.mean
        return Moments(n, self.mean + d * nb / n, self.m2 + m2b + d.pow(2) * self.n * nb / n)

    @property
    def std(self) -> torch.Tensor:
        return (self.m2 / torch.clamp(self.n - 1, min=1)).sqrt()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(x.device, x.dtype)
        return (x - mean) / (self.std.to(x.device, x.dtype) + EPS)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}n": self.n.reshape(1), f"{prefix}mean": self.mean, f"{prefix}m2": self.m2}

    @classmethod
    def from_tensors(cls, t: dict, prefix: str) -> Moments:
        return cls(t[f"{prefix}n"].reshape(()).double(), t[f"{prefix}mean"].double(), t[f"{prefix}m2"].double())

    def equal(self, other: Moments) -> bool:
        return all(torch.equal(a, b) for a, b in zip((self.n, self.mean, self.m2), (other.n, other.mean, other.m2)))


class Block(nn.Module):
    """``h + scale_m · max(h A B + b, 0) + shift_m``: the identity while ``B``, ``b`` and ``shift`` are zero."""

    def __init__(self, size: int, rank: int, n_modules: int):
        super().__init__()
        self.A = nn.Parameter(torch.randn(size, rank))
        self.B = nn.Parameter(torch.zeros(rank, size))
        self.bias = nn.Parameter(torch.zeros(size))
        self.scale = nn.Parameter(torch.ones(n_modules, size))
        self.shift = nn.Parameter(torch.zeros(n_modules, size))

    def forward(self, h: torch.Tensor, module: int) -> torch.Tensor:
        x = torch.clamp(h @ self.A @ self.B + self.bias, min=0)  # not relu: see the module docstring
        return h + self.scale[module] * x + self.shift[module]


class HyperNet(nn.Module):
    """The network for every edited projection of one shape ``[in=key_size, out=value_size]``;
    ``module`` indexes the projection (its own scale, shift, step size and ridge weight)."""

    def __init__(self, key_size: int, value_size: int, rank: int, n_blocks: int, n_modules: int, lr: float):
        super().__init__()
        self.key_size, self.value_size = key_size, value_size
        size = key_size + value_size
        self.blocks = nn.ModuleList([Block(size, rank, n_modules) for _ in range(n_blocks)])
        self.lr = nn.Parameter(torch.full((n_modules,), float(lr)))
        self.log_lam = nn.Parameter(torch.zeros(n_modules))

    def blocks_forward(self, h: torch.Tensor, module: int) -> torch.Tensor:
        for block in self.blocks:
            h = block(h, module)
        return h

    def value_change(self, K: torch.Tensor, D: torch.Tensor, module: int, moments: Moments) -> torch.Tensor:
        """``ΔV = -lr_m ⟨k, k̃⟩ δ̃`` per token (``[tokens, out]``) from raw keys and output gradients."""
        h = moments.normalize(torch.cat([K, D], dim=-1))
        k_t, d_t = self.blocks_forward(h, module).split([self.key_size, self.value_size], dim=-1)
        return -self.lr[module] * (K * k_t).sum(-1, keepdim=True) * d_t

    def shift_for(self, K: torch.Tensor, D: torch.Tensor, module: int, moments: Moments) -> torch.Tensor:
        """The weight change ``[in, out]`` for one projection: the ridge solve of the value change."""
        return ridge_shift(K, self.value_change(K, D, module, moments), self.log_lam[module])


def ridge_shift(K: torch.Tensor, dV: torch.Tensor, log_lam: torch.Tensor) -> torch.Tensor:
    """``(KᵀK + e^{log_lam} I)⁻¹ Kᵀ ΔV``: the ``[in, out]`` change ``ΔW`` minimizing
    ``‖K ΔW − ΔV‖² + e^{log_lam} ‖ΔW‖²``, differentiable in ``K``, ``ΔV`` and ``log_lam``."""
    eye = torch.eye(K.shape[1], dtype=K.dtype, device=K.device)
    return torch.linalg.solve(K.T @ K + log_lam.exp() * eye, K.T @ dV)
