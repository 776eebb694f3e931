"""Noise ceiling from repeated presentations of a story, and ceiling-normalised correlations."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from encoding_core.common.errors import InputError

logger = logging.getLogger(__name__)


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
    values = np.asarray(repeats)
    if values.ndim != 3 or values.shape[0] < 2 or values.shape[1] < 2:
        raise InputError(
            f"repeats must be (n_repeats >= 2, n_trs >= 2, n_voxels); got shape {values.shape}."
        )
    n_voxels = values.shape[2]
    explainable = np.zeros(n_voxels)
    width = max(1, BLOCK_ELEMENTS // (values.shape[0] * values.shape[1]))
    n_bad = 0
    for start in range(0, n_voxels, width):  # small float64 blocks: no repeats-sized temporaries
        cols = slice(start, min(start + width, n_voxels))
        explainable[cols], bad = _explainable_block(np.asarray(values[:, :, cols], dtype=np.float64))
        n_bad += bad
    if n_bad:
        logger.warning("noise_ceiling: %d of %d voxels are constant or hold NaN/inf; their ceiling is 0.",
                       n_bad, n_voxels)
    n_rep = values.shape[0]
    if averaged_target:
        noise_share = 1.0 - explainable
        denom = explainable + noise_share / n_rep
        ceiling = np.sqrt(np.divide(explainable, denom, out=np.zeros_like(denom), where=denom > 0))
    else:
        ceiling = np.sqrt(explainable)
    return explainable, ceiling


BLOCK_ELEMENTS = 250_000
"""Voxel blocks of :func:`noise_ceiling` hold at most this many float64 values (2 MB)."""


def _explainable_block(data: np.ndarray) -> tuple[np.ndarray, int]:
    """Bias-corrected explainable variance (w,) of a (n_repeats, n_trs, w) float64 block, and how
    many of its voxels are unusable (constant or non-finite: 0)."""
    n_rep = data.shape[0]
    finite = np.all(np.isfinite(data), axis=(0, 1))
    if not finite.all():
        data = np.where(finite, data, 0.0)
    total = data.reshape(-1, data.shape[2]).var(axis=0)
    residual = (data - data.mean(axis=0)).reshape(-1, data.shape[2]).var(axis=0)
    ok = finite & (total > 1e-12 * np.maximum(np.abs(data).max(axis=(0, 1)), 1e-300) ** 2)
    raw = 1.0 - np.divide(residual, total, out=np.ones_like(total), where=ok)
    explainable = np.clip(raw - (1.0 - raw) / (n_rep - 1), 0.0, 1.0)
    return np.where(ok, explainable, 0.0), int((~ok).sum())


MIN_CEILING = 0.1
"""Ceiling correlations below this are unusable for normalisation (r / ceiling explodes)."""


def normalize_by_ceiling(r: Any, ceiling_r: Any, min_ceiling: float = MIN_CEILING) -> np.ndarray:
    """``r / ceiling_r`` per voxel -> (v,) float64; NaN where the ceiling is unusable.

    A ceiling below ``min_ceiling`` (or NaN) makes the ratio meaningless, so those voxels
    get NaN, never 0: a summary over them would otherwise count "no ceiling" as "no signal"
    (summarise with :func:`normalized_summary`, over the finite values only). NaN r stays NaN.
    """
    rr = np.asarray(r, dtype=np.float64)
    cc = np.asarray(ceiling_r, dtype=np.float64)
    if rr.shape != cc.shape:
        raise InputError(f"r and ceiling_r must have the same shape; got {rr.shape} and {cc.shape}.")
    usable = np.isfinite(cc) & (cc >= min_ceiling)
    n_low = int((~usable).sum())
    if n_low:
        logger.info("normalize_by_ceiling: %d of %d voxels have no usable ceiling (below %.3g or NaN); set to NaN.",
                    n_low, rr.size, min_ceiling)
    return np.divide(rr, cc, out=np.full_like(rr, np.nan), where=usable)


def normalized_summary(normalized: Any, min_ceiling: float = MIN_CEILING) -> dict[str, Any]:
    """Median (and count) of ceiling-normalised r over the voxels with a usable ceiling.

    normalized: (v,) from :func:`normalize_by_ceiling` (NaN = no usable ceiling). Returns
    ``{"median", "n_voxels" (finite values summarised), "n_total", "min_ceiling"}``; the
    median is NaN when no voxel has a usable ceiling.
    """
    values = np.asarray(normalized, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    return {"median": float(np.median(finite)) if finite.size else float("nan"), "n_voxels": int(finite.size),
            "n_total": int(values.size), "min_ceiling": float(min_ceiling)}


REPEAT_MEAN_MIN_R = 0.999
"""Rule for "the stored test response is the mean of its repeats": the median over voxels of
the correlation between the two exceeds this (see :func:`repeat_mean_correlation`)."""


def repeat_mean_correlation(target: Any, repeats: Any) -> float:
    """Median over voxels of Pearson r between ``target`` and the mean of ``repeats``.

    target: (n_trs, n_voxels) stored test response; repeats: (n_repeats, n_trs, n_voxels).
    Each series is z-scored per voxel first, so the value does not depend on how either was
    scaled or centred (a stored response that was re-z-scored after averaging still scores
    1). Voxels constant or non-finite in either are left out; nan when none is left.
    """
    y = np.asarray(target, dtype=np.float64)
    mean = np.asarray(repeats, dtype=np.float64).mean(axis=0)
    if y.ndim != 2 or mean.shape != y.shape:
        raise InputError(f"target must be (n_trs, n_voxels) and repeats (n_repeats, n_trs, n_voxels) with the same "
                         f"(n_trs, n_voxels); got {y.shape} and {np.shape(repeats)}.")
    finite = np.all(np.isfinite(y), axis=0) & np.all(np.isfinite(mean), axis=0)
    y, mean = y[:, finite], mean[:, finite]
    y_centred, m_centred = y - y.mean(axis=0), mean - mean.mean(axis=0)
    y_norm, m_norm = np.sqrt((y_centred ** 2).sum(axis=0)), np.sqrt((m_centred ** 2).sum(axis=0))
    scale = np.maximum(np.abs(y).max(axis=0, initial=0.0), np.abs(mean).max(axis=0, initial=0.0))
    usable = (y_norm > 1e-9 * scale * np.sqrt(y.shape[0])) & (m_norm > 1e-9 * scale * np.sqrt(y.shape[0]))
    if not usable.any():
        return float("nan")
    r = (y_centred[:, usable] * m_centred[:, usable]).sum(axis=0) / (y_norm[usable] * m_norm[usable])
    return float(np.median(r))
