"""Numerical edge cases: constant / all-NaN voxels, zero-variance features, p > n, one story.

Every result must be defined (no NaN), undefined correlations are 0, and a warning says why.
"""
from __future__ import annotations

import logging

import numpy as np

from encoding_core.models.folds import make_folds
from encoding_core.downsample.preprocessing import zscore
from encoding_core.models.ridge import ridge_nested_cv
from encoding_core.stats.significance import fdr_bh, significance
from encoding_core.stats.noise_ceiling import noise_ceiling
from encoding_core.stats.scores import pearson_r

ALPHAS = np.logspace(-1, 8, 10)


def data(seed=0, n=120, p=10, v=8):
    gen = np.random.default_rng(seed)
    X = gen.standard_normal((n, p))
    Y = X @ gen.standard_normal((p, v)) + gen.standard_normal((n, v))
    return X, Y


def test_constant_and_nan_voxels_score_zero_with_warning(caplog):
    X, Y = data()
    Y[:, 0] = 3.0
    Y[:, 1] = np.nan
    Y[5, 2] = np.nan
    folds = make_folds(120, "chunked", 5, chunk_length=10, seed=0)
    with caplog.at_level(logging.WARNING):
        fit = ridge_nested_cv(X, Y, folds, ALPHAS)
    assert "NaN/inf" in caplog.text
    assert np.isfinite(fit.weights).all() and np.isfinite(fit.cv_scores).all()
    assert not fit.cv_scores[:, :2].any()  # constant / missing voxels: r = 0 for every alpha
    assert not fit.weights[:, 1].any()
    pred = fit.predict(X)
    r = pearson_r(Y, pred)
    assert np.isfinite(r).all() and r[0] == 0 and r[1] == 0 and np.isfinite(np.median(r))
    for test in ("effective_dof", "parametric_iid", "block_permutation"):
        p = significance(Y, pred, test=test, block_length=10, n_permutations=50).p_values
        assert np.isfinite(p).all() and p[0] == 1.0 and p[1] == 1.0, test
        assert np.isfinite(fdr_bh(p)[1]).all()


def test_zero_variance_features_and_all_zero_features():
    X, Y = data(seed=1)
    X[:, 3] = 0.0
    X = zscore(np.column_stack([X, np.full(120, 5.0)]))  # constant column -> zeros
    folds = make_folds(120, "contiguous", 4)
    fit = ridge_nested_cv(X, Y, folds, ALPHAS)
    assert np.isfinite(fit.weights).all()
    assert np.abs(fit.weights[[3, 10]]).max() < 1e-8 * np.abs(fit.weights).max()  # features that never vary
    zero = ridge_nested_cv(np.zeros((120, 4)), Y, folds, ALPHAS)
    assert not zero.weights.any() and not zero.cv_scores.any()
    assert np.isfinite(zero.best_alphas).all()


def test_more_features_than_trs_gives_finite_results():
    X, Y = data(seed=2, n=40, p=60, v=5)
    fit = ridge_nested_cv(X, Y, make_folds(40, "contiguous", 4), ALPHAS)
    assert np.isfinite(fit.weights).all() and np.isfinite(fit.cv_scores).all()


def test_single_training_story(caplog):
    X, Y = data(seed=3, n=100)
    with caplog.at_level(logging.WARNING):
        folds = make_folds(100, "story", 5, groups=np.repeat("only", 100), chunk_length=10)
    assert "Only one story" in caplog.text
    fit = ridge_nested_cv(X, Y, folds, ALPHAS)
    assert np.isfinite(fit.weights).all()


def test_noise_ceiling_with_constant_and_nan_voxels():
    gen = np.random.default_rng(4)
    reps = gen.standard_normal((4, 50, 5))
    reps[:, :, 0] = 1.0
    reps[1, 3, 1] = np.nan
    ev, ceiling = noise_ceiling(reps)
    assert np.isfinite(ev).all() and np.isfinite(ceiling).all()
    assert ev[0] == 0 and ev[1] == 0 and ((ev >= 0) & (ev <= 1)).all()
