"""Banded ridge with nested CV against plain ridge, a naive per-candidate np.linalg.solve loop
written here, scikit-learn r2_score and himalaya's split r2."""
from __future__ import annotations

import numpy as np
import pytest
from encoding_core.common.errors import InputError
from encoding_core.models.folds import make_folds
from encoding_core.models.ridge import ridge_nested_cv
from sklearn.metrics import r2_score

from encoding_core.models.banded_ridge import (
    BandedRidgeFit,
    banded_ridge_nested_cv,
    dirichlet_candidates,
    simplex_grid,
    split_r2_score,
)

ALPHAS = np.logspace(-1, 3, 6)


def planted(n=240, widths=(12, 8), v=24, seed=0, dtype=np.float64):
    """Spaces (list of (n, p_i)) and Y (n, v): voxel j is driven by space j % (m + 1) (the last
    residue: by all spaces), plus unit noise."""
    gen = np.random.default_rng(seed)
    spaces = [gen.standard_normal((n, p)) for p in widths]
    Y = gen.standard_normal((n, v))
    for j in range(v):  # test data set-up only
        drivers = range(len(widths)) if j % (len(widths) + 1) == len(widths) else [j % (len(widths) + 1)]
        for i in drivers:
            w = gen.standard_normal(widths[i]) / np.sqrt(widths[i])
            Y[:, j] += (0.5 + j / v) * spaces[i] @ w
    return [x.astype(dtype) for x in spaces], Y.astype(dtype)


def naive_scores(spaces, Y, folds, alphas, candidates, normalpha):
    """(candidates, alphas, v) mean held-out correlations: scaled X, Gram and np.linalg.solve per
    candidate, fold and alpha; np.corrcoef per voxel."""
    X = np.hstack(spaces)
    col = np.repeat(np.arange(len(spaces)), [x.shape[1] for x in spaces])
    out = np.zeros((len(candidates), len(alphas), Y.shape[1]))
    for c, gamma in enumerate(candidates):
        Xs = X * np.sqrt(gamma)[col]
        for train, test in folds:
            G = Xs[train].T @ Xs[train]
            s_max = np.sqrt(np.linalg.eigvalsh(G).max())
            for k, alpha in enumerate(alphas):
                a = alpha * s_max if normalpha else alpha
                W = np.linalg.solve(G + a ** 2 * np.eye(X.shape[1]), Xs[train].T @ Y[train])
                P = Xs[test] @ W
                for j in range(Y.shape[1]):
                    if np.std(P[:, j]) > 0 and np.std(Y[test, j]) > 0:
                        out[c, k, j] += np.corrcoef(P[:, j], Y[test, j])[0, 1] / len(folds)
    return out


def naive_weights(spaces, Y, gammas, penalties):
    """Per voxel: W = D (D X'X D + a^2 I)^-1 D X'y, by np.linalg.solve."""
    X = np.hstack(spaces)
    col = np.repeat(np.arange(len(spaces)), [x.shape[1] for x in spaces])
    W = np.zeros((X.shape[1], Y.shape[1]))
    for j in range(Y.shape[1]):
        d = np.sqrt(gammas[:, j])[col]
        Xs = X * d
        W[:, j] = d * np.linalg.solve(Xs.T @ Xs + penalties[j] ** 2 * np.eye(X.shape[1]), Xs.T @ Y[:, j])
    return W


# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("widths", [(12, 8), (6, 5, 4)])
@pytest.mark.parametrize("normalpha", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_equal_scalings_equal_plain_ridge(widths, normalpha, dtype):
    spaces, Y = planted(widths=widths, dtype=dtype)
    m = len(widths)
    folds = make_folds(len(Y), "chunked", 5, chunk_length=12, seed=1)
    plain = ridge_nested_cv(np.hstack(spaces), Y, folds, ALPHAS, normalpha=normalpha)
    # gamma = 1/m scales X by 1/sqrt(m): without normalpha the same fit needs alpha / sqrt(m).
    grid = ALPHAS if normalpha else ALPHAS / np.sqrt(m)
    fit = banded_ridge_nested_cv(spaces, Y, folds, grid, candidates=np.full((1, m), 1.0 / m), normalpha=normalpha)
    tol = 1e-9 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(fit.cv_scores[0], plain.cv_scores, atol=tol)
    np.testing.assert_array_equal(np.searchsorted(grid, fit.best_alphas), np.searchsorted(ALPHAS, plain.best_alphas))
    np.testing.assert_allclose(fit.weights, plain.weights, rtol=tol * 10, atol=tol * 10 * np.abs(plain.weights).max())


@pytest.mark.parametrize("widths", [(12, 8), (6, 5, 4)])
def test_equal_scalings_equal_scikit_learn_ridge(widths):
    """One alpha and equal gammas 1/m: weights on the unscaled features are (X'X + m a^2 I)^-1 X'Y,
    i.e. scikit-learn's Ridge(alpha=m a^2, fit_intercept=False)."""
    sklearn_linear = pytest.importorskip("sklearn.linear_model")
    spaces, Y = planted(widths=widths, seed=4)
    m, a = len(widths), 3.0
    folds = make_folds(len(Y), "chunked", 4, chunk_length=12, seed=0)
    fit = banded_ridge_nested_cv(spaces, Y, folds, [a], candidates=np.full((1, m), 1.0 / m), normalpha=False)
    reference = sklearn_linear.Ridge(alpha=m * a ** 2, fit_intercept=False).fit(np.hstack(spaces), Y)
    np.testing.assert_allclose(fit.weights, reference.coef_.T, rtol=1e-6, atol=1e-9)
    test_spaces, _ = planted(n=50, widths=widths, seed=5)
    np.testing.assert_allclose(fit.predict(test_spaces), reference.predict(np.hstack(test_spaces)), rtol=1e-5, atol=1e-6)  # predict is float32


@pytest.mark.parametrize("normalpha", [True, False])
def test_kernel_form_equals_plain_ridge_when_n_below_p(normalpha):
    spaces, Y = planted(n=60, widths=(50, 30), v=10, seed=2)
    folds = make_folds(60, "contiguous", 4)
    plain = ridge_nested_cv(np.hstack(spaces), Y, folds, ALPHAS, normalpha=normalpha)
    grid = ALPHAS if normalpha else ALPHAS / np.sqrt(2)
    fit = banded_ridge_nested_cv(spaces, Y, folds, grid, candidates=[[0.5, 0.5]], normalpha=normalpha)
    np.testing.assert_allclose(fit.cv_scores[0], plain.cv_scores, atol=1e-9)
    np.testing.assert_allclose(fit.weights, plain.weights, rtol=1e-6, atol=1e-6 * np.abs(plain.weights).max())


@pytest.mark.parametrize("n, widths", [(150, (7, 5)), (40, (30, 25))])  # primal, then kernel form (n < p)
@pytest.mark.parametrize("normalpha", [True, False])
def test_against_naive_solve(n, widths, normalpha):
    spaces, Y = planted(n=n, widths=widths, v=12, seed=3)
    folds = make_folds(n, "chunked", 4, chunk_length=5, seed=0)
    candidates = simplex_grid(2, 4)  # includes the corners (0, 1) and (1, 0)
    fit = banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, candidates=candidates, normalpha=normalpha)
    naive = naive_scores(spaces, Y, folds, ALPHAS, candidates, normalpha)
    np.testing.assert_allclose(fit.cv_scores, naive, atol=1e-8)
    flat = naive.reshape(-1, Y.shape[1])
    top2 = np.sort(flat, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-6
    assert clear.sum() >= Y.shape[1] // 2
    best = np.argmax(flat, axis=0)
    np.testing.assert_array_equal(fit.best_candidates[clear], (best // len(ALPHAS))[clear])
    np.testing.assert_array_equal(fit.best_alphas[clear], ALPHAS[best % len(ALPHAS)][clear])
    np.testing.assert_allclose(fit.best_gammas, candidates[fit.best_candidates].T)
    # the refit, for the chosen hyperparameters of every voxel
    X = np.hstack(spaces)
    col = np.repeat([0, 1], widths)
    expected_pen = np.array([fit.best_alphas[j] * (np.linalg.norm(X * np.sqrt(fit.best_gammas[:, j])[col], 2)
                                                   if normalpha else 1.0) for j in range(Y.shape[1])])
    np.testing.assert_allclose(fit.penalties, expected_pen, rtol=1e-9)
    expected = naive_weights(spaces, Y, fit.best_gammas, fit.penalties)
    np.testing.assert_allclose(fit.weights, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_corner_candidate_is_ridge_on_one_space():
    spaces, Y = planted(seed=4)
    folds = make_folds(len(Y), "chunked", 5, chunk_length=12, seed=0)
    fit = banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, candidates=[[1.0, 0.0]])
    alone = ridge_nested_cv(spaces[0], Y, folds, ALPHAS)
    assert not fit.weights[12:].any()
    np.testing.assert_allclose(fit.weights[:12], alone.weights, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fit.cv_scores[0], alone.cv_scores, atol=1e-9)


def test_planted_spaces_get_the_scalings():
    spaces, Y = planted(n=400, widths=(10, 10), v=30, seed=5)
    folds = make_folds(400, "chunked", 5, chunk_length=20, seed=0)
    fit = banded_ridge_nested_cv(spaces, Y, folds, ALPHAS)
    kind = np.arange(30) % 3  # 0: space A only, 1: space B only, 2: both
    assert fit.candidates.shape == (11, 2)
    assert np.median(fit.best_gammas[0, kind == 0]) >= 0.8
    assert np.median(fit.best_gammas[1, kind == 1]) >= 0.8


def test_predict_split_sums_to_predict_and_split_r2():
    himalaya_scoring = pytest.importorskip("himalaya.scoring")
    spaces, Y = planted(n=300, v=20, seed=6)
    folds = make_folds(200, "chunked", 5, chunk_length=10, seed=0)
    fit = banded_ridge_nested_cv([x[:200] for x in spaces], Y[:200], folds, ALPHAS)
    test = [x[200:] for x in spaces]
    y_test = Y[200:] - Y[200:].mean(axis=0)
    parts = fit.predict_split(test)
    assert parts.shape == (2, 100, 20)
    np.testing.assert_allclose(parts.sum(axis=0), fit.predict(test), rtol=1e-5, atol=1e-6)
    shares = fit.split_r2(test, y_test)
    reference = himalaya_scoring.r2_score_split(y_test, parts.astype(np.float64))
    np.testing.assert_allclose(shares, np.asarray(reference), atol=1e-9)
    total = r2_score(y_test, parts.sum(axis=0).astype(np.float64), multioutput="raw_values")
    np.testing.assert_allclose(shares.sum(axis=0), total, atol=1e-9)


def test_voxel_block_size_does_not_change_results():
    spaces, Y = planted(n=100, widths=(6, 4), v=150, seed=7)
    folds = make_folds(100, "chunked", 5, chunk_length=5, seed=0)
    kwargs = dict(candidates=simplex_grid(2, 5), normalpha=True)
    big = banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, memory_budget_gb=1.0, **kwargs)   # one block, mapped
    tiny = banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, memory_budget_gb=1e-6, **kwargs)  # 1 voxel per block
    mid = banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, memory_budget_gb=3e-5, **kwargs)
    for other in (tiny, mid):
        np.testing.assert_array_equal(other.best_candidates, big.best_candidates)
        np.testing.assert_array_equal(other.best_alphas, big.best_alphas)
        np.testing.assert_allclose(other.cv_scores, big.cv_scores, atol=1e-12)
        np.testing.assert_allclose(other.weights, big.weights, rtol=1e-6, atol=1e-7)


def test_voxel_block_size_float32_same_choices():
    spaces, Y = planted(n=100, widths=(6, 4), v=150, seed=8, dtype=np.float32)
    folds = make_folds(100, "chunked", 5, chunk_length=5, seed=0)
    big = banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, memory_budget_gb=1.0)
    tiny = banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, memory_budget_gb=1e-6)
    np.testing.assert_allclose(tiny.cv_scores, big.cv_scores, atol=1e-6)
    top2 = np.sort(big.cv_scores.reshape(-1, 150), axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-5
    np.testing.assert_array_equal(tiny.best_candidates[clear], big.best_candidates[clear])
    np.testing.assert_allclose(tiny.weights[:, clear], big.weights[:, clear], rtol=1e-4, atol=1e-5)


def test_seeded_random_search_is_deterministic():
    a = dirichlet_candidates(9, 4, seed=3)
    np.testing.assert_array_equal(a, dirichlet_candidates(9, 4, seed=3))
    assert not np.array_equal(a, dirichlet_candidates(9, 4, seed=4))
    np.testing.assert_allclose(a[0], 0.25)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    assert (a >= 0).all()
    spaces, Y = planted(n=120, widths=(4, 3, 3, 2), v=10, seed=9)
    folds = make_folds(120, "chunked", 4, chunk_length=10, seed=0)
    first = banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, n_random=6, seed=11)  # auto: random for 4 spaces
    second = banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, n_random=6, seed=11)
    np.testing.assert_array_equal(first.candidates, dirichlet_candidates(6, 4, seed=11))
    np.testing.assert_array_equal(first.weights, second.weights)
    np.testing.assert_array_equal(first.cv_scores, second.cv_scores)


def test_simplex_grid():
    g2 = simplex_grid(2, 10)
    assert g2.shape == (11, 2) and {tuple(r) for r in g2} >= {(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)}
    g3 = simplex_grid(3, 5)
    assert g3.shape == (21, 3) and len({tuple(r) for r in g3}) == 21
    np.testing.assert_allclose(g3.sum(axis=1), 1.0)
    inner = simplex_grid(3, 5, include_boundary=False)
    assert inner.shape == (6, 3) and (inner > 0).all()
    assert simplex_grid(1, 4).tolist() == [[1.0]]


def test_deltas_are_himalaya_convention():
    spaces, Y = planted(n=120, v=6, seed=10)
    folds = make_folds(120, "chunked", 4, chunk_length=10, seed=0)
    fit = banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, candidates=simplex_grid(2, 4, include_boundary=False),
                                 normalpha=False)
    np.testing.assert_allclose(np.exp(fit.deltas), fit.best_gammas / fit.best_alphas ** 2)


def test_bad_inputs():
    spaces, Y = planted(n=60, v=4)
    folds = make_folds(60, "chunked", 3, chunk_length=5)
    with pytest.raises(InputError, match="list of"):
        banded_ridge_nested_cv(np.hstack(spaces), Y, folds, ALPHAS)
    with pytest.raises(InputError, match="different numbers of rows"):
        banded_ridge_nested_cv([spaces[0], spaces[1][:50]], Y, folds, ALPHAS)
    with pytest.raises(InputError, match="Y has"):
        banded_ridge_nested_cv(spaces, Y[:50], folds, ALPHAS)
    with pytest.raises(InputError, match="not on the simplex"):
        banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, candidates=[[0.5, 0.6]])
    with pytest.raises(InputError, match=r"shape \(n_candidates, 2\)"):
        banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, candidates=[[0.2, 0.3, 0.5]])
    with pytest.raises(InputError, match="search"):
        banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, search="bayes")
    fit = banded_ridge_nested_cv(spaces, Y, folds, ALPHAS, candidates=[[0.5, 0.5]])
    assert isinstance(fit, BandedRidgeFit)
    with pytest.raises(InputError, match="columns"):
        fit.predict([spaces[0], spaces[0]])
    with pytest.raises(InputError, match="2 feature spaces"):
        fit.predict([spaces[0]])
    with pytest.raises(InputError, match="split_predictions"):
        split_r2_score(Y, np.zeros((2, 5, 4)))


def test_nan_targets_are_zeros_and_progress_is_reported():
    spaces, Y = planted(n=120, v=8, seed=12)
    folds = make_folds(120, "chunked", 4, chunk_length=10, seed=0)
    with_nan = Y.copy()
    with_nan[[3, 50, 51], 2] = np.nan
    zeros = Y.copy()
    zeros[[3, 50, 51], 2] = 0.0
    calls = []
    fit = banded_ridge_nested_cv(spaces, with_nan, folds, ALPHAS, progress=lambda *args: calls.append(args))
    clean = banded_ridge_nested_cv(spaces, zeros, folds, ALPHAS)
    np.testing.assert_array_equal(fit.weights, clean.weights)
    np.testing.assert_array_equal(fit.cv_scores, clean.cv_scores)
    assert calls and calls[-1][1] == calls[-1][2]  # the last call says done == total


def test_cancel_between_blocks():
    from encoding_core.common.errors import JobCancelled

    class Flag:
        def is_set(self):
            return True

    spaces, Y = planted(n=60, v=4)
    with pytest.raises(JobCancelled):
        banded_ridge_nested_cv(spaces, Y, make_folds(60, "chunked", 3, chunk_length=5), ALPHAS, cancel=Flag())
