"""How much pooled cross-validated predictions depend on each other under the null.

In "all stories (CV)" each outer fold k is predicted by a ridge model trained on the other
folds: ``P_k = H_k Y_train(k)``, linear in the training targets for a given alpha. Pooled
over folds, the cross-product behind r is a quadratic form ``C = sum_k y_k' P_k = y' H y``
with H (n, n) the pooled prediction operator (zero on each fold's own rows). When Y is
independent of the features (H0) and the stories are independent with covariance S,

    Var(C) = tr(H S H' S) + tr(H S H S).

The significance tests hold P fixed and estimate the first term only. The second is the
covariance between folds: fold k's prediction contains fold j's noise and vice versa. For
ridge, H is nearly symmetric (``H_kj ~ H_jk'`` when the training sets are similar; exactly,
for large alpha, ``H_kj = X_k X_j' / a^2``), so the second term nearly equals the first: the
true null variance is about twice what a fixed-P test assumes. Measured on the demo (six
stories, 228 TRs, 1536 features): ``rho = tr(H H) / tr(H H') = 0.96`` at alpha 0.1 and
0.996-0.999 for alpha >= 1, and without a correction 10 % of the vertices outside the planted
regions had p <= 0.05 at a nominal 5 %.

:func:`cross_fold_rho` computes rho per alpha (S taken as the identity: the ratio of the
two traces, a scale-free property of H), exactly from the kernel form for up to
``exact_max_n`` TRs, else by Hutchinson's trace estimator with random sign probes in the
primal form; :func:`variance_factor` turns it into each voxel's factor ``1 + rho`` (at the
alphas its folds chose, clipped to [1, 2]) for
:func:`encoding_core.stats.significance.significance` (``variance_factor=``). Not modelled:
the inner-CV choice of alpha also depends on Y (measured effect: see the README's Statistics
section).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from encoding_core.common.errors import InputError

logger = logging.getLogger(__name__)

EXACT_MAX_N = 1500
"""Up to this many TRs, H is built exactly (n x n per alpha); above, Hutchinson probes."""
N_PROBES = 32


def _alpha_scale(eigenvalues: np.ndarray, normalpha: bool) -> float:
    """The factor applied to alphas: the largest singular value of the training X (normalpha), else 1."""
    return float(np.sqrt(max(float(eigenvalues.max(initial=0.0)), 0.0))) if normalpha else 1.0


def _excluded(n: int, folds: Sequence[tuple[Any, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for train, test in folds:
        train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
        if train.size == 0 or test.size == 0 or train.max(initial=0) >= n or test.max(initial=0) >= n:
            raise InputError(f"every fold needs training and test rows within the {n} TRs of X.")
        out.append((train, test))
    return out


def _exact_rho(X: np.ndarray, folds: list, grid: np.ndarray, normalpha: bool) -> np.ndarray:
    """rho per alpha from the full operator H (n_alphas, n, n), kernel form per fold."""
    n = X.shape[0]
    H = np.zeros((len(grid), n, n))
    for train, test in folds:  # a handful of folds, each vectorised over alphas
        Xt = X[train]
        e, U = np.linalg.eigh(Xt @ Xt.T)  # kernel of the training rows (n_t, n_t)
        e = np.clip(e, 0.0, None)
        a2 = (grid * _alpha_scale(e, normalpha)) ** 2
        A = (X[test] @ Xt.T) @ U  # (n_k, n_t)
        # H_k(a) = A diag(1 / (e + a^2)) U'  for every alpha at once
        H[np.ix_(np.arange(len(grid)), test, train)] = np.einsum("ki,ai,ti->akt", A, 1.0 / (e[None, :] + a2[:, None]),
                                                                  U, optimize=True)
    both = np.einsum("aij,aji->a", H, H)
    own = np.einsum("aij,aij->a", H, H)
    return np.divide(both, own, out=np.zeros_like(own), where=own > 0)


def _probe_rho(X: np.ndarray, folds: list, grid: np.ndarray, normalpha: bool, n_probes: int, seed: int) -> np.ndarray:
    """rho per alpha by Hutchinson: E[z'H(Hz)] = tr(HH), E[|Hz|^2] = tr(HH'), z random signs (n, m)."""
    n, p = X.shape
    Z = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n, n_probes))
    gram = X.T @ X
    parts = []
    for train, test in folds:  # per fold: eigendecomposition of the downdated Gram (p, p)
        excluded = np.setdiff1d(np.arange(n), train, assume_unique=True)
        s2, V = np.linalg.eigh(gram - X[excluded].T @ X[excluded])
        s2 = np.clip(s2, 0.0, None)
        a2 = (grid * _alpha_scale(s2, normalpha)) ** 2
        parts.append((train, test, V, X[test] @ V, 1.0 / (s2[None, :] + a2[:, None])))  # shrink (n_alphas, p)

    def apply(values: np.ndarray) -> np.ndarray:
        """H(a) applied to values (n_alphas, n, m) -> (n_alphas, n, m), each alpha its own operator."""
        out = np.zeros_like(values)
        for train, test, V, XkV, shrink in parts:
            projected = np.einsum("tp,atm->apm", X[train], values[:, train], optimize=True)  # X_t' v (a, p, m)
            rotated = np.einsum("pq,apm->aqm", V, projected, optimize=True)  # V' X_t' v
            out[:, test] = np.einsum("kq,aq,aqm->akm", XkV, shrink, rotated, optimize=True)
        return out

    first = apply(np.broadcast_to(Z, (len(grid), n, n_probes)).copy())
    second = apply(first)
    both = np.einsum("nm,anm->a", Z, second)
    own = np.einsum("anm,anm->a", first, first)
    return np.divide(both, own, out=np.zeros_like(own), where=own > 0)


def cross_fold_rho(X: Any, folds: Sequence[tuple[Any, Any]], alphas: Sequence[float], normalpha: bool = True,
                   exact_max_n: int = EXACT_MAX_N, n_probes: int = N_PROBES, seed: int = 0) -> np.ndarray:
    """``rho(alpha) = tr(H H) / tr(H H')`` of the pooled CV ridge operator, per alpha -> (n_alphas,).

    X: (n, p) features of all TRs (as fitted: z-scored per story, delayed); folds: the outer
    folds [(train_idx, test_idx)]; alphas: the grid (reference units, scaled by the largest
    singular value of each fold's training X when ``normalpha``, as
    :func:`~encoding_core.models.ridge.ridge_nested_cv` does). 1 means H symmetric (the
    fixed-P null variance is half the true one), 0 no dependence between folds.
    """
    x = np.nan_to_num(np.asarray(X, dtype=np.float64))
    if x.ndim != 2:
        raise InputError(f"X must be (n_trs, n_features); got shape {x.shape}.")
    grid = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if grid.size == 0 or np.any(grid <= 0):
        raise InputError("alphas must be positive numbers (the ridge grid).")
    fold_list = _excluded(x.shape[0], folds)
    if x.shape[0] <= exact_max_n:
        return _exact_rho(x, fold_list, grid, normalpha)
    return _probe_rho(x, fold_list, grid, normalpha, int(n_probes), seed)


def variance_factor(rho: Any, alphas: Sequence[float], fold_alphas: Any) -> np.ndarray:
    """Each voxel's null-variance factor ``1 + rho`` -> (v,) in [1, 2].

    rho: (n_alphas,) from :func:`cross_fold_rho`; fold_alphas: (n_folds, v) the alpha each
    outer fold chose per voxel; rho is averaged over the folds at their alphas.
    """
    grid = np.asarray(alphas, dtype=np.float64).reshape(-1)
    chosen = np.asarray(fold_alphas, dtype=np.float64)
    if chosen.ndim == 1:
        chosen = chosen[None, :]
    index = np.abs(np.log(chosen[..., None]) - np.log(grid)[None, None, :]).argmin(axis=-1)  # nearest grid alpha
    values = np.asarray(rho, dtype=np.float64)[index].mean(axis=0)
    return 1.0 + np.clip(values, 0.0, 1.0)
