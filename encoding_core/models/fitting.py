"""Fit a ridge model with nested CV and score it on held-out data: one layer, one call.

- :func:`fit_train_test`: fit on the training TRs, predict the held-out test story, statistics;
- :func:`fit_cross_validated`: "all stories (CV)", outer folds over all stacked TRs (leave one
  story out by default), statistics on the pooled out-of-fold predictions;
- :func:`evaluate_predictions`: correlation, R^2, p-values (the configured test), BH-FDR and the
  fallback threshold for (n, v) targets vs predictions.

Arrays: X (n_trs, n_features) float32, Y (n_trs, n_voxels) float32, z-scored per story.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from encoding_core.common.progress import CancelFlag, check_cancel
from encoding_core.config import RidgeConfig, StatsConfig

logger = logging.getLogger(__name__)


@dataclass
class LayerResult:
    """What one layer's fit produces: scalar metrics (reference keys), per-voxel arrays, weights."""

    metrics: dict[str, Any]
    arrays: dict[str, np.ndarray]
    weights: Optional[np.ndarray] = None
    timings: dict[str, float] = field(default_factory=dict)


def significance_options(stats: StatsConfig, groups: Optional[np.ndarray] = None, tr_s: float = 2.0) -> dict:
    """Keyword arguments of :func:`encoding_core.stats.significance.significance` for ``stats``."""
    return {"test": stats.test, "alternative": stats.alternative, "groups": groups, "tr_s": float(tr_s),
            "block_length": stats.block_length, "min_block_s": stats.min_block_s,
            "n_permutations": max(int(stats.n_permutations), 1), "seed": stats.seed}


def evaluate_predictions(Y: np.ndarray, P: np.ndarray, stats: StatsConfig, groups: Optional[np.ndarray] = None,
                         tr_s: float = 2.0, fallback: bool = True,
                         variance_factor: Optional[np.ndarray] = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Correlation, R^2, p-values, BH-FDR (and the fallback threshold) for (n, v) Y vs P.

    Y: (n, v) held-out targets (z-scored per story); P: (n, v) predictions; groups: (n,) label
    of each contiguous segment (a story predicted by one model) for pooled predictions; tr_s:
    the TR in seconds; variance_factor: (v,) null-variance factor of pooled cross-validated
    predictions (:mod:`encoding_core.models.cv_dependence`). Returns (arrays, metrics): ``p_values`` are the p-values of
    ``stats.test`` (the ones BH-FDR corrected), ``parametric_iid_p_values`` the textbook
    t-test's for comparison (when another test ran); metrics hold ``significance`` (the
    recorded settings), ``significance_test`` (its label, :func:`describe_test`) and, when
    no voxel survives FDR and ``fallback``, ``fallback_threshold`` (see :func:`_fallback`).
    """
    from encoding_core.stats.scores import r2_score
    from encoding_core.stats.significance import describe_test, fdr_bh, significance

    options = dict(significance_options(stats, groups, tr_s), variance_factor=variance_factor)
    result = significance(Y, P, **options)
    mask, corrected = fdr_bh(result.p_values, q=stats.fdr_q)
    arrays = {"correlations": np.asarray(result.r, dtype=np.float32),  # Pearson r (0 where unusable)
              "r2": np.asarray(r2_score(Y, P), dtype=np.float32),
              "p_values": np.asarray(result.p_values, dtype=np.float64),
              "corrected_p_values": np.asarray(corrected, dtype=np.float64),
              "significant_mask": np.asarray(mask, dtype=bool)}
    if stats.test != "parametric_iid":
        arrays["parametric_iid_p_values"] = np.asarray(result.textbook_p_values(), dtype=np.float64)
    settings = dict(result.settings, fdr_q=float(stats.fdr_q), n_fdr_significant=int(mask.sum()))
    metrics: dict[str, Any] = {"significance": settings, "significance_test": describe_test(settings)}
    if fallback and not mask.any():
        metrics["fallback_threshold"] = _fallback(Y, P, stats, options, result)
    return arrays, metrics


def _fallback(Y: np.ndarray, P: np.ndarray, stats: StatsConfig, options: dict, result: Any) -> dict[str, Any]:
    """The map threshold when no voxel survives FDR: a percentile of the block-permutation null.

    Returns the rule of :func:`encoding_core.stats.significance.fallback_threshold` with
    ``available=True``, or ``{"available": False, "reason": ...}`` when no null can be drawn
    (no permutations asked for, or too few blocks in the test TRs: the reason says which).
    """
    from encoding_core.common.errors import InputError
    from encoding_core.stats.significance import fallback_threshold, significance

    if stats.fallback_statistic == "none":
        return {"available": False, "reason": "stats.fallback_statistic = \"none\"."}
    if stats.n_permutations < 1:
        return {"available": False, "reason": "stats.n_permutations = 0, so there is no permutation null."}
    try:
        null = result if result.null_max_r is not None else significance(
            Y, P, **dict(options, test="block_permutation"))
        rule = fallback_threshold(null, statistic=stats.fallback_statistic, percentile=stats.fallback_percentile)
    except InputError as exc:
        return {"available": False, "reason": str(exc)}
    return dict(rule, available=True)


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


def _score_summary(arrays: Mapping[str, np.ndarray], alphas: Sequence[float],
                   cv_scores: Optional[np.ndarray] = None) -> dict[str, Any]:
    """Scalar metrics with the reference's keys from per-voxel arrays, plus the alpha diagnostics.

    ``median_normalized_score`` is over the voxels with a usable noise ceiling only
    (``n_normalized_voxels`` of them; NaN when none).
    """
    from encoding_core.stats.noise_ceiling import normalized_summary
    from encoding_core.stats.summaries import alpha_diagnostics

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
    normalized = normalized_summary(arrays.get("normalized_correlations", np.full(n_voxels, np.nan)))
    metrics["median_normalized_score"] = normalized["median"]
    metrics["n_normalized_voxels"] = normalized["n_voxels"]
    diagnostics = alpha_diagnostics(best, alphas, mask, cv_scores)
    metrics["alpha_diagnostics"] = diagnostics
    for warning in diagnostics["warnings"]:
        logger.warning("Alpha grid: %s", warning)
    return metrics


def fit_train_test(X_train: np.ndarray, Y_train: np.ndarray, X_test: np.ndarray, Y_test: np.ndarray,
                   ridge: RidgeConfig, stats: StatsConfig, groups: Optional[np.ndarray] = None,
                   test_repeats: Optional[np.ndarray] = None, test_target_is_repeat_mean: bool = False,
                   cancel: Optional[CancelFlag] = None, tr_s: float = 2.0, score: str = "r",
                   normalize_features: bool = False, normalize_targets: bool = False,
                   ceiling_r: Optional[np.ndarray] = None) -> LayerResult:
    """Nested-CV ridge on the training TRs, predict the test TRs, test statistics.

    X_*: (n_trs, n_features) float32, Y_*: (n_trs, n_voxels) float32 (z-scored); groups:
    (n_train,) story index per training TR (for ``fold_type="story"``); test_repeats:
    (n_repeats, n_test, n_voxels) for a noise ceiling; test_target_is_repeat_mean: Y_test is the
    mean of those repeats (the ceiling is then that of an averaged target); tr_s: TR in seconds.
    score: the inner-CV score (``r`` or ``r2``, see ``ridge_nested_cv``); normalize_features /
    normalize_targets: standardise columns with the training rows' statistics first
    (:func:`standardize_columns`); ceiling_r: (n_voxels,) the noise ceiling of test_repeats when
    already computed (the pipeline computes it once per run).
    """
    started = time.perf_counter()
    if normalize_features:
        X_train, X_test = standardize_columns(X_train, X_test)
    if normalize_targets:
        Y_train, Y_test = standardize_columns(Y_train, Y_test)
    fit = _fit_ridge(X_train, Y_train, ridge, groups, cancel, score)
    predicted = np.asarray(fit.predict(X_test), dtype=np.float32)
    fit_s = time.perf_counter() - started
    arrays, significance_metrics = evaluate_predictions(Y_test, predicted, stats, tr_s=tr_s)
    arrays["best_alphas"] = np.asarray(fit.best_alphas, dtype=np.float64)
    arrays["cv_scores"] = np.asarray(fit.cv_scores, dtype=np.float32)
    arrays.update(_ceiling_arrays(arrays["correlations"], test_repeats, test_target_is_repeat_mean, ceiling_r))
    metrics = _score_summary(arrays, ridge.alphas, arrays["cv_scores"])
    metrics.update(significance_metrics)
    metrics.update({"mode": "train_test", "n_train_trs": int(X_train.shape[0]), "n_test_trs": int(X_test.shape[0]),
                    "noise_ceiling_target": None if test_repeats is None else
                    ("repeat_mean" if test_target_is_repeat_mean else "single_repeat"),
                    "n_features": int(X_train.shape[1])})
    return LayerResult(metrics, arrays, np.asarray(fit.weights, dtype=np.float32) if ridge.save_weights else None,
                       {"fit": fit_s, "stats": time.perf_counter() - started - fit_s})


def _ceiling_arrays(r: np.ndarray, repeats: Optional[np.ndarray],
                    target_is_repeat_mean: bool = False, ceiling_r: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
    """Noise ceiling (n_voxels,) from (n_repeats, n_trs, n_voxels) repeats and r / ceiling.

    Both NaN without repeats; the normalised r is NaN wherever the ceiling is unusable.
    ceiling_r: the ceiling of these repeats when already computed (it is the same for every layer).
    """
    n = np.asarray(r).shape[0]
    if repeats is None or repeats.shape[0] < 2:
        return {"noise_ceiling": np.full(n, np.nan, np.float32),
                "normalized_correlations": np.full(n, np.nan, np.float32)}
    from encoding_core.stats.noise_ceiling import noise_ceiling, normalize_by_ceiling

    if ceiling_r is None:
        _, ceiling_r = noise_ceiling(repeats, averaged_target=target_is_repeat_mean)
    return {"noise_ceiling": np.asarray(ceiling_r, dtype=np.float32),
            "normalized_correlations": np.asarray(normalize_by_ceiling(r, ceiling_r), dtype=np.float32)}


def outer_folds(n_samples: int, groups: np.ndarray, ridge: RidgeConfig, kind: Optional[str] = None) -> list:
    """Outer folds of ``cv`` mode, by ``kind`` or else ``ridge.outer_fold_type``.

    ``story``: leave one story out; ``contiguous``: blocks; ``trimmed``: blocks with ``trim_size``
    TRs around each held-out block left out of its training set (every TR held out once). Any
    other kind of ``folds.make_folds`` (the reference's outer folds follow its ``folding_type``)
    with ``ridge.n_outer_folds`` folds; time-series kinds leave some TRs untested.
    """
    from encoding_core.models.folds import make_folds

    kind = ridge.outer_fold_type if kind is None else kind
    return make_folds(n_samples, kind=kind, n_folds=ridge.n_outer_folds, chunk_length=ridge.chunk_length,
                      trim_size=ridge.trim_size, seed=ridge.seed,
                      groups=groups if kind in GROUPED_FOLD_TYPES else None)


def pooled_segments(groups: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(n,) label of each contiguous run of TRs from one story predicted by one outer-fold model.

    The significance tests centre and autocorrelate the pooled held-out series within these
    segments (never across a story boundary or a change of model).
    """
    labels = np.asarray(groups)
    fold_of = np.zeros(labels.shape[0], dtype=np.int64)
    for index, (_, test) in enumerate(folds):  # a handful of folds
        fold_of[np.asarray(test)] = index
    _, story_index = np.unique(labels, return_inverse=True)
    key = story_index.astype(np.int64) * (len(folds) + 1) + fold_of
    change = np.concatenate([[True], key[1:] != key[:-1]])
    return np.cumsum(change) - 1


def fit_cross_validated(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, ridge: RidgeConfig, stats: StatsConfig,
                        cancel: Optional[CancelFlag] = None, tr_s: float = 2.0,
                        repeats: Optional[np.ndarray] = None, repeats_rows: Optional[np.ndarray] = None,
                        repeats_target_is_mean: bool = False, outer_kind: Optional[str] = None, score: str = "r",
                        normalize_features: bool = False, normalize_targets: bool = False,
                        mean_weights: bool = False, ceiling_r: Optional[np.ndarray] = None) -> LayerResult:
    """"All stories (CV)": outer folds over all stacked TRs, nested-CV ridge inside each training part.

    X: (n, p), Y: (n, v) (z-scored per story), groups: (n,) story label per TR; tr_s: TR in s.
    Every tested TR is predicted once by a model that did not train on it; ``correlations``,
    ``r2``, p-values and ``significant_mask`` are those of the pooled held-out predictions (one
    test per voxel over the tested TRs, segments = story x outer fold, see
    :func:`pooled_segments`). Their null variance includes the dependence between folds (each
    fold's model trained on the others' held-out data): ``1 + rho`` per voxel from
    :mod:`encoding_core.models.cv_dependence`. ``fold_correlations`` (n_folds, v) and
    ``fold_mean_correlations`` (v,) are the per-fold r and their mean;
    ``majority_significant_mask`` marks voxels significant (BH-FDR within the fold) in more
    than half of the folds. ``best_alphas`` is the median over folds and ``cv_scores`` the mean
    inner-CV score per alpha over folds. repeats: (n_repeats, len(repeats_rows), v) individual
    presentations of the rows ``repeats_rows`` (one story): its noise ceiling, and that story's
    held-out r divided by it. outer_kind: outer fold kind (default ``ridge.outer_fold_type``);
    TRs that no outer fold tests (time-series kinds) are left out of the pooled statistics.
    score, normalize_*: as :func:`fit_train_test`, the normalisation fitted on each fold's
    training rows. mean_weights: return the mean of the folds' weights (p, v) as ``weights``.
    ceiling_r: (v,) the noise ceiling of ``repeats`` when already computed.
    """
    from encoding_core.stats.significance import describe_test, fdr_bh, significance

    started = time.perf_counter()
    groups = np.asarray(groups)
    folds = outer_folds(X.shape[0], groups, ridge, outer_kind)
    predicted = np.zeros(Y.shape, dtype=np.float32)
    tested = np.zeros(X.shape[0], dtype=bool)
    fold_r, fold_alphas, fold_masks, fold_scores = [], [], [], []
    weight_sum: Optional[np.ndarray] = None
    fold_stats = dataclasses.replace(stats, test="effective_dof") if stats.test == "block_permutation" else stats
    fold_label = None
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
        held_groups = groups[test_idx]
        fold_result = significance(Y_held, predicted[test_idx], **significance_options(
            fold_stats, held_groups if len(np.unique(held_groups)) > 1 else None, tr_s))
        stats_s += time.perf_counter() - t0
        fold_label = fold_label or describe_test(fold_result.settings)
        fold_r.append(np.asarray(fold_result.r, dtype=np.float32))
        fold_masks.append(fdr_bh(fold_result.p_values, q=stats.fdr_q)[0])
        fold_alphas.append(np.asarray(fit.best_alphas, dtype=np.float64))
        fold_scores.append(np.asarray(fit.cv_scores, dtype=np.float64))
    t0 = time.perf_counter()
    from encoding_core.models.cv_dependence import cross_fold_rho, variance_factor

    if normalize_targets:  # pooled statistics against the same per-fold standardised targets
        Y = Y.astype(np.float32, copy=True)
        for train_idx, test_idx in folds:
            Y[test_idx] = standardize_columns(Y[train_idx], Y[test_idx])[1]
    rho = cross_fold_rho(X, folds, ridge.alphas, normalpha=ridge.normalpha, seed=ridge.seed)
    # the textbook test stays textbook (n - 2 degrees of freedom, no correction of any kind)
    factor = None if stats.test == "parametric_iid" else variance_factor(rho, ridge.alphas, np.stack(fold_alphas))
    segments = pooled_segments(groups, folds)
    pooled, significance_metrics = evaluate_predictions(Y[tested], predicted[tested], stats, groups=segments[tested],
                                                        tr_s=tr_s, variance_factor=factor)
    significance_metrics["significance"]["cross_fold_rho"] = {f"{a:g}": float(v) for a, v in zip(ridge.alphas, rho)}
    stats_s += time.perf_counter() - t0
    masks = np.stack(fold_masks)
    arrays = dict(pooled)
    arrays.update({
        "fold_mean_correlations": np.nanmean(np.stack(fold_r), axis=0).astype(np.float32),
        "majority_significant_mask": masks.sum(axis=0) > masks.shape[0] / 2,
        "best_alphas": np.median(np.stack(fold_alphas), axis=0),
        "cv_scores": np.mean(np.stack(fold_scores), axis=0).astype(np.float32),
        "fold_correlations": np.stack(fold_r), "fold_best_alphas": np.stack(fold_alphas),
    })
    ceiling_metrics: dict[str, Any] = {"noise_ceiling_target": None}
    if repeats is not None and repeats_rows is not None and repeats.shape[0] >= 2:
        from encoding_core.stats.scores import pearson_r

        rows = np.asarray(repeats_rows)
        story_r = np.asarray(pearson_r(Y[rows], predicted[rows]), dtype=np.float32)
        arrays["noise_ceiling_story_correlations"] = story_r
        arrays.update(_ceiling_arrays(story_r, repeats, repeats_target_is_mean, ceiling_r))
        ceiling_metrics = {"noise_ceiling_target": "repeat_mean" if repeats_target_is_mean else "single_repeat",
                           "noise_ceiling_n_trs": int(rows.size)}
    else:
        arrays.update(_ceiling_arrays(arrays["correlations"], None))
    metrics = _score_summary(arrays, ridge.alphas, arrays["cv_scores"])
    metrics.update(significance_metrics)
    metrics.update(ceiling_metrics)
    metrics.update({"mode": "cv", "outer_fold_type": outer_kind or ridge.outer_fold_type, "n_outer_folds": len(folds),
                    "n_trs": int(X.shape[0]), "n_pooled_trs": int(tested.sum()), "n_features": int(X.shape[1]),
                    "n_majority_significant": int(arrays["majority_significant_mask"].sum()),
                    "fold_median_scores": [float(np.nanmedian(r)) for r in fold_r],
                    "fold_significance_test": fold_label})
    total = time.perf_counter() - started
    weights_out = None if weight_sum is None else (weight_sum / len(folds)).astype(np.float32)
    return LayerResult(metrics, arrays, weights_out, {"fit": total - stats_s, "stats": stats_s})
