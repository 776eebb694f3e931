"""Variance partitioning: planted recovery (ROC AUC), the partition adds up, hand-written
inclusion-exclusion formulas, scikit-learn r2_score, and scipy for the stacking weights."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from encoding_core.common.errors import InputError
from encoding_core.models.folds import make_folds
from scipy.optimize import minimize
from sklearn.metrics import r2_score, roc_auc_score

from encoding_core.models.variance_partitioning import (
    out_of_fold_products,
    partition_regions,
    simplex_least_squares,
    variance_partitioning,
)

ALPHAS = np.logspace(-1, 3, 6)


def planted_partition(n_train=400, n_test=200, widths=(10, 10), v=60, seed=0, shared_latent=0.5):
    """Two or three correlated spaces (a common latent with weight ``shared_latent``). Voxel kind
    ``j % (m + 2)``: k < m driven by space k only, m by all spaces, m + 1 pure noise."""
    gen = np.random.default_rng(seed)
    n = n_train + n_test
    common = gen.standard_normal((n, max(widths)))
    spaces = [shared_latent * common[:, :p] + gen.standard_normal((n, p)) for p in widths]
    m = len(widths)
    kind = np.arange(v) % (m + 2)
    Y = gen.standard_normal((n, v))
    for j in range(v):  # test data set-up only
        drivers = range(m) if kind[j] == m else ([kind[j]] if kind[j] < m else [])
        for i in drivers:
            Y[:, j] += 0.8 * spaces[i] @ (gen.standard_normal(widths[i]) / np.sqrt(widths[i]))
    train = [x[:n_train] for x in spaces]
    test = [x[n_train:] for x in spaces]
    return train, Y[:n_train], test, Y[n_train:], kind


@pytest.fixture(scope="module")
def two_space():
    train, y_train, test, y_test, kind = planted_partition()
    folds = make_folds(len(y_train), "chunked", 5, chunk_length=20, seed=0)
    result = variance_partitioning(train, y_train, test, y_test, folds, ALPHAS, names=("A", "B"),
                                   keep_fits=True, stacked=True)
    return result, train, y_train, test, y_test, kind


def test_two_space_partition_adds_up(two_space):
    result, *_ = two_space
    r = result.subset_r2
    np.testing.assert_allclose(result.unique("A"), r[("A", "B")] - r[("B",)], atol=1e-12)
    np.testing.assert_allclose(result.unique("B"), r[("A", "B")] - r[("A",)], atol=1e-12)
    np.testing.assert_allclose(result.shared("B", "A"), r[("A",)] + r[("B",)] - r[("A", "B")], atol=1e-12)
    total = result.unique("A") + result.unique("B") + result.shared("A", "B")
    np.testing.assert_allclose(total, result.joint_r2, atol=1e-12)
    assert set(result.maps()) == {"unique A", "unique B", "shared A+B"}


def test_subset_r2_matches_sklearn_and_split_r2_sums(two_space):
    result, _, _, test, y_test, _ = two_space
    for key, fit in result.fits.items():
        members = [("A", "B").index(name) for name in key]
        expected = r2_score(y_test, fit.predict([test[i] for i in members]).astype(np.float64), multioutput="raw_values")
        np.testing.assert_allclose(result.subset_r2[key], expected, atol=1e-9)
    # product-measure shares of the joint model sum to its r² against centred targets
    centred = y_test - y_test.mean(axis=0)
    joint = result.fits[("A", "B")].predict(test).astype(np.float64)
    np.testing.assert_allclose(result.split_r2.sum(axis=0), r2_score(centred, joint, multioutput="raw_values"),
                               atol=1e-9)


def test_unique_variance_recovers_the_driving_space(two_space):
    result, *_, kind = two_space
    a_only, b_only = kind == 0, kind == 1
    pair = a_only | b_only
    assert roc_auc_score(a_only[pair], result.unique("A")[pair]) >= 0.9
    assert roc_auc_score(b_only[pair], result.unique("B")[pair]) >= 0.9
    # over all voxels: space A drives kinds 0 and 2 (A only, both), B drives kinds 1 and 2
    assert roc_auc_score(np.isin(kind, (0, 2)), result.unique("A")) >= 0.9
    assert roc_auc_score(np.isin(kind, (1, 2)), result.unique("B")) >= 0.9


def test_negative_estimates_are_kept_and_counted(two_space):
    result, *_ = two_space
    for key, values in result.regions.items():
        assert result.n_negative[key] == int((values < 0).sum())
    assert sum(result.n_negative.values()) > 0  # noise voxels give negative estimates; none clipped
    assert min(values.min() for values in result.regions.values()) < 0


def test_three_spaces_regions_sum_to_joint_and_match_de_heer():
    train, y_train, test, y_test, _ = planted_partition(n_train=300, n_test=150, widths=(6, 5, 4), v=25, seed=1)
    folds = make_folds(300, "chunked", 4, chunk_length=15, seed=0)
    result = variance_partitioning(train, y_train, test, y_test, folds, ALPHAS, grid_steps=3)
    r = result.subset_r2
    assert len(r) == 7 and len(result.regions) == 7
    np.testing.assert_allclose(result.unique("A"), r[("A", "B", "C")] - r[("B", "C")], atol=1e-12)
    np.testing.assert_allclose(result.shared("A", "B"), r[("A", "C")] + r[("B", "C")] - r[("C",)] - r[("A", "B", "C")],
                               atol=1e-12)
    np.testing.assert_allclose(result.shared("A", "B", "C"),
                               r[("A",)] + r[("B",)] + r[("C",)] - r[("A", "B")] - r[("A", "C")] - r[("B", "C")]
                               + r[("A", "B", "C")], atol=1e-12)
    np.testing.assert_allclose(sum(result.regions.values()), result.joint_r2, atol=1e-12)


def test_partition_regions_on_made_up_numbers():
    gen = np.random.default_rng(0)
    names = ("x", "y", "z")
    subsets = [c for k in (1, 2, 3) for c in itertools.combinations(names, k)]
    r2 = {key: gen.uniform(-0.1, 0.6, 5) for key in subsets}
    regions = partition_regions(r2, names)
    np.testing.assert_allclose(sum(regions.values()), r2[names], atol=1e-12)
    np.testing.assert_allclose(regions[("y",)], r2[names] - r2[("x", "z")], atol=1e-12)
    with pytest.raises(InputError, match="lacks"):
        partition_regions({("x",): np.zeros(2)}, ("x", "y"))


def test_stacking_weights_match_scipy():
    gen = np.random.default_rng(2)
    for m in (2, 3):
        preds = gen.standard_normal((m, 40, 30))
        preds[1] += preds[0]  # correlated predictions
        y = gen.standard_normal((40, 30)) + preds[0] * np.linspace(-1, 2, 30)
        Q = np.einsum("inv,jnv->ijv", preds, preds)
        b = np.einsum("inv,nv->iv", preds, y)
        beta = simplex_least_squares(Q, b)
        assert beta.shape == (m, 30)
        np.testing.assert_allclose(beta.sum(axis=0), 1.0)
        assert (beta >= 0).all()
        for j in range(30):  # reference: SLSQP per voxel
            def objective(w, target=y[:, j], parts=preds[:, :, j]):
                return np.sum((target - w @ parts) ** 2)

            ref = minimize(objective, np.full(m, 1.0 / m), method="SLSQP", bounds=[(0, 1)] * m,
                           constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], options={"ftol": 1e-12})
            assert objective(beta[:, j]) <= ref.fun + 1e-6 * max(1.0, ref.fun)


def test_out_of_fold_products_match_a_loop():
    train, y_train, *_ = planted_partition(n_train=120, n_test=10, widths=(5, 4), v=6, seed=3)
    folds = make_folds(120, "chunked", 4, chunk_length=10, seed=0)
    best = [ALPHAS[np.arange(6) % len(ALPHAS)], ALPHAS[(np.arange(6) + 2) % len(ALPHAS)]]
    Q, b = out_of_fold_products(train, y_train, folds, best, ALPHAS, normalpha=True, block=4)
    expected_q, expected_b = np.zeros((2, 2, 6)), np.zeros((2, 6))
    for tr, te in folds:
        preds = np.zeros((2, len(te), 6))
        for i, x in enumerate(train):
            s_max = np.linalg.norm(x[tr], 2)
            for j in range(6):
                w = np.linalg.solve(x[tr].T @ x[tr] + (best[i][j] * s_max) ** 2 * np.eye(x.shape[1]), x[tr].T @ y_train[tr, j])
                preds[i, :, j] = x[te] @ w
        expected_q += np.einsum("inv,jnv->ijv", preds, preds)
        expected_b += np.einsum("inv,nv->iv", preds, y_train[te])
    np.testing.assert_allclose(Q, expected_q, rtol=1e-8)
    np.testing.assert_allclose(b, expected_b, rtol=1e-8, atol=1e-10)


def test_stacked_estimate(two_space):
    result, *_, kind = two_space
    stacked = result.stacked
    assert stacked.weights.shape == (2, 60)
    np.testing.assert_allclose(stacked.weights.sum(axis=0), 1.0)
    assert (stacked.weights >= 0).all()
    assert np.median(stacked.weights[0, kind == 0]) > 0.8 and np.median(stacked.weights[1, kind == 1]) > 0.8
    signal = kind < 3
    # the stacked prediction is at least about as good as the best single space on signal voxels
    assert np.median(stacked.r2[signal] - stacked.space_r2.max(axis=0)[signal]) > -0.02


def test_bad_inputs():
    train, y_train, test, y_test, _ = planted_partition(n_train=60, n_test=20, v=4)
    folds = make_folds(60, "chunked", 3, chunk_length=5)
    with pytest.raises(InputError, match="at least 2"):
        variance_partitioning(train[:1], y_train, test[:1], y_test, folds, ALPHAS)
    with pytest.raises(InputError, match="candidates"):
        variance_partitioning(train, y_train, test, y_test, folds, ALPHAS, candidates=[[0.5, 0.5]])
    with pytest.raises(InputError, match="names"):
        variance_partitioning(train, y_train, test, y_test, folds, ALPHAS, names=("A", "A"))
    with pytest.raises(InputError, match="Y_test"):
        variance_partitioning(train, y_train, test, y_test[:, :2], folds, ALPHAS)


def test_keep_joint_keeps_only_the_joint_model(two_space):
    full, train, y_train, test, y_test, _ = two_space
    folds = make_folds(len(y_train), "chunked", 5, chunk_length=20, seed=0)
    result = variance_partitioning(train, y_train, test, y_test, folds, ALPHAS, names=("A", "B"), keep_joint=True)
    assert list(result.fits) == [("A", "B")]
    np.testing.assert_array_equal(result.fits[("A", "B")].weights, full.fits[("A", "B")].weights)
    np.testing.assert_allclose(result.joint_r2, full.joint_r2, atol=1e-12)
