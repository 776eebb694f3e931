"""Statistics against scipy, loop implementations written here, and simulations with known truth."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import r2_score as sk_r2

from encoding_core.common.errors import InputError
from encoding_core.stats.significance import block_permutation_pvalues, fdr_bh, pearson_pvalues
from encoding_core.stats.noise_ceiling import noise_ceiling, normalize_by_ceiling
from encoding_core.stats.scores import pearson_r, r2_score


def ar1(gen, n, v, phi=0.7):
    noise = gen.standard_normal((n, v))
    out = np.empty_like(noise)
    out[0] = noise[0]
    for t in range(1, n):  # AR(1) simulation in the test (a reference, not library code)
        out[t] = phi * out[t - 1] + noise[t]
    return out


def test_pearson_r_and_pvalues_equal_scipy():
    gen = np.random.default_rng(0)
    Y = gen.standard_normal((50, 20))
    P = 0.3 * Y + gen.standard_normal((50, 20))
    P[:, 0] = Y[:, 0]  # r = 1 exactly
    r = pearson_r(Y, P)
    ref = [sps.pearsonr(Y[:, j], P[:, j]) for j in range(20)]
    np.testing.assert_allclose(r, [x[0] for x in ref], atol=1e-12)
    np.testing.assert_allclose(pearson_pvalues(r, 50), [x[1] for x in ref], rtol=1e-8, atol=1e-300)


def test_r2_equals_sklearn():
    gen = np.random.default_rng(1)
    Y = gen.standard_normal((40, 6))
    P = Y + 0.5 * gen.standard_normal((40, 6))
    np.testing.assert_allclose(r2_score(Y, P), sk_r2(Y, P, multioutput="raw_values"), atol=1e-12)


def test_column_blocks_and_float32_input_give_the_same_statistics(monkeypatch):
    """Blocks of 7 columns (a partial last block), float32 input, one constant column."""
    from encoding_core.stats import scores as stats

    gen = np.random.default_rng(11)
    Y = gen.standard_normal((30, 25)).astype(np.float32)
    P = (0.5 * Y + gen.standard_normal((30, 25))).astype(np.float32)
    Y[:, 9] = 2.0
    monkeypatch.setattr(stats, "COLUMN_BLOCK_ELEMENTS", 30 * 7)
    r = pearson_r(Y, P)
    expected = [0.0 if j == 9 else sps.pearsonr(Y[:, j].astype(np.float64), P[:, j].astype(np.float64))[0]
                for j in range(25)]
    np.testing.assert_allclose(r, expected, atol=1e-12)
    Y64, P64 = Y.astype(np.float64), P.astype(np.float64)
    keep = np.arange(25) != 9
    np.testing.assert_allclose(r2_score(Y, P)[keep], sk_r2(Y64[:, keep], P64[:, keep], multioutput="raw_values"),
                               atol=1e-12)
    assert r2_score(Y, P)[9] == 0.0


def test_block_permutation_matches_exhaustive_enumeration():
    """With 4 blocks there are 24 orders; many random draws approach the exact p-value."""
    gen = np.random.default_rng(2)
    n, L = 20, 5
    Y = gen.standard_normal((n, 3))
    P = 0.5 * Y + gen.standard_normal((n, 3))
    observed = pearson_r(Y, P)
    exact = []
    for j in range(3):
        null = [np.corrcoef(Y[:, j], np.concatenate([P[b * L:(b + 1) * L, j] for b in order]))[0, 1]
                for order in itertools.permutations(range(4))]
        exact.append(np.mean(np.array(null) >= observed[j] - 1e-12))
    got = block_permutation_pvalues(Y, P, block_length=L, n_permutations=4000, seed=0)
    np.testing.assert_allclose(got, exact, atol=0.03)
    assert got.min() >= 1 / 4001


def test_block_permutation_calibrated_on_autocorrelated_null():
    gen = np.random.default_rng(3)
    Y = ar1(gen, 300, 300)
    P = ar1(gen, 300, 300)
    p = block_permutation_pvalues(Y, P, block_length=20, n_permutations=400, seed=1)
    assert 0.02 <= np.mean(p < 0.05) <= 0.09
    # the parametric test ignores autocorrelation and is anti-conservative on the same data
    assert np.mean(pearson_pvalues(pearson_r(Y, P), 300) < 0.05) > np.mean(p < 0.05)


def test_block_permutation_detects_signal():
    gen = np.random.default_rng(4)
    Y = ar1(gen, 200, 10)
    P = Y + 1.5 * ar1(gen, 200, 10)
    assert np.all(block_permutation_pvalues(Y, P, block_length=10, n_permutations=200, seed=0) < 0.05)


def bh_loop(p, q):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p[i] * m / rank)
        adjusted[i] = min(running, 1.0)
    k = max([rank for rank in range(1, m + 1) if p[order[rank - 1]] <= rank * q / m], default=0)
    significant = [False] * m
    for rank in range(1, k + 1):
        significant[order[rank - 1]] = True
    return np.array(significant), np.array(adjusted)


def test_fdr_equals_loop():
    gen = np.random.default_rng(5)
    p = np.concatenate([gen.uniform(0, 0.01, 30), gen.uniform(0, 1, 200)])
    p[3] = p[4]  # a tie
    mask, corrected = fdr_bh(p, 0.05)
    ref_mask, ref_corrected = bh_loop(list(p), 0.05)
    np.testing.assert_allclose(corrected, ref_corrected, atol=1e-15)
    np.testing.assert_array_equal(mask, ref_mask)
    assert mask.sum() >= 10  # the comparison covers real discoveries
    with pytest.raises(InputError, match="between 0 and 1"):
        fdr_bh(p, 1.5)


def test_noise_ceiling_extremes_and_known_snr():
    gen = np.random.default_rng(6)
    signal = gen.standard_normal((1, 400, 30))
    noiseless = np.repeat(signal, 5, axis=0)
    ev, ceiling = noise_ceiling(noiseless)
    np.testing.assert_allclose(ev, 1.0, atol=1e-9)
    ev, _ = noise_ceiling(gen.standard_normal((5, 400, 30)))
    assert np.abs(ev).max() < 0.05
    noisy = signal + gen.standard_normal((10, 400, 30))  # signal variance 1, noise variance 1
    ev, ceiling = noise_ceiling(noisy)
    assert abs(np.median(ev) - 0.5) < 0.05
    # the ceiling is the correlation of the true signal with one repeat
    actual = np.mean([pearson_r(noisy[k], signal[0]) for k in range(10)], axis=0)
    assert abs(np.median(ceiling) - np.median(actual)) < 0.03
    _, mean_ceiling = noise_ceiling(noisy, averaged_target=True)
    actual_mean = pearson_r(noisy.mean(axis=0), signal[0])
    assert abs(np.median(mean_ceiling) - np.median(actual_mean)) < 0.03


def test_normalize_by_ceiling():
    r = np.array([0.2, 0.3, 0.05, np.nan])
    ceiling = np.array([0.4, 0.05, 0.5, 0.6])
    np.testing.assert_allclose(normalize_by_ceiling(r, ceiling, min_ceiling=0.1), [0.5, 0.0, 0.1, 0.0])


def test_repeat_mean_correlation_against_scipy_and_independent_of_scaling():
    from encoding_core.stats.noise_ceiling import repeat_mean_correlation

    gen = np.random.default_rng(5)
    repeats = gen.standard_normal((4, 60, 12)) + gen.standard_normal((60, 12))
    target = gen.standard_normal((60, 12)) + repeats.mean(axis=0)
    expected = np.median([sps.pearsonr(target[:, v], repeats.mean(axis=0)[:, v])[0] for v in range(12)])
    assert repeat_mean_correlation(target, repeats) == pytest.approx(expected, abs=1e-12)
    rescaled = 3.0 * target - 7.0  # z-scoring, or any other positive scaling and shift, changes nothing
    assert repeat_mean_correlation(rescaled, repeats) == pytest.approx(expected, abs=1e-12)
    target[:, 3] = 1.0  # a constant voxel is left out
    expected = np.median([sps.pearsonr(target[:, v], repeats.mean(axis=0)[:, v])[0] for v in range(12) if v != 3])
    assert repeat_mean_correlation(target, repeats) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(repeat_mean_correlation(np.ones((60, 12)), repeats))
    with pytest.raises(InputError, match="same"):
        repeat_mean_correlation(target[:50], repeats)
