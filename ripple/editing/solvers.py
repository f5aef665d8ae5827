"""Closed-form weight updates of the locate-then-edit family, as pure tensor functions.

All work in the ``[out, in]`` orientation (``value = W @ key``), in float64, and never
invert a matrix explicitly. Notation follows ``../shared/methods.md``: ``C`` is the
uncentered second moment of keys at the layer, ``K`` holds edit keys as columns, ``R``
the residuals (target values minus current values) as columns.

>>> import torch
>>> W, C = torch.randn(4, 3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)
>>> k, v = torch.randn(3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
>>> torch.allclose((W + rome_update(W, C, k, v)) @ k, v)
True
"""

from __future__ import annotations

import torch


def _f64(*xs):
    return [x.to(torch.float64) for x in xs]


def rank_one_update(residual: torch.Tensor, C: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``residual (C⁻¹k)ᵀ / ((C⁻¹k)ᵀ k)``: adds ``residual`` to the value of ``k`` and nothing to
    any key ``j`` with ``jᵀ C⁻¹ k = 0``."""
    residual, C, k = _f64(residual, C, k)
    cik = torch.linalg.solve(C, k)
    return torch.outer(residual, cik) / (cik @ k)


def rome_update(W: torch.Tensor, C: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ROME's rank-one update: ``(v - W k) (C⁻¹k)ᵀ / ((C⁻¹k)ᵀ k)``; maps ``k`` to ``v`` exactly.

    The same ``k`` is used in the numerator and denominator (the r-ROME fix for the
    sequential-editing blow-up)."""
    W, k, v = _f64(W, k, v)
    return rank_one_update(v - W @ k, C, k)


def memit_update(R: torch.Tensor, K: torch.Tensor, C: torch.Tensor, lam: float) -> torch.Tensor:
    """MEMIT's least-squares update for one layer: ``ΔW = R Kᵀ (λ C + K Kᵀ)⁻¹``.

    ``R`` is ``[out, n]``, ``K`` is ``[in, n]``. With ``lam = 0`` and ``K`` of full row rank this
    is the plain least-squares solution of ``ΔW K = R``."""
    R, K, C = _f64(R, K, C)
    A = lam * C + K @ K.T
    return torch.linalg.solve(A, K @ R.T).T  # (A⁻¹ K Rᵀ)ᵀ = R Kᵀ A⁻¹ since A is symmetric


def through_rms_norm(g: torch.Tensor, M: torch.Tensor, R: torch.Tensor, eps: float = 0.0,
                     iters: int = 100) -> torch.Tensor:
    """The change ``D`` of an RMS norm's input ``M`` (``[d, n]``, one column a prompt) that moves
    its output ``g ⊙ m / sqrt(mean(m²) + eps)`` by ``R`` as nearly as the norm allows, for MEMIT's residual
    targets through a post-MLP norm (Gemma 2 and 3): a change ``R`` of the norm's *input* would
    be scaled by ``g / rms(m)``, a hundredfold in Gemma-3's middle blocks.

    The norm's output has unit RMS before ``g``, so the nearest reachable output solves
    ``min ‖g ⊙ u − y‖`` over ``rms(u) = 1`` with ``y = g ⊙ m/rms(m) + R``: ``u = g ⊙ y / (g² + μ)``,
    with ``μ`` found by bisection. The norm ignores its input's scale; the new input keeps the
    old one's RMS (the nearest point on the ray can be near zero, where the norm is fragile). A
    reachable target is met exactly:

    >>> g, m = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([[0.5], [-1.0], [2.0]])
    >>> out = lambda x: g[:, None] * x / x.pow(2).mean(0).sqrt()
    >>> y = out(torch.tensor([[1.0], [1.0], [-1.0]]))
    >>> D = through_rms_norm(g, m, y - out(m))
    >>> bool(torch.allclose(out(m + D), y.double(), atol=1e-6))
    True
    """
    g, M, R = _f64(g, M, R)
    rms = lambda x: x.pow(2).mean(0, keepdim=True).sqrt()  # noqa: E731
    c = rms(M) / (rms(M).pow(2) + eps).sqrt()  # eps's shrink, the same for any input of this RMS
    gy = g[:, None] * (g[:, None] * M / rms(M) + R / c)
    g2 = (g * g)[:, None]
    excess = lambda mu: rms(gy / (g2 + mu)) - 1.0  # noqa: E731 - decreasing in mu above -min(g^2)
    lo = torch.full_like(M[:1], float(-g2.min()))
    lo = lo + 1e-12 * torch.maximum(lo.abs(), torch.ones_like(lo))
    hi = torch.ones_like(lo)
    while bool((excess(hi) > 0).any()):
        hi = torch.where(excess(hi) > 0, hi * 4.0, hi)
    for _ in range(iters):
        mid = (lo + hi) / 2
        up = excess(mid) > 0
        lo, hi = torch.where(up, mid, lo), torch.where(up, hi, mid)
    U = gy / (g2 + (lo + hi) / 2)
    return U * (rms(M) / rms(U)) - M


def emmet_update(R: torch.Tensor, K: torch.Tensor, C: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """EMMET's equality-constrained batch update: ``Δ = R (Kᵀ C⁻¹ K + εI)⁻¹ Kᵀ C⁻¹``.

    With one request and ``eps = 0`` it equals :func:`rome_update`."""
    R, K, C = _f64(R, K, C)
    CiK = torch.linalg.solve(C, K)  # C⁻¹ K, [in, n]
    G = K.T @ CiK + eps * torch.eye(K.shape[1], dtype=K.dtype)
    return R @ torch.linalg.solve(G, CiK.T)  # R G⁻¹ (C⁻¹K)ᵀ ; C symmetric


def null_space_projector(C: torch.Tensor, threshold: float = 1e-2, relative: bool = True) -> torch.Tensor:
    """AlphaEdit's ``P = Û Ûᵀ`` over eigenvectors of ``C`` whose eigenvalue is below ``threshold``
    (relative to the largest when ``relative``): updates through ``P`` leave preserved keys unchanged."""
    (C,) = _f64(C)
    vals, vecs = torch.linalg.eigh((C + C.T) / 2)
    cut = threshold * vals.max() if relative else threshold
    U = vecs[:, vals < cut]
    return U @ U.T


def null_space_share(P: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """``tr(P C) / tr(C)``: the share of the keys' second moment ``C`` that lies in the span of the
    projector ``P`` (for AlphaEdit's ``P``, the eigenvalues of ``C`` under its threshold over all of them)."""
    P, C = _f64(P, C)
    return (P * C).sum() / C.trace()  # P symmetric: tr(P C) = Σ P ∘ C


def alphaedit_update(R: torch.Tensor, K: torch.Tensor, P: torch.Tensor,
                     K_prev_outer: torch.Tensor | None = None, reg: float = 1.0) -> torch.Tensor:
    """AlphaEdit: ``Δ = R Kᵀ P (K_p K_pᵀ P + K Kᵀ P + reg·I)⁻¹``, ``K_p K_pᵀ`` the running sum of
    earlier edit keys' outer products (``K_prev_outer``). Since ``Δ = X P`` for some ``X``, any
    key ``k`` with ``P k = 0`` (a preserved key) maps to the same value as before."""
    R, K, P = _f64(R, K, P)
    n = K.shape[0]
    prev = torch.zeros(n, n, dtype=torch.float64) if K_prev_outer is None else K_prev_outer.to(torch.float64)
    A = prev @ P + K @ K.T @ P + reg * torch.eye(n, dtype=torch.float64)
    # Δ A = R Kᵀ P  ->  Aᵀ Δᵀ = P K Rᵀ (P symmetric)
    return torch.linalg.solve(A.T, P @ K @ R.T).T


def rect_mask(delta: torch.Tensor, W: torch.Tensor, keep: float = 0.4) -> torch.Tensor:
    """RECT: keep the top ``keep`` share of ``delta``'s entries by relative change ``|Δ/W|``."""
    rel = delta.abs() / W.abs().clamp(min=1e-12)
    k = max(1, int(round(keep * rel.numel())))
    cut = rel.flatten().kthvalue(rel.numel() - k + 1).values
    return delta * (rel >= cut)


def c_cosine(C: torch.Tensor, K: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Cosine of each column of ``K`` with ``k`` in the ``C⁻¹`` metric (the metric of the rank-one
    update: a key with cosine 1 receives the whole edit, one with cosine 0 none of it)."""
    C, K, k = _f64(C, K, k)
    Cik = torch.linalg.solve(C, k)
    CiK = torch.linalg.solve(C, K)
    num = K.T @ Cik
    return num / ((K * CiK).sum(0).clamp(min=1e-300).sqrt() * (k @ Cik).clamp(min=1e-300).sqrt())


def keep_and_zero_correction(delta: torch.Tensor, K_keep: torch.Tensor, K_zero: torch.Tensor, C: torch.Tensor,
                             rows: torch.Tensor | None = None, ridge: float = 0.0) -> torch.Tensor:
    """SIR's re-solve: the correction ``E`` of least ``C``-norm (``tr(E C Eᵀ)``), non-zero only in
    ``rows`` (all rows when None), such that ``(delta + E)`` maps every column of ``K_keep`` as
    ``delta`` does and every column of ``K_zero`` to zero, on those rows:

        E[rows] = B (Kᵀ C⁻¹ K)⁻¹ Kᵀ C⁻¹,   K = [K_keep, K_zero],   B = [0, -delta[rows] K_zero]

    ``ridge`` (relative to the Gram matrix's mean diagonal) trades exactness for stability when keys
    are nearly parallel. For a ROME update (``delta`` the least-norm map of ``k*`` to its residual),
    ``delta + E`` is the least-norm update meeting all the constraints (EMMET's form with ε = 0)."""
    delta, K_keep, K_zero, C = _f64(delta, K_keep, K_zero, C)
    out = torch.zeros_like(delta)
    if K_zero.shape[1] == 0:
        return out
    rows = torch.arange(delta.shape[0]) if rows is None else rows
    K = torch.cat([K_keep, K_zero], dim=1)
    CiK = torch.linalg.solve(C, K)
    G = K.T @ CiK
    if ridge:
        G = G + ridge * G.diagonal().mean() * torch.eye(G.shape[0], dtype=G.dtype)
    B = torch.cat([torch.zeros(len(rows), K_keep.shape[1], dtype=delta.dtype), -(delta[rows] @ K_zero)], dim=1)
    out[rows] = torch.linalg.solve(G, B.T).T @ CiK.T  # B G⁻¹ (C⁻¹K)ᵀ; G symmetric
    return out


def select_rows(harm: torch.Tensor, share: float) -> torch.Tensor:
    """The fewest indices whose ``harm`` (non-negative) adds up to at least ``share`` of the total,
    largest first; empty when there is no harm."""
    harm = harm.clamp(min=0)
    total = harm.sum()
    if total <= 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.argsort(harm, descending=True)
    need = int(torch.searchsorted(torch.cumsum(harm[order], 0), share * total).item()) + 1
    return order[: min(need, len(order))].sort().values


def principal_basis(K: torch.Tensor, energy: float = 0.995, max_rank: int | None = None) -> torch.Tensor:
    """An orthonormal basis ``[in, r]`` of the fewest left singular directions of ``K`` holding
    ``energy`` of its squared norm (at most ``max_rank``): a linear constraint on every column of
    ``K`` holds, up to the energy left out, when it holds on these directions."""
    (K,) = _f64(K)
    if K.shape[1] == 0:
        return K
    U, S, _ = torch.linalg.svd(K, full_matrices=False)
    share = torch.cumsum(S**2, 0) / (S**2).sum().clamp(min=1e-300)
    r = int(torch.searchsorted(share, torch.tensor(energy, dtype=share.dtype)).item()) + 1
    r = min(r, len(S), max_rank if max_rank is not None else len(S))
    return U[:, :r]
