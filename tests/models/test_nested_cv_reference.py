"""NestedCVModel.fit_predict with the reference's keywords, in both modes, returning its tuple.

References: scipy (Pearson p-values, BH), scikit-learn (folds), numpy solves written here.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import scipy.stats
from sklearn.model_selection import GroupKFold, KFold, TimeSeriesSplit

from encoding_core.common.errors import InputError
from encoding_core.models.folds import make_folds
from encoding_core.models.nested_cv import REFERENCE_FIT_DEFAULTS, NestedCVModel

REFERENCE_KEYWORDS = ["groups", "folding_type", "n_outer_folds", "n_inner_folds", "chunk_length", "alphas",
                      "alpha_fdr", "use_gpu", "single_alpha", "normalpha", "use_corr", "normalize_features",
                      "normalize_targets", "singcutoff"]
REFERENCE_KEYS = ["median_score", "mean_score", "std_score", "min_score", "max_score", "best_alphas", "correlations",
                  "p_values", "corrected_p_values", "significant_mask", "n_significant", "percent_significant"]


def data(n=240, p=8, v=12, seed=0, noise=2.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)).astype(np.float32)
    W = rng.standard_normal((p, v))
    W[:, v // 2:] = 0.0  # half the voxels carry no signal
    Y = (X @ W + noise * rng.standard_normal((n, v))).astype(np.float32)
    return X, Y


def every_keyword(**overrides):
    kwargs = dict(groups=None, folding_type="chunked", n_outer_folds=4, n_inner_folds=3, chunk_length=10,
                  alphas=np.logspace(-1, 3, 5), alpha_fdr=0.05, use_gpu=True, single_alpha=False, normalpha=True,
                  use_corr=True, normalize_features=False, normalize_targets=False, singcutoff=1e-10)
    kwargs.update(overrides)
    return kwargs


def test_signature_is_the_reference_order():
    params = list(inspect.signature(NestedCVModel.fit_predict).parameters)
    assert params[1:5] == ["features", "targets", "X_test", "y_test"]
    assert params[5:5 + len(REFERENCE_KEYWORDS)] == REFERENCE_KEYWORDS
    assert set(REFERENCE_FIT_DEFAULTS) == set(REFERENCE_KEYWORDS) - {"groups"}


def test_train_test_mode_returns_the_reference_tuple_and_statistics():
    X, Y = data()
    metrics, weights, best_alphas = NestedCVModel("ridge_regression").fit_predict(
        X[:180], Y[:180], X[180:], Y[180:], **every_keyword())
    assert weights.shape == (8, 12) and weights.dtype == np.float32 and best_alphas.shape == (12,)
    for key in REFERENCE_KEYS:
        assert key in metrics, key
    assert "majority_significant_mask" not in metrics
    # held-out predictions and parametric statistics, recomputed here with scipy
    predicted = X[180:] @ weights
    expected = [scipy.stats.pearsonr(Y[180:, i], predicted[:, i]) for i in range(12)]
    np.testing.assert_allclose(metrics["correlations"], [e.statistic for e in expected], atol=1e-4)
    np.testing.assert_allclose(metrics["p_values"], [e.pvalue for e in expected], rtol=1e-3, atol=1e-10)
    bh = scipy.stats.false_discovery_control(np.array([e.pvalue for e in expected]))
    np.testing.assert_allclose(metrics["corrected_p_values"], bh, rtol=1e-3, atol=1e-10)
    np.testing.assert_array_equal(metrics["significant_mask"], bh <= 0.05)
    assert metrics["n_significant"] == int((bh <= 0.05).sum())
    assert metrics["percent_significant"] == pytest.approx(100 * (bh <= 0.05).mean())
    assert metrics["significance"]["test"] == "parametric_iid"
    assert metrics["significance"]["alternative"] == "two-sided"
    assert "independent TRs" in metrics["significance_test"] and "two-sided" in metrics["significance_test"]
    significant = np.asarray(metrics["correlations"])[metrics["significant_mask"]]
    assert metrics["median_significant_score"] == pytest.approx(np.median(significant))
    assert metrics["max_significant_score"] == pytest.approx(significant.max())
    assert isinstance(metrics["median_score"], float) and isinstance(metrics["n_significant"], int)


def test_weights_are_the_ridge_solution_at_the_returned_alphas():
    """W = (X'X + (alpha S0)^2 I)^-1 X'y per voxel (normalpha), solved here with numpy."""
    X, Y = data(noise=3.0)
    alphas = np.logspace(-2, 2, 5)
    _, weights, best = NestedCVModel().fit_predict(X[:180], Y[:180], X[180:], Y[180:], alphas=alphas,
                                                   use_gpu=False, n_inner_folds=3, chunk_length=10)
    assert set(np.round(best, 8)) <= set(np.round(alphas, 8))
    x = X[:180].astype(np.float64)
    s0 = np.linalg.svd(x, compute_uv=False)[0]
    for voxel in range(12):
        penalty = (best[voxel] * s0) ** 2
        expected = np.linalg.solve(x.T @ x + penalty * np.eye(8), x.T @ Y[:180, voxel])
        np.testing.assert_allclose(weights[:, voxel], expected, rtol=2e-4, atol=2e-5)


def test_full_cv_mode_returns_every_reference_key():
    X, Y = data()
    metrics, weights, best_alphas = NestedCVModel().fit_predict(X, Y, **every_keyword(folding_type="kfold"))
    for key in REFERENCE_KEYS + ["majority_significant_mask", "n_majority_significant",
                                 "percent_majority_significant"]:
        assert key in metrics, key
    assert weights.shape == (8, 12) and best_alphas.shape == (12,)
    fold_alphas = metrics["fold_best_alphas"]
    assert fold_alphas.shape == (4, 12)
    np.testing.assert_allclose(best_alphas, fold_alphas.mean(axis=0))  # the reference's mean
    np.testing.assert_allclose(metrics["best_alphas_fold_median"], np.median(fold_alphas, axis=0))
    np.testing.assert_allclose(metrics["correlations"], metrics["fold_correlations"].mean(axis=0), atol=1e-6)
    assert metrics["n_pooled_trs"] == 240  # kfold outer folds test every TR once
    # the pooled p-values are the parametric ones of the pooled r over 240 TRs
    r = metrics["pooled_correlations"].astype(np.float64)
    expected_p = 2 * scipy.stats.t.sf(np.abs(r) * np.sqrt(238 / (1 - r ** 2)), 238)
    np.testing.assert_allclose(metrics["p_values"], expected_p, rtol=1e-3, atol=1e-12)
    majority = metrics["majority_significant_mask"]
    assert metrics["n_majority_significant"] == int(np.sum(majority))
    assert metrics["percent_majority_significant"] == pytest.approx(100 * np.mean(majority))
    if metrics["n_majority_significant"]:
        assert metrics["median_majority_significant_score"] == pytest.approx(
            np.median(np.asarray(metrics["correlations"])[majority]))
    assert metrics["n_significant"] >= 4  # the signal voxels are found


def test_use_corr_false_chooses_alphas_by_signed_root_r2():
    """A plain loop: inner folds, ridge per alpha, sign(R2) sqrt|R2| averaged, argmax per voxel."""
    X, Y = data(noise=4.0, seed=3)
    alphas = np.logspace(-1, 3, 6)
    _, _, best = NestedCVModel().fit_predict(X[:180], Y[:180], X[180:], Y[180:], alphas=alphas, use_corr=False,
                                             folding_type="kfold", n_inner_folds=3, use_gpu=False)
    scores = np.zeros((6, 12))
    for train, test in KFold(3).split(X[:180]):
        x, y = X[train].astype(np.float64), Y[train].astype(np.float64)
        s0 = np.linalg.svd(x, compute_uv=False)[0]
        for i, alpha in enumerate(alphas):
            w = np.linalg.solve(x.T @ x + (alpha * s0) ** 2 * np.eye(8), x.T @ y)
            pred = X[test] @ w
            r2 = 1 - np.var(Y[test] - pred, axis=0, ddof=1) / np.var(Y[test], axis=0, ddof=1)
            scores[i] += np.sign(r2) * np.sqrt(np.abs(r2))
    np.testing.assert_allclose(best, alphas[np.argmax(scores, axis=0)])


def test_normalize_features_and_targets_use_training_statistics():
    X, Y = data()
    X = X * np.arange(1, 9, dtype=np.float32) + 5.0
    m_norm, _, _ = NestedCVModel().fit_predict(X[:180], Y[:180], X[180:], Y[180:], normalize_features=True,
                                               normalize_targets=True, use_gpu=False)
    mean, std = X[:180].mean(axis=0), X[:180].std(axis=0, ddof=1) + 1e-8
    ymean, ystd = Y[:180].mean(axis=0), Y[:180].std(axis=0, ddof=1) + 1e-8
    m_hand, _, _ = NestedCVModel().fit_predict((X[:180] - mean) / std, (Y[:180] - ymean) / ystd,
                                               (X[180:] - mean) / std, (Y[180:] - ymean) / ystd, use_gpu=False)
    np.testing.assert_allclose(m_norm["correlations"], m_hand["correlations"], atol=1e-5)


def test_constructor_permutations_switch_significance_to_block_permutation():
    X, Y = data()
    model = NestedCVModel(n_permutations=50, block_length=10)
    metrics, _, _ = model.fit_predict(X[:180], Y[:180], X[180:], Y[180:], alpha_fdr=0.1, use_gpu=False)
    assert metrics["significance"]["test"] == "block_permutation"
    assert metrics["significance"]["block_length"] == 10
    assert np.all(np.isfinite(metrics["p_values"])) and np.all(metrics["p_values"] >= 1 / 51)
    bh = scipy.stats.false_discovery_control(metrics["p_values"])
    np.testing.assert_array_equal(metrics["significant_mask"], bh <= 0.1)


def test_any_model_name_and_half_a_test_set():
    model = NestedCVModel(model_name="my_ridge")
    assert model.model_name == "my_ridge"
    X, Y = data()
    with pytest.raises(InputError, match="X_test and y_test go together"):
        model.fit_predict(X, Y, X_test=X[:10])
    with pytest.raises(InputError, match="folding_type 'sideways'"):
        model.fit_predict(X, Y, folding_type="sideways")


def test_group_folding_uses_groups_in_both_modes():
    X, Y = data()
    groups = np.repeat(np.arange(6), 40)
    metrics, _, _ = NestedCVModel().fit_predict(X[:200], Y[:200], X[200:], Y[200:], groups=groups[:200],
                                                folding_type="group", n_inner_folds=3, use_gpu=False)
    assert np.isfinite(metrics["median_score"])
    metrics, _, _ = NestedCVModel().fit_predict(X, Y, groups=groups, folding_type="group", n_outer_folds=3,
                                                n_inner_folds=2, use_gpu=False)
    assert metrics["n_outer_folds"] == 3 and metrics["n_pooled_trs"] == 240


@pytest.mark.parametrize("kind", ["timeseries", "kfold_trimmed", "chunked_trimmed", "chunked_contiguous"])
def test_every_reference_folding_type_runs_in_cv_mode(kind):
    X, Y = data()
    metrics, weights, best = NestedCVModel().fit_predict(X, Y, folding_type=kind, n_outer_folds=3, n_inner_folds=3,
                                                         chunk_length=20, use_gpu=False)
    tested = {"timeseries": 240 - 240 // 4, "kfold_trimmed": 240 - 3 * 10}.get(kind)
    if tested is not None:
        assert metrics["n_pooled_trs"] == tested
    assert weights.shape == (8, 12) and np.all(np.isfinite(best))


# -- the reference's fold kinds against scikit-learn and hand rules --------------------------

def test_timeseries_and_group_folds_equal_sklearn():
    for (train, test), (etrain, etest) in zip(make_folds(103, "timeseries", 5), TimeSeriesSplit(5).split(np.zeros(103))):
        np.testing.assert_array_equal(train, etrain)
        np.testing.assert_array_equal(test, etest)
    groups = np.repeat(np.arange(7), [30, 12, 40, 12, 9, 20, 5])
    for (train, test), (etrain, etest) in zip(make_folds(len(groups), "group", 3, groups=groups),
                                              GroupKFold(3).split(np.zeros(len(groups)), groups=groups)):
        np.testing.assert_array_equal(train, etrain)
        np.testing.assert_array_equal(test, etest)


def test_kfold_trimmed_trims_the_test_blocks_and_keeps_training():
    for (train, test), (ktrain, ktest) in zip(make_folds(100, "kfold_trimmed", 4, trim_size=5),
                                              KFold(4).split(np.zeros(100))):
        np.testing.assert_array_equal(train, ktrain)
        np.testing.assert_array_equal(test, ktest[5:-5])


def test_chunked_contiguous_and_trimmed_follow_chunks():
    folds = make_folds(100, "chunked_contiguous", 5, chunk_length=10)
    np.testing.assert_array_equal(np.concatenate([te for _, te in folds]), np.arange(100))
    for i, (train, test) in enumerate(folds):
        np.testing.assert_array_equal(test, np.arange(20 * i, 20 * i + 20))
    shuffled = make_folds(100, "chunked", 5, chunk_length=10, seed=2)
    trimmed = make_folds(100, "chunked_trimmed", 5, chunk_length=10, trim_size=3, seed=2)
    for (train, test), (ttrain, ttest) in zip(shuffled, trimmed):
        np.testing.assert_array_equal(train, ttrain)
        expected = [t for t in test if 3 <= t % 10 < 7]  # each 10-TR chunk keeps [start+3, end-3)
        np.testing.assert_array_equal(ttest, expected)
