"""Fit a ridge model with nested CV and score it on held-out data: one layer, one call.

- :func:`fit_train_test`: fit on the training TRs, predict the held-out test story, statistics;
- :func:`fit_cross_validated`: outer folds over all stacked TRs, statistics on the pooled
  out-of-fold predictions;
- :func:`evaluate_predictions`: correlation, R^2, p-values and FDR for (n, v) targets vs predictions.

Arrays: X (n_trs, n_features) float32, Y (n_trs, n_voxels) float32, z-scored per story.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from encoding_core.common.progress import CancelFlag, check_cancel
from encoding_core.config import RidgeConfig, StatsConfig


@dataclass
class LayerResult:
    """What one layer's fit produces: scalar metrics (reference keys), per-voxel arrays, weights."""

    metrics: dict[str, Any]
    arrays: dict[str, np.ndarray]
    weights: Optional[np.ndarray] = None
    timings: dict[str, float] = field(default_factory=dict)


def evaluate_predictions(Y: np.ndarray, P: np.ndarray, stats: StatsConfig) -> dict[str, np.ndarray]:
    """Correlation, R^2, parametric and block-permutation p-values and BH-FDR for (n, v) Y vs P.

    The FDR correction uses the permutation p-values when ``stats.n_permutations > 0``
    (autocorrelation-robust), else the parametric ones.
    """
    from encoding_core.stats.significance import block_permutation_pvalues, fdr_bh, pearson_pvalues
    from encoding_core.stats.scores import pearson_r, r2_score

    r = np.asarray(pearson_r(Y, P), dtype=np.float32)
    p = np.asarray(pearson_pvalues(r, Y.shape[0]), dtype=np.float64)
    arrays = {"correlations": r, "r2": np.asarray(r2_score(Y, P), dtype=np.float32), "p_values": p}
    if stats.n_permutations > 0:
        perm = np.asarray(block_permutation_pvalues(Y, P, block_length=stats.block_length,
                                                    n_permutations=stats.n_permutations, seed=stats.seed))
        arrays["permutation_p_values"] = perm
        tested = perm
    else:
        arrays["permutation_p_values"] = np.full_like(p, np.nan)
        tested = p
    mask, corrected = fdr_bh(np.nan_to_num(tested, nan=1.0), q=stats.fdr_q)
    arrays["corrected_p_values"] = np.asarray(corrected, dtype=np.float64)
    arrays["significant_mask"] = np.asarray(mask, dtype=bool)
    return arrays


GROUPED_FOLD_TYPES = ("story", "group")
"""Fold types that need ``groups`` (the story of every TR)."""


def _inner_folds(n_samples: int, ridge: RidgeConfig, groups: Optional[np.ndarray]) -> list:
    from encoding_core.models.folds import make_folds

    return make_folds(n_samples, kind=ridge.fold_type, n_folds=ridge.n_inner_folds, chunk_length=ridge.chunk_length,
                      trim_size=ridge.trim_size, seed=ridge.seed,
                      groups=groups if ridge.fold_type in GROUPED_FOLD_TYPES else None)


def _fit_ridge(X: np.ndarray, Y: np.ndarray, ridge: RidgeConfig, groups: Optional[np.ndarray],
               cancel: Optional[CancelFlag] = None, score: str = "r") -> Any:
    from encoding_core.models.ridge import ridge_nested_cv

    folds = _inner_folds(X.shape[0], ridge, groups)
    return ridge_nested_cv(X, Y, folds=folds, alphas=list(ridge.alphas), normalpha=ridge.normalpha,
                           single_alpha=ridge.single_alpha, device=ridge.device, cancel=cancel, score=score)


def standardize_columns(train: np.ndarray, *others: Optional[np.ndarray], eps: float = 1e-8) -> list:
    """``(x - mean) / (std + eps)`` per column with the mean and unbiased std (ddof 1) of ``train``
    (n, k), applied to ``train`` and each of ``others`` (m, k) (None passes through); float32.

    The reference's ``normalize_features`` / ``normalize_targets`` (its ``DataNormalizer``)."""
    values = np.asarray(train, dtype=np.float64)
    mean = values.mean(axis=0)
    scale = values.std(axis=0, ddof=1) + eps if values.shape[0] > 1 else np.ones(values.shape[1])
    return [None if x is None else ((np.asarray(x, dtype=np.float64) - mean) / scale).astype(np.float32)
            for x in (train, *others)]


def _score_summary(arrays: Mapping[str, np.ndarray], alphas: Sequence[float]) -> dict[str, Any]:
    """Scalar metrics with the reference's keys from per-voxel arrays."""
    r = np.asarray(arrays["correlations"], dtype=np.float64)
    mask = np.asarray(arrays["significant_mask"], dtype=bool)
    best = np.asarray(arrays["best_alphas"], dtype=np.float64)
    finite = np.isfinite(r)
    n_voxels = int(r.size)

    def stat(fn: Callable, values: np.ndarray) -> float:
        values = values[np.isfinite(values)]
        return float(fn(values)) if values.size else float("nan")

    counts = {f"{a:g}": int(np.isclose(best, a, rtol=1e-6).sum()) for a in alphas}
    metrics = {
        "median_score": stat(np.median, r), "mean_score": stat(np.mean, r), "std_score": stat(np.std, r),
        "min_score": stat(np.min, r), "max_score": stat(np.max, r),
        "n_significant": int(mask.sum()), "percent_significant": 100.0 * float(mask.sum()) / max(n_voxels, 1),
        "n_voxels": n_voxels, "n_finite_scores": int(finite.sum()),
        "median_r2": stat(np.median, np.asarray(arrays["r2"], dtype=np.float64)),
        "best_alpha_median": stat(np.median, best), "best_alpha_counts": counts,
    }
    normalized = np.asarray(arrays.get("normalized_correlations", np.full(n_voxels, np.nan)), dtype=np.float64)
    metrics["median_normalized_score"] = stat(np.median, normalized)
    return metrics


def fit_train_test(X_train: np.ndarray, Y_train: np.ndarray, X_test: np.ndarray, Y_test: np.ndarray,
                   ridge: RidgeConfig, stats: StatsConfig, groups: Optional[np.ndarray] = None,
                   test_repeats: Optional[np.ndarray] = None, test_target_is_repeat_mean: bool = False,
                   cancel: Optional[CancelFlag] = None, score: str = "r", normalize_features: bool = False,
                   normalize_targets: bool = False) -> LayerResult:
    """Nested-CV ridge on the training TRs, predict the test TRs, test statistics.

    X_*: (n_trs, n_features) float32, Y_*: (n_trs, n_voxels) float32 (z-scored); groups:
    (n_train,) story index per training TR (for ``fold_type="story"``); test_repeats:
    (n_repeats, n_test, n_voxels) for a noise ceiling; test_target_is_repeat_mean: Y_test is the
    mean of those repeats (the ceiling is then that of an averaged target). score: the inner-CV
    score (``r`` or ``r2``, see ``ridge_nested_cv``); normalize_features / normalize_targets:
    standardise columns with the training rows' statistics first (:func:`standardize_columns`).
    """
    started = time.perf_counter()
    if normalize_features:
        X_train, X_test = standardize_columns(X_train, X_test)
    if normalize_targets:
        Y_train, Y_test = standardize_columns(Y_train, Y_test)
    fit = _fit_ridge(X_train, Y_train, ridge, groups, cancel, score)
    predicted = np.asarray(fit.predict(X_test), dtype=np.float32)
    fit_s = time.perf_counter() - started
    arrays = evaluate_predictions(Y_test, predicted, stats)
    arrays["best_alphas"] = np.asarray(fit.best_alphas, dtype=np.float64)
    arrays.update(_ceiling_arrays(arrays["correlations"], test_repeats, test_target_is_repeat_mean))
    metrics = _score_summary(arrays, ridge.alphas)
    metrics.update({"mode": "train_test", "n_train_trs": int(X_train.shape[0]), "n_test_trs": int(X_test.shape[0]),
                    "noise_ceiling_target": None if test_repeats is None else
                    ("repeat_mean" if test_target_is_repeat_mean else "single_repeat"),
                    "n_features": int(X_train.shape[1]),
                    "significance_test": "block_permutation" if stats.n_permutations > 0 else "parametric"})
    return LayerResult(metrics, arrays, np.asarray(fit.weights, dtype=np.float32) if ridge.save_weights else None,
                       {"fit": fit_s, "stats": time.perf_counter() - started - fit_s})


def _ceiling_arrays(r: np.ndarray, repeats: Optional[np.ndarray],
                    target_is_repeat_mean: bool = False) -> dict[str, np.ndarray]:
    """Noise ceiling (n_voxels,) from (n_repeats, n_trs, n_voxels) repeats and r / ceiling (NaN without repeats)."""
    n = np.asarray(r).shape[0]
    if repeats is None or repeats.shape[0] < 2:
        return {"noise_ceiling": np.full(n, np.nan, np.float32),
                "normalized_correlations": np.full(n, np.nan, np.float32)}
    from encoding_core.stats.noise_ceiling import noise_ceiling, normalize_by_ceiling

    _, ceiling_r = noise_ceiling(repeats, averaged_target=target_is_repeat_mean)
    return {"noise_ceiling": np.asarray(ceiling_r, dtype=np.float32),
            "normalized_correlations": np.asarray(normalize_by_ceiling(r, ceiling_r), dtype=np.float32)}


def outer_folds(n_samples: int, groups: np.ndarray, ridge: RidgeConfig, kind: Optional[str] = None) -> list:
    """Outer folds of ``cv`` mode: leave-one-story-out when ``fold_type="story"``, else contiguous.

    kind: any fold kind of ``folds.make_folds`` instead (the reference's outer folds follow its
    ``folding_type``), with ``ridge.n_outer_folds`` folds.
    """
    from encoding_core.models.folds import make_folds

    if kind is not None:
        return make_folds(n_samples, kind=kind, n_folds=ridge.n_outer_folds, chunk_length=ridge.chunk_length,
                          trim_size=ridge.trim_size, seed=ridge.seed,
                          groups=groups if kind in GROUPED_FOLD_TYPES else None)
    if ridge.fold_type == "story":
        return make_folds(n_samples, kind="story", n_folds=ridge.n_outer_folds, chunk_length=ridge.chunk_length,
                          trim_size=ridge.trim_size, seed=ridge.seed, groups=groups)
    return make_folds(n_samples, kind="contiguous", n_folds=ridge.n_outer_folds, chunk_length=ridge.chunk_length,
                      trim_size=ridge.trim_size, seed=ridge.seed)


def fit_cross_validated(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, ridge: RidgeConfig, stats: StatsConfig,
                        cancel: Optional[CancelFlag] = None, outer_kind: Optional[str] = None, score: str = "r",
                        normalize_features: bool = False, normalize_targets: bool = False,
                        mean_weights: bool = False) -> LayerResult:
    """Outer folds over all stacked TRs; nested-CV ridge inside each training part.

    ``correlations``/``r2``/``best_alphas`` are averaged (median for alphas) over outer folds;
    p-values and ``significant_mask`` come from the pooled out-of-fold predictions (each TR is
    predicted exactly once, so one test per voxel); ``majority_significant_mask`` marks
    voxels significant in more than half of the folds. X: (n, p), Y: (n, v), groups: (n,).
    outer_kind: outer fold kind (default: see :func:`outer_folds`); TRs that no outer fold
    tests (trimmed or time-series kinds) are left out of the pooled statistics. score,
    normalize_*: as :func:`fit_train_test`, the normalisation fitted on each fold's training
    rows. mean_weights: return the mean of the folds' weights (p, v) as ``weights``.
    """
    started = time.perf_counter()
    folds = outer_folds(X.shape[0], groups, ridge, outer_kind)
    predicted = np.zeros(Y.shape, dtype=np.float32)
    tested = np.zeros(X.shape[0], dtype=bool)
    fold_r, fold_r2, fold_alphas, fold_masks = [], [], [], []
    weight_sum: Optional[np.ndarray] = None
    stats_s = 0.0
    for train_idx, test_idx in folds:
        check_cancel(cancel)
        X_fit, X_held, Y_fit, Y_held = X[train_idx], X[test_idx], Y[train_idx], Y[test_idx]
        if normalize_features:
            X_fit, X_held = standardize_columns(X_fit, X_held)
        if normalize_targets:
            Y_fit, Y_held = standardize_columns(Y_fit, Y_held)
        fit = _fit_ridge(X_fit, Y_fit, ridge, groups[train_idx], cancel, score)
        predicted[test_idx] = fit.predict(X_held)
        tested[test_idx] = True
        if mean_weights:
            weights = np.asarray(fit.weights, dtype=np.float64)
            weight_sum = weights if weight_sum is None else weight_sum + weights
        t0 = time.perf_counter()
        fold_arrays = evaluate_predictions(Y_held, predicted[test_idx], stats)
        stats_s += time.perf_counter() - t0
        fold_r.append(fold_arrays["correlations"])
        fold_r2.append(fold_arrays["r2"])
        fold_masks.append(fold_arrays["significant_mask"])
        fold_alphas.append(np.asarray(fit.best_alphas, dtype=np.float64))
    t0 = time.perf_counter()
    if normalize_targets:  # pooled statistics against the same per-fold standardised targets
        Y = Y.astype(np.float32, copy=True)
        for train_idx, test_idx in folds:
            Y[test_idx] = standardize_columns(Y[train_idx], Y[test_idx])[1]
    pooled = evaluate_predictions(Y[tested], predicted[tested], stats)
    stats_s += time.perf_counter() - t0
    masks = np.stack(fold_masks)
    arrays = {
        "correlations": np.nanmean(np.stack(fold_r), axis=0).astype(np.float32),
        "r2": np.nanmean(np.stack(fold_r2), axis=0).astype(np.float32),
        "pooled_correlations": pooled["correlations"],
        "p_values": pooled["p_values"], "permutation_p_values": pooled["permutation_p_values"],
        "corrected_p_values": pooled["corrected_p_values"], "significant_mask": pooled["significant_mask"],
        "majority_significant_mask": masks.sum(axis=0) > masks.shape[0] / 2,
        "best_alphas": np.median(np.stack(fold_alphas), axis=0),
        "fold_correlations": np.stack(fold_r), "fold_best_alphas": np.stack(fold_alphas),
    }
    arrays.update(_ceiling_arrays(arrays["correlations"], None))
    metrics = _score_summary(arrays, ridge.alphas)
    metrics.update({"mode": "cv", "n_outer_folds": len(folds), "n_trs": int(X.shape[0]),
                    "n_pooled_trs": int(tested.sum()),
                    "n_features": int(X.shape[1]),
                    "n_majority_significant": int(arrays["majority_significant_mask"].sum()),
                    "fold_median_scores": [float(np.nanmedian(r)) for r in fold_r],
                    "significance_test": "block_permutation" if stats.n_permutations > 0 else "parametric"})
    total = time.perf_counter() - started
    weights_out = None if weight_sum is None else (weight_sum / len(folds)).astype(np.float32)
    return LayerResult(metrics, arrays, weights_out, {"fit": total - stats_s, "stats": stats_s})
