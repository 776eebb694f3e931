"""Scores of held-out predictions, per voxel: Pearson correlation and R^2.

Arrays are (n_trs, n_voxels); every function is vectorised over voxels, works in float64 over
column blocks (bounded memory), and never returns NaN: undefined scores (a constant column) are 0
and are counted in a warning.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from encoding_core.common.errors import InputError

logger = logging.getLogger(__name__)

COLUMN_BLOCK_ELEMENTS = 250_000
"""Column-wise statistics work on float64 blocks of at most this many values (2 MB: the
temporaries stay in the allocator's heap and the cache; 32 MB blocks measured 2-15x slower
on 228 x 20484 arrays, mostly page faults on fresh memory maps)."""


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
    if not len(values):
        return np.zeros(values.shape[1], dtype=bool)
    high, low = values.max(axis=0), values.min(axis=0)  # NaN propagates, +-inf shows in one of them
    finite = np.isfinite(high) & np.isfinite(low)
    if not finite.all():
        safe = np.where(np.isfinite(values), values, 0.0)
        high, low = safe.max(axis=0), safe.min(axis=0)
    scale = np.maximum(np.maximum(np.abs(high), np.abs(low)), 1e-300)
    return finite & (high - low > 1e-12 * scale)


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
