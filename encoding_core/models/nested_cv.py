"""The reference library's model: ``NestedCVModel(model_name="ridge_regression").fit_predict(...)``.

A thin translation of the reference's arguments into our :class:`~encoding_core.config.RidgeConfig`
and :class:`~encoding_core.config.StatsConfig`, then :mod:`encoding_core.models.fitting`.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Optional, Sequence

import numpy as np

from encoding_core.common.errors import InputError
from encoding_core.config import REFERENCE_ALPHAS, ExperimentConfig, RidgeConfig, StatsConfig

logger = logging.getLogger(__name__)

FOLDING_TYPES = {
    "chunked": "chunked", "chunk": "chunked", "kfold_chunked": "chunked",
    "contiguous": "contiguous", "kfold": "contiguous",
    "trimmed": "trimmed", "kfold_trimmed": "trimmed",
    "story": "story", "leave_one_story_out": "story", "loso": "story",
}
"""Fold-type names accepted by ``fit_predict(folding_type=...)`` -> our ``ridge.fold_type``."""


def _as_matrix(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] < 2:
        raise InputError(f"{name} must be a 2-D array (TRs x columns) with at least 2 rows, got shape {array.shape}.")
    return array


class NestedCVModel:
    """Ridge regression with nested cross-validation (reference alpha convention).

    alphas: grid (default ``logspace(-1, 8, 10)``); normalpha: alpha scaled by the largest
    singular value of X; single_alpha: one alpha for all voxels; n_splits: inner folds;
    chunk_length: TRs per chunk for ``chunked`` folds; outer_fold_type: outer folds without a
    test set (``story``, ``contiguous``, ``trimmed``). Statistics options (see
    :class:`~encoding_core.config.StatsConfig`): test (``effective_dof`` default,
    ``block_permutation``, ``parametric_iid``), alternative (``greater`` or ``two-sided``),
    n_permutations, block_length (TRs, None = chosen from the data), fdr_q.
    """

    def __init__(self, model_name: str = "ridge_regression", alphas: Optional[Sequence[float]] = None,
                 n_splits: int = 5, chunk_length: int = 20, normalpha: bool = True, single_alpha: bool = False,
                 fold_type: str = "chunked", trim_size: int = 5, n_outer_folds: int = 5, seed: int = 0,
                 device: str = "cpu", n_permutations: int = 1000, block_length: Optional[int] = None,
                 fdr_q: float = 0.05, save_weights: bool = False, test: str = "effective_dof",
                 alternative: str = "greater", outer_fold_type: str = "story") -> None:
        if model_name != "ridge_regression":
            raise InputError(f"NestedCVModel(model_name={model_name!r}): only 'ridge_regression' is available.")
        self.model_name = model_name
        self.ridge_config = RidgeConfig(
            alphas=[float(a) for a in (REFERENCE_ALPHAS if alphas is None else alphas)], normalpha=bool(normalpha),
            single_alpha=bool(single_alpha), n_inner_folds=int(n_splits), n_outer_folds=int(n_outer_folds),
            fold_type=self._fold_type(fold_type), chunk_length=int(chunk_length), trim_size=int(trim_size),
            seed=int(seed), device=device, save_weights=bool(save_weights), outer_fold_type=str(outer_fold_type))
        self.stats_config = StatsConfig(test=str(test), alternative=str(alternative),
                                        n_permutations=int(n_permutations),
                                        block_length=None if block_length is None else int(block_length),
                                        fdr_q=float(fdr_q), seed=int(seed))
        ExperimentConfig(ridge=self.ridge_config, stats=self.stats_config).validate()

    @staticmethod
    def _fold_type(name: str) -> str:
        key = str(name).lower()
        if key not in FOLDING_TYPES:
            raise InputError(f"folding_type {name!r} is not known; use one of {sorted(set(FOLDING_TYPES))}.")
        return FOLDING_TYPES[key]

    def fit_predict(self, features: Any, targets: Any, X_test: Any = None, y_test: Any = None,
                    folding_type: Optional[str] = None, groups: Any = None, test_repeats: Any = None) -> dict[str, Any]:
        """Fit and evaluate; returns the reference's metrics dict (plus r2, permutation p-values ...).

        features (n, p) and targets (n, v) are used as given (z-score them per story first).
        With X_test/y_test: fit on all of features, test on X_test. Without: outer folds
        (``outer_fold_type``; ``story`` needs ``groups``, each row's story) with statistics on
        the pooled held-out predictions and ``majority_significant_mask`` in the result.
        """
        from encoding_core.models.fitting import fit_cross_validated, fit_train_test

        X, Y = _as_matrix(features, "features"), _as_matrix(targets, "targets")
        if X.shape[0] != Y.shape[0]:
            raise InputError(f"features has {X.shape[0]} rows but targets has {Y.shape[0]}; they must be the same TRs.")
        ridge = self.ridge_config
        if folding_type is not None:
            ridge = dataclasses.replace(ridge, fold_type=self._fold_type(folding_type))
        group_array = None if groups is None else np.asarray(groups)
        if group_array is not None and group_array.shape != (X.shape[0],):
            raise InputError(f"groups must have one entry per row of features ({X.shape[0]}), got {group_array.shape}.")
        if ridge.fold_type == "story" and group_array is None:
            raise InputError("folding_type 'story' needs groups= (the story index of every row).")
        if X_test is None and ridge.outer_fold_type == "story" and group_array is None:
            raise InputError("Without X_test the outer folds leave one story out: pass groups= (the story index of "
                             "every row), or NestedCVModel(outer_fold_type=\"contiguous\").")
        if X_test is not None:
            if y_test is None:
                raise InputError("X_test was given without y_test; pass both or neither.")
            Xt, Yt = _as_matrix(X_test, "X_test"), _as_matrix(y_test, "y_test")
            if Xt.shape[1] != X.shape[1] or Yt.shape[1] != Y.shape[1] or Xt.shape[0] != Yt.shape[0]:
                raise InputError(f"X_test {Xt.shape} / y_test {Yt.shape} do not match features {X.shape} / "
                                 f"targets {Y.shape}.")
            repeats = None if test_repeats is None else np.asarray(test_repeats, dtype=np.float32)
            result = fit_train_test(X, Y, Xt, Yt, ridge, self.stats_config, groups=group_array, test_repeats=repeats)
        else:
            if group_array is None:
                group_array = np.zeros(X.shape[0], dtype=int)
            result = fit_cross_validated(X, Y, group_array, ridge, self.stats_config)
        metrics: dict[str, Any] = dict(result.metrics)
        metrics.update(result.arrays)
        if result.weights is not None:
            metrics["weights"] = result.weights
        return metrics
