"""Ridge with nested CV against scikit-learn and a naive per-fold SVD implementation written here."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from encoding_core.common.errors import InputError, JobCancelled
from encoding_core.models.folds import make_folds
from encoding_core.models.ridge import RidgeFit, ridge_fit, ridge_nested_cv
from encoding_core.stats.scores import pearson_r

ALPHAS = np.logspace(-1, 8, 10)


def naive_cv_scores(X, Y, folds, alphas, normalpha=True):
    """Reference algorithm, spelled out: numpy SVD per fold, loop over alphas and voxels."""
    scores = np.zeros((len(alphas), Y.shape[1]))
    for train, test in folds:
        U, S, Vt = np.linalg.svd(X[train], full_matrices=False)
        for i, alpha in enumerate(alphas):
            a = alpha * S[0] if normalpha else alpha
            W = Vt.T @ np.diag(S / (S ** 2 + a ** 2)) @ U.T @ Y[train]
            P = X[test] @ W
            for j in range(Y.shape[1]):
                if np.std(P[:, j]) == 0 or np.std(Y[test, j]) == 0:
                    r = 0.0
                else:
                    r = np.corrcoef(P[:, j], Y[test, j])[0, 1]
                scores[i, j] += r / len(folds)
    return scores


def sklearn_weights(X, Y, alphas_per_voxel, scale):
    return np.column_stack([
        Ridge(alpha=(a * scale) ** 2, fit_intercept=False).fit(X, Y[:, j]).coef_
        for j, a in enumerate(alphas_per_voxel)
    ])


def planted(n=240, p=20, v=30, n_signal=12, seed=0, dtype=np.float64):
    gen = np.random.default_rng(seed)
    X = gen.standard_normal((n, p))
    W = gen.standard_normal((p, v)) / np.sqrt(p)
    W[:, n_signal:] = 0
    Y = X @ W * np.linspace(0.3, 2.0, v) + gen.standard_normal((n, v))
    return X.astype(dtype), Y.astype(dtype)


def check_alpha_choice(fit, naive, alphas, min_clear=0.5):
    """Best alpha equals the naive argmax wherever the naive curve has a clear winner."""
    np.testing.assert_allclose(fit.cv_scores, naive, atol=1e-5)
    top2 = np.sort(naive, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-5
    assert clear.sum() >= int(min_clear * naive.shape[1])  # the comparison below is not vacuous
    np.testing.assert_array_equal(fit.best_alphas[clear], alphas[np.argmax(naive, axis=0)][clear])
    chosen = naive[np.searchsorted(alphas, fit.best_alphas), np.arange(naive.shape[1])]
    np.testing.assert_allclose(chosen, naive.max(axis=0), atol=1e-5)  # ties: a best-scoring alpha


@pytest.mark.parametrize("normalpha", [True, False])
def test_weights_equal_sklearn_and_alpha_choice_equals_naive(normalpha):
    X, Y = planted()
    alphas = ALPHAS if normalpha else np.logspace(0, 4, 6)
    folds = make_folds(len(X), "chunked", 5, chunk_length=20, seed=1)
    fit = ridge_nested_cv(X, Y, folds, alphas, normalpha=normalpha)
    assert fit.weights.shape == (X.shape[1], Y.shape[1]) and fit.weights.dtype == np.float32
    check_alpha_choice(fit, naive_cv_scores(X, Y, folds, alphas, normalpha), alphas)
    scale = np.linalg.svd(X, compute_uv=False)[0] if normalpha else 1.0
    expected = sklearn_weights(X, Y, fit.best_alphas, scale)
    np.testing.assert_allclose(fit.weights, expected, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(fit.predict(X), X @ expected, atol=1e-4)


def test_more_features_than_trs_and_trimmed_folds():
    X, Y = planted(n=80, p=120, v=10, n_signal=5, seed=2)
    folds = make_folds(80, "trimmed", 4, trim_size=3)
    fit = ridge_nested_cv(X, Y, folds, ALPHAS)
    check_alpha_choice(fit, naive_cv_scores(X, Y, folds, ALPHAS), ALPHAS, min_clear=0.3)
    scale = np.linalg.svd(X, compute_uv=False)[0]
    expected = sklearn_weights(X, Y, fit.best_alphas, scale)
    np.testing.assert_allclose(fit.weights, expected, atol=1e-5 * np.abs(expected).max())


def test_kernel_form_float32_blocks_and_missing_values():
    """n < p runs in kernel form: float32 data, one voxel per block, a NaN voxel, single alpha."""
    X, Y = planted(n=60, p=150, v=12, n_signal=6, seed=5, dtype=np.float32)
    Y[7, 3] = np.nan
    folds = make_folds(60, "contiguous", 3)
    steps = []
    fit = ridge_nested_cv(X, Y, folds, ALPHAS, memory_budget_gb=1e-6,
                          progress=lambda stage, done, total, message="": steps.append((done, total)))
    assert steps[-1][0] == steps[-1][1] == 12 * (3 + 1)
    clean = np.nan_to_num(Y).astype(np.float64)
    naive = naive_cv_scores(X.astype(np.float64), clean, folds, ALPHAS)
    np.testing.assert_allclose(fit.cv_scores, naive, atol=2e-5)
    scale = np.linalg.svd(X.astype(np.float64), compute_uv=False)[0]
    expected = sklearn_weights(X.astype(np.float64), clean, fit.best_alphas, scale)
    np.testing.assert_allclose(fit.weights, expected, atol=1e-4 * np.abs(expected).max())
    single = ridge_nested_cv(X, Y, folds, ALPHAS, single_alpha=True)
    assert len(set(single.best_alphas)) == 1
    assert single.best_alphas[0] == ALPHAS[np.argmax(naive.mean(axis=1))]


def test_kernel_form_with_many_voxels_and_predictions_without_weights():
    """n < p with alphas x held-out rows < voxels: the per-fold mapping path of the kernel form.
    Predictions come from the dual coefficients (no weights formed) and equal X @ sklearn's."""
    X, Y = planted(n=60, p=150, v=400, n_signal=200, seed=6, dtype=np.float32)
    folds = make_folds(60, "contiguous", 3)
    fit = ridge_nested_cv(X, Y, folds, ALPHAS)
    naive = naive_cv_scores(X.astype(np.float64), Y.astype(np.float64), folds, ALPHAS)
    np.testing.assert_allclose(fit.cv_scores, naive, atol=2e-5)
    scale = np.linalg.svd(X.astype(np.float64), compute_uv=False)[0]
    expected = sklearn_weights(X.astype(np.float64), Y.astype(np.float64), fit.best_alphas, scale)
    new_x = np.random.default_rng(1).standard_normal((7, 150)).astype(np.float32)
    predicted = fit.predict(new_x)
    assert predicted.shape == (7, 400) and predicted.dtype == np.float32
    np.testing.assert_allclose(predicted, new_x @ expected, atol=1e-4 * np.abs(new_x @ expected).max())
    np.testing.assert_allclose(fit.weights, expected, atol=1e-4 * np.abs(expected).max())


def test_float32_blocks_and_budget_do_not_change_the_result():
    X, Y = planted(n=200, p=15, v=40, seed=3, dtype=np.float32)
    folds = make_folds(200, "contiguous", 4)
    big = ridge_nested_cv(X, Y, folds, ALPHAS)
    tiny = ridge_nested_cv(X, Y, folds, ALPHAS, memory_budget_gb=1e-6)  # one voxel per block
    np.testing.assert_allclose(big.cv_scores, tiny.cv_scores, atol=1e-6)
    # float32 rounding may flip near-ties (score gap < 1e-5); elsewhere the choice is identical
    top2 = np.sort(big.cv_scores, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-5
    np.testing.assert_array_equal(big.best_alphas[clear], tiny.best_alphas[clear])
    np.testing.assert_allclose(big.weights[:, clear], tiny.weights[:, clear], atol=1e-6)
    naive = naive_cv_scores(X.astype(np.float64), Y.astype(np.float64), folds, ALPHAS)
    np.testing.assert_allclose(big.cv_scores, naive, atol=2e-5)


def test_single_alpha_is_best_mean_over_voxels():
    X, Y = planted(seed=4)
    folds = make_folds(len(X), "chunked", 5, chunk_length=20, seed=0)
    fit = ridge_nested_cv(X, Y, folds, ALPHAS, single_alpha=True)
    naive = naive_cv_scores(X, Y, folds, ALPHAS)
    assert np.all(fit.best_alphas == ALPHAS[np.argmax(naive.mean(axis=1))])


def test_planted_signal_recovered_on_held_out_story():
    X, Y = planted(n=400, p=25, v=40, n_signal=20, seed=5)
    train, test = slice(0, 320), slice(320, 400)
    folds = make_folds(320, "chunked", 5, chunk_length=16, seed=0)
    fit = ridge_nested_cv(X[train], Y[train], folds, ALPHAS)
    r = pearson_r(Y[test], fit.predict(X[test]))
    assert np.median(r[10:20]) > 0.6  # strong planted signal
    assert abs(np.median(r[20:])) < 0.15  # null voxels


def test_ridge_fit_reference_convention():
    X, Y = planted(n=60, p=8, v=3, seed=6)
    S = np.linalg.svd(X, compute_uv=False)
    W = ridge_fit(X, Y, 0.5, normalpha=True)
    expected = sklearn_weights(X, Y, [0.5] * 3, S[0])
    np.testing.assert_allclose(W, expected, rtol=1e-8, atol=1e-10)
    per_voxel = ridge_fit(X, Y, np.array([1.0, 10.0, 100.0]))
    np.testing.assert_allclose(per_voxel, sklearn_weights(X, Y, [1.0, 10.0, 100.0], 1.0), rtol=1e-8, atol=1e-10)


def test_progress_and_cancel():
    X, Y = planted(n=100, p=5, v=6)
    folds = make_folds(100, "contiguous", 5)
    calls = []
    ridge_nested_cv(X, Y, folds, ALPHAS, progress=lambda stage, done, total, message="": calls.append((stage, done, total)))
    assert calls[-1][1] == calls[-1][2] and {c[0] for c in calls} == {"fit"}
    flag = threading.Event()
    flag.set()
    with pytest.raises(JobCancelled):
        ridge_nested_cv(X, Y, folds, ALPHAS, cancel=flag)


def test_bad_inputs_raise_clear_errors():
    X, Y = planted(n=100, p=5, v=6)
    folds = make_folds(100, "contiguous", 5)
    with pytest.raises(InputError, match="X has 100 rows .* Y has 99"):
        ridge_nested_cv(X, Y[:99], folds, ALPHAS)
    with pytest.raises(InputError, match="alphas must be"):
        ridge_nested_cv(X, Y, folds, [0.0, 1.0])
    with pytest.raises(InputError, match="outside 0..99"):
        ridge_nested_cv(X, Y, [(np.arange(50), np.arange(50, 101))], ALPHAS)
    with pytest.raises(InputError, match="both training and testing"):
        ridge_nested_cv(X, Y, [(np.arange(60), np.arange(50, 100))], ALPHAS)
    with pytest.raises(InputError, match="no CUDA"):
        if not __import__("torch").cuda.is_available():
            ridge_nested_cv(X, Y, folds, ALPHAS, device="cuda")
        else:
            raise InputError("no CUDA (skipped: a GPU is present)")
    fit = ridge_nested_cv(X, Y, folds, ALPHAS)
    with pytest.raises(InputError, match="fitted on 5 features"):
        fit.predict(X[:, :4])
    assert isinstance(fit, RidgeFit)
