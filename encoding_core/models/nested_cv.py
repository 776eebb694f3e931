"""The reference library's model: ``NestedCVModel(model_name=...).fit_predict(...)``.

A thin translation of the reference's arguments into our :class:`~encoding_core.config.RidgeConfig`
and :class:`~encoding_core.config.StatsConfig`, then :mod:`encoding_core.models.fitting`.
``fit_predict`` takes every keyword of the reference with the reference's defaults and returns
its tuple ``(metrics, weights, best_alphas)``; see its docstring for how each keyword maps.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Optional, Sequence

import numpy as np

from encoding_core.common.errors import InputError
from encoding_core.config import OUTER_FOLD_TYPES, REFERENCE_ALPHAS, ExperimentConfig, RidgeConfig, StatsConfig

logger = logging.getLogger(__name__)

FOLDING_TYPES = {
    "chunked": "chunked", "chunk": "chunked", "kfold_chunked": "chunked",
    "contiguous": "contiguous", "kfold": "contiguous",
    "trimmed": "trimmed",
    "story": "story", "leave_one_story_out": "story", "loso": "story",
    "chunked_contiguous": "chunked_contiguous", "chunked_trimmed": "chunked_trimmed",
    "kfold_trimmed": "kfold_trimmed", "timeseries": "timeseries", "group": "group",
}
"""Fold-type names accepted by ``fit_predict(folding_type=...)`` -> the kinds of ``models.folds``.
The reference's seven names map to kinds of the same behaviour (``kfold`` is our ``contiguous``)."""

REFERENCE_FIT_DEFAULTS = {
    "folding_type": "chunked", "n_outer_folds": 5, "n_inner_folds": 5, "chunk_length": 20,
    "alphas": None, "alpha_fdr": 0.05, "use_gpu": True, "single_alpha": False, "normalpha": True,
    "use_corr": True, "normalize_features": False, "normalize_targets": False, "singcutoff": 1e-10,
}
"""The reference's ``fit_predict`` keyword defaults (``alphas=None`` = ``logspace(-1, 8, 10)``)."""

_SCORE_STATS = ("median", "mean", "min", "max")


def _as_matrix(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] < 2:
        raise InputError(f"{name} must be a 2-D array (TRs x columns) with at least 2 rows, got shape {array.shape}.")
    return array


def resolve_device(use_gpu: bool) -> str:
    """The reference's ``use_gpu``: ``"cuda"`` or ``"mps"`` when present, else ``"cpu"`` (silently)."""
    if not use_gpu:
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _fold_kind(name: str) -> str:
    key = str(name).lower()
    if key not in FOLDING_TYPES:
        raise InputError(f"folding_type {name!r} is not known; use one of {sorted(set(FOLDING_TYPES))}.")
    return FOLDING_TYPES[key]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive whole number; got {value!r}.")
    return int(value)


def _score_summaries(r: np.ndarray, mask: np.ndarray, label: str) -> dict[str, float]:
    """``{median,mean,min,max}_{label}_score`` over the voxels of ``mask``, only if any (as the reference)."""
    values = np.asarray(r, dtype=np.float64)[np.asarray(mask, dtype=bool)]
    values = values[np.isfinite(values)]
    if not values.size:
        return {}
    return {f"{stat}_{label}_score": float(getattr(np, stat)(values)) for stat in _SCORE_STATS}


class NestedCVModel:
    """Ridge regression with nested cross-validation (reference alpha convention).

    model_name: stored, as the reference does (only ridge regression exists here; any name is
    accepted). The other options are ours and set what ``fit_predict`` uses when a keyword is
    not given: alphas (default ``logspace(-1, 8, 10)``); n_splits: inner folds; chunk_length:
    TRs per chunk; normalpha: alpha scaled by the largest singular value of X; single_alpha:
    one alpha for all voxels; fold_type; trim_size; n_outer_folds; seed (folds, permutations);
    device; save_weights: keep the weights in the run store (``fit_predict`` always returns
    them); outer_fold_type: outer folds of CV mode (``story``, ``contiguous``, ``trimmed`` or any
    fold kind); None follows ``folding_type`` (the reference).

    Statistics (see :class:`~encoding_core.config.StatsConfig`): test (``effective_dof``,
    ``block_permutation``, ``parametric_iid``) and alternative (``greater``, ``two-sided``).
    Left as None, they are the reference's: the textbook two-sided t-test on r
    (``parametric_iid``), or two-sided block permutation when n_permutations is given. The
    experiment pipeline and the app use our calibrated default instead (``effective_dof``,
    one-sided, see the README's Statistics section); pass ``test="effective_dof",
    alternative="greater"`` here for the same. n_permutations (``None`` = not asked for; the
    pipeline's default is 1000), block_length (TRs, None = chosen from the data), fdr_q (the FDR
    level, the reference's ``alpha_fdr``).
    """

    def __init__(self, model_name: str = "ridge_regression", alphas: Optional[Sequence[float]] = None,
                 n_splits: int = 5, chunk_length: int = 20, normalpha: bool = True, single_alpha: bool = False,
                 fold_type: str = "chunked", trim_size: int = 5, n_outer_folds: int = 5, seed: int = 0,
                 device: str = "cpu", n_permutations: Optional[int] = None, block_length: Optional[int] = None,
                 fdr_q: float = 0.05, save_weights: bool = False, outer_fold_type: Optional[str] = None,
                 test: Optional[str] = None, alternative: Optional[str] = None) -> None:
        if model_name != "ridge_regression":
            logger.info("NestedCVModel(model_name=%r): the name is stored; the model is ridge regression with "
                        "nested cross-validation, as in the reference.", model_name)
        self.model_name = str(model_name)
        self.outer_fold_type = None if outer_fold_type is None else _fold_kind(outer_fold_type)
        self.permutations_requested = n_permutations is not None and int(n_permutations) > 0
        self.ridge_config = RidgeConfig(
            alphas=[float(a) for a in (REFERENCE_ALPHAS if alphas is None else alphas)], normalpha=bool(normalpha),
            single_alpha=bool(single_alpha), n_inner_folds=int(n_splits), n_outer_folds=int(n_outer_folds),
            fold_type=_fold_kind(fold_type), chunk_length=int(chunk_length), trim_size=int(trim_size),
            seed=int(seed), device=device, save_weights=bool(save_weights),
            outer_fold_type=self.outer_fold_type if self.outer_fold_type in OUTER_FOLD_TYPES else "story")
        if test is None:
            test = "block_permutation" if self.permutations_requested else "parametric_iid"
        self.stats_config = StatsConfig(test=str(test), alternative="two-sided" if alternative is None else str(alternative),
                                        n_permutations=1000 if n_permutations is None else int(n_permutations),
                                        block_length=None if block_length is None else int(block_length),
                                        fdr_q=float(fdr_q), seed=int(seed))
        self.last_result = None
        ExperimentConfig(ridge=self.ridge_config, stats=self.stats_config).validate()

    def fit_predict(self, features: Any, targets: Any, X_test: Any = None, y_test: Any = None,
                    groups: Any = None, folding_type: Optional[str] = None, n_outer_folds: Optional[int] = None,
                    n_inner_folds: Optional[int] = None, chunk_length: Optional[int] = None,
                    alphas: Optional[Sequence[float]] = None, alpha_fdr: Optional[float] = None,
                    use_gpu: Optional[bool] = None, single_alpha: Optional[bool] = None,
                    normalpha: Optional[bool] = None, use_corr: bool = True, normalize_features: bool = False,
                    normalize_targets: bool = False, singcutoff: float = 1e-10, *,
                    test_repeats: Any = None) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        """Fit and evaluate; returns ``(metrics, weights (p, v) float32, best_alphas (v,))`` as the reference.

        features (n, p), targets (n, v): used as given (the trainer z-scores each story first).
        With ``X_test`` (m, p) and ``y_test`` (m, v): fit on all of features, test on X_test
        (train/test mode). With neither: full nested CV over outer folds. Giving only one of the
        two is an error here (the reference silently runs full CV).

        Keywords (positional order and defaults as the reference; ``None`` = this model's
        constructor setting, whose defaults are the reference's):

        - ``groups`` (n,): group (story) of each row, for ``folding_type`` ``group``/``story``
          (inner folds; also outer folds in CV mode).
        - ``folding_type`` ("chunked"): ``chunked``, ``chunked_contiguous``, ``chunked_trimmed``,
          ``kfold``, ``kfold_trimmed``, ``timeseries``, ``group`` (see ``models.folds``), plus our
          ``trimmed`` and ``story``. Inner folds in both modes; outer folds in CV mode too.
        - ``n_outer_folds`` (5), ``n_inner_folds`` (5), ``chunk_length`` (20 TRs), ``alphas``
          (``logspace(-1, 8, 10)``), ``single_alpha`` (False), ``normalpha`` (True): our ridge
          with the reference's alpha convention (``W = V diag(S/(S^2 + (alpha S0)^2)) U'Y``).
        - ``alpha_fdr`` (0.05): the Benjamini-Hochberg level, applied to the p-values of the
          constructor's ``test``/``alternative``: by default the reference's parametric two-sided
          Pearson p-values, or block-permutation p-values when the model was built with
          ``n_permutations > 0``. ``metrics["significance"]`` records the test that ran and
          ``metrics["significance_test"]`` its label.
        - ``use_gpu`` (True): ``cuda`` or ``mps`` when present, else the CPU, silently.
        - ``use_corr`` (True): alphas chosen by held-out correlation; False: by
          ``sign(R2) sqrt(|R2|)`` as the reference. The reported score is always Pearson r.
        - ``normalize_features`` / ``normalize_targets`` (False): columns standardised with the
          training rows' mean and unbiased std (+1e-8), per outer fold in CV mode.
        - ``singcutoff`` (1e-10): accepted, no effect. The reference drops singular values below
          it; ours never inverts a singular value alone (``S / (S^2 + a^2)`` with ``a > 0``), so a
          value below 1e-10 contributes at most ``1e-10 / a^2`` and nothing needs cutting.
        - ``test_repeats`` (ours, keyword only): (n_repeats, m, v) repeats of the test story for
          a noise ceiling.

        Metrics: the reference's keys (``median/mean/std/min/max_score``, ``best_alphas``,
        ``correlations``, ``p_values``, ``corrected_p_values``, ``significant_mask``,
        ``n_significant``, ``percent_significant``, and ``{median,mean,min,max}_significant_score``
        when any voxel is significant) as numpy arrays and Python scalars, plus ours (``r2``,
        ``permutation_p_values``, ``noise_ceiling``, ``normalized_correlations``, ...).
        CV mode adds ``majority_significant_mask``, ``n_majority_significant``,
        ``percent_majority_significant`` and ``*_majority_significant_score``. Where CV mode
        differs from the reference: ``correlations`` is the mean of the folds' r (as the
        reference) but ``p_values``/``significant_mask`` come from the pooled out-of-fold
        predictions (one test per voxel over every tested TR) instead of Fisher-combining the
        folds' p-values; the majority mask counts folds actually made. ``best_alphas`` is the
        mean of the folds' alphas (as the reference; ``best_alphas_fold_median`` holds our
        median) and ``weights`` the mean of the folds' weights.

        Reference defects not reproduced: ``groups`` is not passed into the fold trimming size;
        ``group`` folds work in train/test mode; folds are seeded.
        """
        from encoding_core.models.fitting import fit_cross_validated, fit_train_test

        X, Y = _as_matrix(features, "features"), _as_matrix(targets, "targets")
        if X.shape[0] != Y.shape[0]:
            raise InputError(f"features has {X.shape[0]} rows but targets has {Y.shape[0]}; they must be the same TRs.")
        if (X_test is None) != (y_test is None):
            raise InputError("X_test and y_test go together: pass both (train/test mode) or neither (full CV).")
        ridge, stats = self.resolve_settings(folding_type=folding_type, n_outer_folds=n_outer_folds,
                                             n_inner_folds=n_inner_folds, chunk_length=chunk_length, alphas=alphas,
                                             alpha_fdr=alpha_fdr, use_gpu=use_gpu, single_alpha=single_alpha,
                                             normalpha=normalpha)
        kind, fdr_q = ridge.fold_type, stats.fdr_q
        del singcutoff  # documented above: nothing to cut in our solver
        group_array = None if groups is None else np.asarray(groups)
        if group_array is not None and group_array.shape != (X.shape[0],):
            raise InputError(f"groups must have one entry per row of features ({X.shape[0]}), got {group_array.shape}.")
        if kind in ("story", "group") and group_array is None:
            raise InputError(f"folding_type {kind!r} needs groups= (the group, e.g. story, of every row).")
        score = "r" if use_corr else "r2"
        outer = self.outer_fold_type or kind
        if X_test is None and outer in ("story", "group") and group_array is None:
            raise InputError(f"Without X_test the outer folds are {outer!r} folds: pass groups= (the story index of "
                             "every row), or NestedCVModel(outer_fold_type=\"contiguous\").")
        if X_test is not None:
            Xt, Yt = _as_matrix(X_test, "X_test"), _as_matrix(y_test, "y_test")
            if Xt.shape[1] != X.shape[1] or Yt.shape[1] != Y.shape[1] or Xt.shape[0] != Yt.shape[0]:
                raise InputError(f"X_test {Xt.shape} / y_test {Yt.shape} do not match features {X.shape} / "
                                 f"targets {Y.shape}.")
            repeats = None if test_repeats is None else np.asarray(test_repeats, dtype=np.float32)
            result = fit_train_test(X, Y, Xt, Yt, ridge, stats, groups=group_array, test_repeats=repeats,
                                    score=score, normalize_features=normalize_features,
                                    normalize_targets=normalize_targets)
        else:
            if group_array is None:
                group_array = np.zeros(X.shape[0], dtype=int)
            result = fit_cross_validated(X, Y, group_array, ridge, stats, outer_kind=outer, score=score,
                                         normalize_features=normalize_features,
                                         normalize_targets=normalize_targets, mean_weights=True)
            fold_alphas = result.arrays["fold_best_alphas"]
            result.arrays["best_alphas_fold_median"] = np.median(fold_alphas, axis=0)
            result.arrays["best_alphas"] = fold_alphas.mean(axis=0)
            # the reference reports the mean of the folds' r; the pooled r behind the p-values stays
            result.arrays["pooled_correlations"] = result.arrays["correlations"]
            result.arrays["correlations"] = result.arrays["fold_mean_correlations"]
        result.metrics["alpha_fdr"] = fdr_q
        self.last_result = result
        metrics = self._reference_metrics(result)
        weights = np.asarray(result.weights, dtype=np.float32)
        return metrics, weights, np.asarray(result.arrays["best_alphas"])

    def resolve_settings(self, folding_type: Optional[str] = None, n_outer_folds: Optional[int] = None,
                         n_inner_folds: Optional[int] = None, chunk_length: Optional[int] = None,
                         alphas: Optional[Sequence[float]] = None, alpha_fdr: Optional[float] = None,
                         use_gpu: Optional[bool] = None, single_alpha: Optional[bool] = None,
                         normalpha: Optional[bool] = None, **ignored: Any) -> tuple[RidgeConfig, StatsConfig]:
        """The RidgeConfig and StatsConfig a ``fit_predict`` call with these keywords runs with
        (None = the constructor's setting). Other keywords are ignored here."""
        base = self.ridge_config
        ridge = dataclasses.replace(
            base, fold_type=base.fold_type if folding_type is None else _fold_kind(folding_type),
            n_outer_folds=base.n_outer_folds if n_outer_folds is None else _positive_int(n_outer_folds, "n_outer_folds"),
            n_inner_folds=base.n_inner_folds if n_inner_folds is None else _positive_int(n_inner_folds, "n_inner_folds"),
            chunk_length=base.chunk_length if chunk_length is None else _positive_int(chunk_length, "chunk_length"),
            alphas=list(base.alphas) if alphas is None else [float(a) for a in np.asarray(alphas, dtype=float).ravel()],
            single_alpha=base.single_alpha if single_alpha is None else bool(single_alpha),
            normalpha=base.normalpha if normalpha is None else bool(normalpha),
            device=base.device if use_gpu is None else resolve_device(bool(use_gpu)),
            save_weights=True)
        fdr_q = self.stats_config.fdr_q if alpha_fdr is None else float(alpha_fdr)
        if not 0 < fdr_q < 1:
            raise InputError(f"alpha_fdr must be between 0 and 1 (e.g. 0.05); got {alpha_fdr!r}.")
        stats = dataclasses.replace(self.stats_config, fdr_q=fdr_q,
                                    n_permutations=self.stats_config.n_permutations
                                    if self.permutations_requested or self.stats_config.test == "block_permutation"
                                    else 0)
        return ridge, stats

    @staticmethod
    def _reference_metrics(result: Any) -> dict[str, Any]:
        """The reference's metrics dict (its keys first) from a LayerResult, with ours riding along."""
        arrays, metrics = result.arrays, dict(result.metrics)
        r = np.asarray(arrays["correlations"])
        finite = r[np.isfinite(r)].astype(np.float64)
        out: dict[str, Any] = {f"{stat}_score": float(getattr(np, stat)(finite)) if finite.size else float("nan")
                               for stat in ("median", "mean", "std", "min", "max")}
        out.update({"best_alphas": arrays["best_alphas"], "correlations": r, "p_values": arrays["p_values"],
                    "corrected_p_values": arrays["corrected_p_values"],
                    "significant_mask": arrays["significant_mask"], "n_significant": metrics["n_significant"],
                    "percent_significant": metrics["percent_significant"]})
        out.update(_score_summaries(r, arrays["significant_mask"], "significant"))
        if "majority_significant_mask" in arrays:
            majority = np.asarray(arrays["majority_significant_mask"], dtype=bool)
            out["majority_significant_mask"] = majority
            out["n_majority_significant"] = int(majority.sum())
            out["percent_majority_significant"] = 100.0 * float(majority.sum()) / max(r.size, 1)
            out.update(_score_summaries(r, majority, "majority_significant"))
        for key, value in {**metrics, **arrays}.items():
            out.setdefault(key, value)
        return out
