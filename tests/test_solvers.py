"""The closed-form updates of ripple.editing.solvers against hand-derived oracles, in float64.

Oracles: the defining equations (``(W+Δ)k = v``, ``ΔK = R``), explicit inverses, ``lstsq``,
and a covariance built from a known eigendecomposition.
"""

import pytest
import torch

from ripple.editing.solvers import (
    alphaedit_update,
    emmet_update,
    memit_update,
    null_space_projector,
    null_space_share,
    rank_one_update,
    rect_mask,
    rome_update,
)

D = torch.float64
IN, OUT = 7, 5


def rand(*shape, seed):
    return torch.randn(*shape, dtype=D, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def W():
    return rand(OUT, IN, seed=1)


@pytest.fixture
def C():
    """Well conditioned: an uncentered second moment of 50 random keys plus a small ridge."""
    A = rand(IN, 50, seed=2)
    return A @ A.T / 50 + 1e-3 * torch.eye(IN, dtype=D)


def assert_close(a, b, tol=1e-10):
    assert a.shape == b.shape
    assert torch.allclose(a, b, rtol=tol, atol=tol), (a - b).abs().max()


def c_orthogonal(C, k, seed):
    """A random key ``j`` with ``jᵀ C⁻¹ k = 0``: a random vector minus its C⁻¹-projection on ``k``."""
    r = rand(IN, seed=seed)
    cik = torch.linalg.inv(C) @ k
    return r - (r @ cik) / (k @ cik) * k


def test_rome_maps_the_key_to_the_value_exactly(W, C):
    k, v = rand(IN, seed=3), rand(OUT, seed=4)
    delta = rome_update(W, C, k, v)
    assert delta.dtype == D and delta.shape == (OUT, IN)
    assert_close((W + delta) @ k, v)


def test_rome_leaves_c_inverse_orthogonal_keys_unchanged(W, C):
    k, v = rand(IN, seed=3), rand(OUT, seed=4)
    delta = rome_update(W, C, k, v)
    for seed in (10, 11, 12):
        j = c_orthogonal(C, k, seed)
        assert j @ torch.linalg.inv(C) @ k == pytest.approx(0.0, abs=1e-12)
        assert_close((W + delta) @ j, W @ j)
    # ... while a generic key does move (the oracle above is not vacuous)
    j = rand(IN, seed=13)
    assert ((W + delta) @ j - W @ j).norm() > 1e-3


def test_rank_one_update_has_rank_one_and_adds_the_residual(C):
    k, residual = rand(IN, seed=3), rand(OUT, seed=5)
    delta = rank_one_update(residual, C, k)
    s = torch.linalg.svdvals(delta)
    assert s[0] > 1e-3 and (s[1:] < 1e-12 * s[0]).all()
    assert torch.linalg.matrix_rank(delta) == 1
    assert_close(delta @ k, residual)
    # the hand form: residual (C⁻¹k)ᵀ / ((C⁻¹k)ᵀ k)
    cik = torch.linalg.inv(C) @ k
    assert_close(delta, torch.outer(residual, cik) / (cik @ k))


def test_emmet_with_one_request_and_no_eps_is_rome(W, C):
    k, v = rand(IN, seed=3), rand(OUT, seed=4)
    R = (v - W @ k)[:, None]
    assert_close(emmet_update(R, k[:, None], C, eps=0.0), rome_update(W, C, k, v))


def test_emmet_without_eps_meets_every_equality_constraint(W, C):
    K, V = rand(IN, 3, seed=6), rand(OUT, 3, seed=7)
    delta = emmet_update(V - W @ K, K, C, eps=0.0)
    assert_close((W + delta) @ K, V)
    # eps > 0 relaxes the constraints: the keys no longer map exactly
    relaxed = emmet_update(V - W @ K, K, C, eps=0.5)
    assert ((W + relaxed) @ K - V).abs().max() > 1e-3


def test_memit_without_ridge_is_least_squares():
    K, R = rand(IN, 12, seed=8), rand(OUT, 12, seed=9)  # 12 keys >= 7 dims: full row rank
    C = torch.eye(IN, dtype=D)
    expected = torch.linalg.lstsq(K.T, R.T).solution.T  # min ‖Kᵀ ΔWᵀ - Rᵀ‖
    assert_close(memit_update(R, K, C, lam=0.0), expected)


@pytest.mark.parametrize("lam", [0.1, 3.0, 1500.0])
def test_memit_matches_the_normal_equations(C, lam):
    K, R = rand(IN, 4, seed=8), rand(OUT, 4, seed=9)
    expected = R @ K.T @ torch.linalg.inv(lam * C + K @ K.T)
    assert_close(memit_update(R, K, C, lam), expected, tol=1e-8)


def test_memit_shrinks_to_zero_as_lam_grows(C):
    K, R = rand(IN, 4, seed=8), rand(OUT, 4, seed=9)
    norms = [memit_update(R, K, C, lam).norm().item() for lam in (0.01, 1.0, 100.0, 1e4, 1e8)]
    assert all(a > b for a, b in zip(norms, norms[1:])), norms
    assert norms[-1] < 1e-6 * norms[0]
    # to first order in 1/lam the update is R Kᵀ C⁻¹ / lam
    lam = 1e9
    assert_close(lam * memit_update(R, K, C, lam), R @ K.T @ torch.linalg.inv(C), tol=1e-6)


EIGS = torch.tensor([10.0, 5.0, 3.0, 1e-4, 1e-5, 1e-6, 1e-7], dtype=D)  # 3 large, 4 below 1e-2 * 10


@pytest.fixture
def eig_C():
    """``(C, Q)``: C with eigenvalues EIGS along the columns of the orthogonal Q."""
    Q, _ = torch.linalg.qr(rand(IN, IN, seed=14))
    return Q @ torch.diag(EIGS) @ Q.T, Q


def test_null_space_share_is_the_small_eigenvalues_share_of_the_trace(eig_C):
    C, _ = eig_C
    P = null_space_projector(C, threshold=1e-2)
    small = EIGS[3:].sum() / EIGS.sum()
    assert null_space_share(P, C).item() == pytest.approx(small.item(), rel=1e-9)
    # a threshold above the 3.0 eigenvalue (of 10) takes it in as well
    assert null_space_share(null_space_projector(C, threshold=0.5), C).item() == pytest.approx(
        (EIGS[2:].sum() / EIGS.sum()).item(), rel=1e-9)


def test_null_space_projector_is_the_projector_on_small_eigenvectors(eig_C):
    C, Q = eig_C
    P = null_space_projector(C, threshold=1e-2)
    assert_close(P, P.T)
    assert_close(P @ P, P)
    assert torch.trace(P).item() == pytest.approx(4.0, abs=1e-9)
    assert_close(P, Q[:, 3:] @ Q[:, 3:].T, tol=1e-8)
    top = Q[:, :3] @ rand(3, 5, seed=15)  # keys in the span of the top eigenvectors
    assert_close(P @ top, torch.zeros_like(top))
    # an absolute threshold of 5e-6 keeps only the two smallest
    assert torch.trace(null_space_projector(C, threshold=5e-6, relative=False)).item() == pytest.approx(2.0)


@pytest.mark.parametrize("with_prev", [False, True])
def test_alphaedit_leaves_preserved_keys_unchanged(eig_C, with_prev):
    C, Q = eig_C
    P = null_space_projector(C)
    K, R = rand(IN, 3, seed=16), rand(OUT, 3, seed=17)
    Kp = rand(IN, 2, seed=18)
    prev = Kp @ Kp.T if with_prev else None
    delta = alphaedit_update(R, K, P, prev, reg=0.5)
    assert delta.norm() > 1e-3
    preserved = Q[:, :3] @ rand(3, 6, seed=19)  # P k0 = 0
    assert_close(P @ preserved, torch.zeros_like(preserved))
    assert_close(delta @ preserved, torch.zeros(OUT, 6, dtype=D))
    # and it is the closed form R Kᵀ P (Kp Kpᵀ P + K Kᵀ P + reg I)⁻¹
    prev_t = torch.zeros(IN, IN, dtype=D) if prev is None else prev
    expected = R @ K.T @ P @ torch.linalg.inv(prev_t @ P + K @ K.T @ P + 0.5 * torch.eye(IN, dtype=D))
    assert_close(delta, expected, tol=1e-8)


def test_alphaedit_with_identity_projector_is_memit_with_a_ridge():
    K, R = rand(IN, 3, seed=16), rand(OUT, 3, seed=17)
    eye = torch.eye(IN, dtype=D)
    assert_close(alphaedit_update(R, K, eye, reg=2.0), memit_update(R, K, eye, lam=2.0))


@pytest.mark.parametrize("keep,expected", [(0.3, 14), (0.4, 19), (0.001, 1), (1.0, 48)])
def test_rect_mask_keeps_the_largest_relative_changes(keep, expected):
    delta, W = rand(6, 8, seed=20), rand(6, 8, seed=21)
    assert expected == max(1, round(keep * 48))
    out = rect_mask(delta, W, keep)
    kept = out != 0
    assert int(kept.sum()) == expected
    top = (delta.abs() / W.abs()).flatten().argsort(descending=True)[:expected]
    oracle = torch.zeros(48, dtype=torch.bool)
    oracle[top] = True
    assert torch.equal(kept.flatten(), oracle)
    assert torch.equal(out[kept], delta[kept])
