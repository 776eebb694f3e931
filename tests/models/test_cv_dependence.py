"""Dependence between cross-validation folds: the pooled prediction operator's rho against scikit-learn,
Hutchinson's estimate against the exact value, and the null calibration of pooled "all stories (CV)"
statistics with and without the correction."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter
from sklearn.linear_model import Ridge

from encoding_core.config import RidgeConfig, StatsConfig
from encoding_core.models import cv_dependence
from encoding_core.models.cv_dependence import cross_fold_rho, variance_factor
from encoding_core.models.fitting import fit_cross_validated
from encoding_core.models.folds import make_folds


def ar1(gen, n, v, phi):
    e = gen.standard_normal((n, v))
    e[0] /= np.sqrt(1 - phi * phi)
    return lfilter([np.sqrt(1 - phi * phi)], [1.0, -phi], e, axis=0)


def zscore(x):
    return (x - x.mean(axis=0)) / x.std(axis=0)


def test_rho_equals_the_operator_built_with_sklearn_ridge():
    gen = np.random.default_rng(0)
    n, p = 120, 30
    X = gen.standard_normal((n, p))
    groups = np.repeat(np.arange(4), 30)
    folds = make_folds(n, "story", groups=groups)
    alphas = [0.1, 1.0, 10.0]
    got = cross_fold_rho(X, folds, alphas, normalpha=True)
    for index, alpha in enumerate(alphas):
        H = np.zeros((n, n))
        for train, test in folds:  # column j of H: the predictions for a unit target at training TR j
            scale = np.linalg.svd(X[train], compute_uv=False)[0]
            model = Ridge(alpha=(alpha * scale) ** 2, fit_intercept=False).fit(X[train], np.eye(n)[train])
            H[test] = model.predict(X[test])
        assert got[index] == pytest.approx(np.trace(H @ H) / np.sum(H * H), rel=1e-6)
    probed = cross_fold_rho(X, folds, alphas, exact_max_n=0, n_probes=400, seed=1)
    np.testing.assert_allclose(probed, got, atol=0.03)


def test_variance_factor_uses_each_folds_alpha_and_stays_between_1_and_2():
    rho = np.array([0.5, 0.9, -0.2])
    fold_alphas = np.array([[1.0, 1.0, 100.0], [10.0, 1.0, 100.0]])
    np.testing.assert_allclose(variance_factor(rho, [1.0, 10.0, 100.0], fold_alphas), [1.7, 1.5, 1.0])


@pytest.fixture(scope="module")
def null_cv():
    """Six demo-length stories, features shared in part across stories, Y independent AR(1) noise."""
    gen = np.random.default_rng(0)
    sizes, v, p = [37, 34, 37, 34, 40, 46], 4000, 200
    shared = ar1(gen, max(sizes), p, 0.8)
    X = np.concatenate([zscore(0.7 * shared[:s] + 0.7 * ar1(gen, s, p, 0.8)) for s in sizes]).astype(np.float32)
    Y = np.concatenate([zscore(ar1(gen, s, v, 0.4)) for s in sizes]).astype(np.float32)
    ridge = RidgeConfig(alphas=[0.1, 1.0, 10.0, 100.0, 1000.0], mode="cv", n_inner_folds=3, chunk_length=10)
    return X, Y, np.repeat(np.arange(6), sizes), ridge


def test_pooled_cv_null_is_calibrated_only_with_the_cross_fold_correction(null_cv, monkeypatch):
    X, Y, groups, ridge = null_cv
    corrected = fit_cross_validated(X, Y, groups, ridge, StatsConfig(n_permutations=0))
    rate = np.mean(corrected.arrays["p_values"] <= 0.05)
    factor = corrected.metrics["significance"]["variance_factor"]
    assert 1.5 < factor["median"] <= 2.0
    # measured 3.3 % (conservative, like the test on single short stories), never liberal
    assert 0.02 <= rate <= 0.065, rate
    assert "for the dependence between cross-validation folds" in corrected.metrics["significance_test"]
    monkeypatch.setattr(cv_dependence, "variance_factor", lambda *args, **kwargs: np.ones(Y.shape[1]))
    naive = fit_cross_validated(X, Y, groups, ridge, StatsConfig(n_permutations=0))
    assert np.mean(naive.arrays["p_values"] <= 0.05) > 0.07  # measured 8 %: folds are not independent
