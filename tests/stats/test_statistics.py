"""Scores, FDR and noise ceiling against scipy, scikit-learn and loops written here.

The significance tests themselves are in test_significance.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import r2_score as sk_r2

from encoding_core.common.errors import InputError
from encoding_core.stats.significance import fdr_bh
from encoding_core.stats.noise_ceiling import noise_ceiling, normalize_by_ceiling, normalized_summary
from encoding_core.stats.scores import pearson_r, r2_score


def test_pearson_r_equals_scipy():
    gen = np.random.default_rng(0)
    Y = gen.standard_normal((50, 20))
    P = 0.3 * Y + gen.standard_normal((50, 20))
    P[:, 0] = Y[:, 0]  # r = 1 exactly
    r = pearson_r(Y, P)
    ref = [sps.pearsonr(Y[:, j], P[:, j]) for j in range(20)]
    np.testing.assert_allclose(r, [x[0] for x in ref], atol=1e-12)


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


def test_noise_ceiling_equals_a_loop_per_voxel_across_blocks(monkeypatch):
    """Hsu et al. per voxel by a plain loop; small blocks, a NaN voxel and a constant voxel."""
    import importlib

    nc = importlib.import_module("encoding_core.stats.noise_ceiling")  # the package re-exports the function
    gen = np.random.default_rng(8)
    data = gen.standard_normal((1, 30, 9)) + 0.8 * gen.standard_normal((4, 30, 9))
    data[2, 5, 3] = np.nan
    data[:, :, 6] = 2.5
    monkeypatch.setattr(nc, "BLOCK_ELEMENTS", 4 * 30 * 2)  # 2 voxels per block
    ev, ceiling = noise_ceiling(data)
    for j in range(9):
        if j in (3, 6):
            assert ev[j] == 0.0 and ceiling[j] == 0.0
            continue
        values = data[:, :, j]
        total = values.var()
        residual = (values - values.mean(axis=0)).var()
        raw = 1 - residual / total
        expected = min(max(raw - (1 - raw) / 3, 0.0), 1.0)
        assert ev[j] == pytest.approx(expected, abs=1e-12)
        assert ceiling[j] == pytest.approx(math.sqrt(expected), abs=1e-12)


def test_normalized_r_is_nan_without_a_usable_ceiling_and_summarised_over_the_rest():
    r = np.array([0.2, 0.3, 0.05, np.nan, 0.4, 0.1])
    ceiling = np.array([0.4, 0.05, 0.5, 0.6, np.nan, 0.0])
    got = normalize_by_ceiling(r, ceiling, min_ceiling=0.1)
    np.testing.assert_allclose(got, [0.5, np.nan, 0.1, np.nan, np.nan, np.nan])  # never 0 for "no ceiling"
    summary = normalized_summary(got)
    assert summary["n_voxels"] == 2 and summary["n_total"] == 6
    assert summary["median"] == pytest.approx(np.median([0.5, 0.1]))  # not dragged to 0 by the 4 NaN
    assert np.isnan(normalized_summary(np.full(3, np.nan))["median"])


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
