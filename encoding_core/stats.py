"""Statistics on held-out predictions: correlations, p-values, FDR, noise ceiling.

Arrays are (n_trs, n_voxels); every function is vectorised over voxels and never returns
NaN: undefined correlations (a constant column) are 0 and are counted in a warning.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from scipy import special

from encoding_core.common.errors import InputError

logger = logging.getLogger(__name__)

PERMUTATION_BATCH_ELEMENTS = 10_000_000
"""Permutation batches hold at most this many float64 values (80 MB)."""


COLUMN_BLOCK_ELEMENTS = 4_000_000
"""Column-wise statistics work on float64 blocks of at most this many values (32 MB)."""


def _pair(Y: Any, P: Any) -> tuple[np.ndarray, np.ndarray]:
    """Y and P as 2-D arrays of one shape, in their own numeric dtype (no float64 copy)."""
    y, p = np.asarray(Y), np.asarray(P)
    if y.ndim == 1:
        y = y[:, None]
    if p.ndim == 1:
        p = p[:, None]
    if y.shape != p.shape or y.ndim != 2:
        raise InputError(
            f"Y and P must have the same (n_trs, n_voxels) shape; got {y.shape} and {p.shape}."
        )
    for name, values in (("Y", y), ("P", p)):
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
            raise InputError(f"{name} must be numeric; got dtype {values.dtype}.")
    return y, p


def _column_blocks(n_rows: int, n_columns: int) -> list[slice]:
    width = max(1, COLUMN_BLOCK_ELEMENTS // max(n_rows, 1))
    return [slice(start, min(start + width, n_columns)) for start in range(0, n_columns, width)]


def _columns_ok(values: np.ndarray) -> np.ndarray:
    """True for columns that are finite and not constant."""
    finite = np.all(np.isfinite(values), axis=0)
    safe = np.where(np.isfinite(values), values, 0.0)
    spread = safe.max(axis=0) - safe.min(axis=0) if len(values) else np.zeros(values.shape[1])
    return finite & (spread > 1e-12 * np.maximum(np.abs(safe).max(axis=0), 1e-300))


def pearson_r(Y: Any, P: Any) -> np.ndarray:
    """Pearson correlation of each column of Y (n, v) with the same column of P -> (v,).

    Columns that are constant or hold NaN/inf in Y or P get r = 0 (counted in a warning).
    Computed in float64 over column blocks (memory: a few 32 MB blocks, whatever v is).
    """
    y_all, p_all = _pair(Y, P)
    r = np.zeros(y_all.shape[1])
    n_bad = 0
    for cols in _column_blocks(*y_all.shape):
        y = y_all[:, cols].astype(np.float64)
        p = p_all[:, cols].astype(np.float64)
        ok = _columns_ok(y) & _columns_ok(p)
        n_bad += int((~ok).sum())
        y = np.where(ok, y, 0.0)
        p = np.where(ok, p, 0.0)
        y -= y.mean(axis=0)
        p -= p.mean(axis=0)
        denom = np.sqrt((y * y).sum(axis=0) * (p * p).sum(axis=0))
        np.divide((y * p).sum(axis=0), denom, out=r[cols], where=ok & (denom > 0))
    if n_bad:
        logger.warning("pearson_r: %d of %d voxels are constant or hold NaN/inf; their r is set to 0.",
                       n_bad, y_all.shape[1])
    return np.clip(r, -1.0, 1.0)


def r2_score(Y: Any, P: Any) -> np.ndarray:
    """Coefficient of determination per column, 1 - SS_res / SS_tot -> (v,).

    Constant or non-finite target columns get 0. Float64 over column blocks.
    """
    y_all, p_all = _pair(Y, P)
    out = np.zeros(y_all.shape[1])
    for cols in _column_blocks(*y_all.shape):
        y = y_all[:, cols].astype(np.float64)
        p = p_all[:, cols].astype(np.float64)
        ok = _columns_ok(y) & np.all(np.isfinite(p), axis=0)
        y = np.where(ok, y, 0.0)
        p = np.where(ok, p, 0.0)
        ss_res = ((y - p) ** 2).sum(axis=0)
        ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
        np.subtract(1.0, np.divide(ss_res, ss_tot, out=np.zeros_like(ss_res), where=ok), out=out[cols], where=ok)
    return out


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


def noise_ceiling(repeats: Any, averaged_target: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Explainable variance and ceiling correlation from repeated presentations.

    repeats: (n_repeats, n_trs, n_voxels). With total variance T (all repeats and TRs pooled)
    and residual variance E of each repeat around the repeat mean (pooled), the raw
    explainable variance is ``ev = 1 - E / T`` and the bias-corrected value (Hsu et al. 2004;
    Huth-lab ``ev``; Schoppe et al. 2016 signal power) is
    ``EV = ev - (1 - ev) / (n_repeats - 1)``, an unbiased estimate of signal / total variance.
    EV is clipped to [0, 1]. ``ceiling_r = sqrt(EV)``: the best correlation a model can reach
    with a single repeat. With ``averaged_target=True`` the ceiling is for the repeat mean,
    ``sqrt(S / (S + N / n_repeats))``. Constant or non-finite voxels get 0.
    """
    data = np.asarray(repeats, dtype=np.float64)
    if data.ndim != 3 or data.shape[0] < 2 or data.shape[1] < 2:
        raise InputError(
            f"repeats must be (n_repeats >= 2, n_trs >= 2, n_voxels); got shape {data.shape}."
        )
    n_rep = data.shape[0]
    finite = np.all(np.isfinite(data), axis=(0, 1))
    data = np.where(finite, data, 0.0)
    total = data.reshape(-1, data.shape[2]).var(axis=0)
    residual = (data - data.mean(axis=0)).reshape(-1, data.shape[2]).var(axis=0)
    ok = finite & (total > 1e-12 * np.maximum(np.abs(data).max(axis=(0, 1)), 1e-300) ** 2)
    n_bad = int((~ok).sum())
    if n_bad:
        logger.warning("noise_ceiling: %d of %d voxels are constant or hold NaN/inf; their ceiling is 0.",
                       n_bad, data.shape[2])
    raw = 1.0 - np.divide(residual, total, out=np.ones_like(total), where=ok)
    explainable = np.clip(raw - (1.0 - raw) / (n_rep - 1), 0.0, 1.0)
    explainable = np.where(ok, explainable, 0.0)
    if averaged_target:
        noise_share = 1.0 - explainable
        denom = explainable + noise_share / n_rep
        ceiling = np.sqrt(np.divide(explainable, denom, out=np.zeros_like(denom), where=denom > 0))
    else:
        ceiling = np.sqrt(explainable)
    return explainable, ceiling


def normalize_by_ceiling(r: Any, ceiling_r: Any, min_ceiling: float = 0.1) -> np.ndarray:
    """``r / ceiling_r`` per voxel; voxels with ceiling below ``min_ceiling`` get 0 (counted)."""
    rr = np.nan_to_num(np.asarray(r, dtype=np.float64))
    cc = np.nan_to_num(np.asarray(ceiling_r, dtype=np.float64))
    if rr.shape != cc.shape:
        raise InputError(f"r and ceiling_r must have the same shape; got {rr.shape} and {cc.shape}.")
    usable = cc >= min_ceiling
    n_low = int((~usable).sum())
    if n_low:
        logger.info("normalize_by_ceiling: %d of %d voxels have a ceiling below %.3g; set to 0.",
                    n_low, rr.size, min_ceiling)
    return np.divide(rr, cc, out=np.zeros_like(rr), where=usable)
