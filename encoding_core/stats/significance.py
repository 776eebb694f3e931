"""Significance of per-voxel correlations: parametric and block-permutation p-values, BH-FDR.

Arrays are (n_trs, n_voxels); vectorised over voxels, memory bounded by batches.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from scipy import special

from encoding_core.common.errors import InputError
from encoding_core.stats.scores import _columns_ok, _pair

logger = logging.getLogger(__name__)

PERMUTATION_BATCH_ELEMENTS = 10_000_000
"""Permutation batches hold at most this many float64 values (80 MB)."""



def pearson_pvalues(r: Any, n: int) -> np.ndarray:
    """Two-sided parametric p-values of correlations ``r`` from ``n`` samples (TRs).

    Uses ``t = r sqrt((n - 2) / (1 - r^2))`` with n - 2 degrees of freedom, as
    ``scipy.stats.pearsonr``. Assumes independent samples: fMRI time series are
    autocorrelated, so these are optimistic; prefer :func:`block_permutation_pvalues`.
    """
    if int(n) != n or n < 3:
        raise InputError(f"n must be a whole number of samples >= 3 for Pearson p-values; got {n}.")
    rr = np.clip(np.nan_to_num(np.asarray(r, dtype=np.float64)), -1.0, 1.0)
    dof = n - 2
    # p = I_{dof/(dof + t^2)}(dof/2, 1/2) = I_{1 - r^2}(dof/2, 1/2): the t-test, exact at |r| = 1.
    return np.clip(special.betainc(dof / 2.0, 0.5, 1.0 - rr * rr), 0.0, 1.0)


def block_permutation_pvalues(Y: Any, P: Any, block_length: int = 10, n_permutations: int = 1000,
                              seed: int = 0) -> np.ndarray:
    """One-sided block-permutation p-values for positive correlations -> (v,).

    The predicted time course is cut into consecutive blocks of ``block_length`` TRs; each
    permutation reorders the blocks (the same order for every voxel, so spatial structure is
    kept) while Y stays fixed. A trailing partial block stays in place. With ``n_perm``
    permutations, ``p = (1 + #{null r >= observed r}) / (1 + n_perm)``, so p >= 1/(1 + n_perm).

    Fast by construction: with z-scored columns, the correlation of a permuted prediction is
    ``sum_i c[i, sigma(i)] / n`` where ``c[i, j]`` (n_blocks, n_blocks, v) holds the
    cross-products of Y block i with P block j; each permutation is a gather over c.
    Constant or non-finite voxels get p = 1.
    """
    y, p = (values.astype(np.float64) for values in _pair(Y, P))
    n, n_voxels = y.shape
    block_length = int(block_length)
    if block_length < 1:
        raise InputError(f"block_length must be a positive number of TRs; got {block_length}.")
    n_blocks = n // block_length
    if n_blocks < 2:
        raise InputError(
            f"block_length={block_length} leaves {n_blocks} whole block(s) in {n} TRs; permutation needs at least "
            f"2 (use block_length <= {n // 2})."
        )
    if int(n_permutations) < 1:
        raise InputError(f"n_permutations must be >= 1; got {n_permutations}.")
    if math.factorial(min(n_blocks, 20)) < int(n_permutations):
        logger.warning("Only %d blocks of %d TRs: %d distinct block orders for %d permutations, so p-values are "
                       "coarse (many repeats of the same order). Use a shorter block_length or a longer test story.",
                       n_blocks, block_length, math.factorial(n_blocks), int(n_permutations))
    ok = _columns_ok(y) & _columns_ok(p)
    yz = _zscore_columns(np.where(ok, y, 0.0))
    pz = _zscore_columns(np.where(ok, p, 0.0))
    observed = (yz * pz).sum(axis=0)  # n * r
    full = n_blocks * block_length
    fixed_tail = (yz[full:] * pz[full:]).sum(axis=0)
    yb = yz[:full].reshape(n_blocks, block_length, n_voxels)
    pb = pz[:full].reshape(n_blocks, block_length, n_voxels)
    cross = np.einsum("ilv,jlv->ijv", yb, pb)  # (n_blocks, n_blocks, v)
    rng = np.random.default_rng(seed)
    orders = np.argsort(rng.random((int(n_permutations), n_blocks)), axis=1)  # each row a permutation
    exceed = np.zeros(n_voxels, dtype=np.int64)
    rows = np.arange(n_blocks)
    tol = 1e-9 * n
    batch_size = max(1, int(PERMUTATION_BATCH_ELEMENTS // (n_blocks * n_voxels)))
    for start in range(0, len(orders), batch_size):  # batches of permutations bound memory
        batch = orders[start:start + batch_size]
        null = cross[rows[None, :], batch].sum(axis=1) + fixed_tail  # (batch, v)
        exceed += (null >= observed - tol).sum(axis=0)
    pvalues = (1.0 + exceed) / (1.0 + len(orders))
    return np.where(ok, pvalues, 1.0)


def _zscore_columns(values: np.ndarray) -> np.ndarray:
    centred = values - values.mean(axis=0)
    std = centred.std(axis=0)
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)


def fdr_bh(p: Any, q: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg FDR at level q -> (significant_mask (v,), corrected_p (v,)).

    corrected_p are the BH-adjusted p-values (as statsmodels ``fdrcorrection``); a voxel is
    significant when its adjusted p <= q. NaN p-values count as 1.
    """
    if not 0 < float(q) < 1:
        raise InputError(f"q (the false discovery rate) must be between 0 and 1; got {q}.")
    pv = np.nan_to_num(np.asarray(p, dtype=np.float64).reshape(-1), nan=1.0)
    m = len(pv)
    if m == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    order = np.argsort(pv, kind="mergesort")
    scaled = pv[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    corrected = np.empty(m)
    corrected[order] = adjusted_sorted
    return corrected <= q, corrected
