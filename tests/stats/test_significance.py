"""Significance tests against scipy, loops written here, and null simulations with known truth."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.signal import lfilter

from encoding_core.stats import significance as sig
from encoding_core.common.errors import InputError


# -- simulation helpers (references, not library code) -----------------------------------
def ar1(gen: np.random.Generator, n: int, v: int, phi: float) -> np.ndarray:
    """Stationary unit-variance AR(1) columns."""
    e = gen.standard_normal((n, v))
    e[0] /= math.sqrt(1 - phi * phi)
    return lfilter([math.sqrt(1 - phi * phi)], [1.0, -phi], e, axis=0)


def fir_prediction(gen: np.random.Generator, n: int, v: int, phi: float) -> np.ndarray:
    """A ridge-like smooth prediction: FIR delays 1-4 summed over an AR(1)(phi) feature."""
    x = ar1(gen, n + 4, v, phi)
    return sum(x[4 - d: 4 - d + n] for d in (1, 2, 3, 4))


def acf_loop(x: np.ndarray, max_lag: int) -> list[float]:
    """Sample autocorrelation of one series by explicit sums (the biased estimator)."""
    n = len(x)
    mean = sum(x) / n
    c0 = sum((x[t] - mean) ** 2 for t in range(n))
    return [sum((x[t] - mean) * (x[t + k] - mean) for t in range(n - k)) / c0 for k in range(max_lag + 1)]


def block_null_loop(y: np.ndarray, p: np.ndarray, segments: list, length: int) -> list[float]:
    """Null r of every order of the whole blocks (within segments, leftovers fixed), by a loop."""
    starts = [s for a, b in segments for s in range(a, b - length + 1, length)]
    out = []
    for order in itertools.permutations(range(len(starts))):
        permuted = p.copy()
        for target, source in zip(starts, order, strict=True):
            permuted[target:target + length] = p[starts[source]:starts[source] + length]
        out.append(np.corrcoef(y, permuted)[0, 1])
    return out


# -- parametric tests ------------------------------------------------------------------------
def test_parametric_iid_equals_scipy_pearsonr_both_sides():
    gen = np.random.default_rng(0)
    Y = gen.standard_normal((40, 12))
    P = 0.3 * Y + gen.standard_normal((40, 12))
    P[:, 1] = -Y[:, 1] + 0.5 * gen.standard_normal(40)  # a clearly negative r
    for alternative, scipy_alt in (("greater", "greater"), ("two-sided", "two-sided")):
        res = sig.significance(Y, P, test="parametric_iid", alternative=alternative)
        ref = [sps.pearsonr(Y[:, j], P[:, j], alternative=scipy_alt) for j in range(12)]
        np.testing.assert_allclose(res.r, [x.statistic for x in ref], atol=1e-12)
        np.testing.assert_allclose(res.p_values, [x.pvalue for x in ref], rtol=1e-8, atol=1e-300)
        # the textbook p-values recorded beside another test's come from the same r, no second pass
        other = sig.significance(Y, P, test="effective_dof", alternative=alternative)
        np.testing.assert_allclose(other.textbook_p_values(), [x.pvalue for x in ref], rtol=1e-8, atol=1e-300)


def test_effective_dof_pvalues_equal_scipy_t_with_the_same_neff():
    gen = np.random.default_rng(1)
    n, v = 120, 30
    Y = ar1(gen, n, v, 0.7)
    P = 0.25 * Y + ar1(gen, n, v, 0.6)
    P[:, :5] = -P[:, :5]  # some negative correlations
    n_eff = sig.effective_sample_size(Y, P)
    r = np.array([sps.pearsonr(Y[:, j], P[:, j]).statistic for j in range(v)])
    dof = n_eff - 2
    t = r * np.sqrt(dof / (1 - r ** 2))
    greater = sig.significance(Y, P)
    two_sided = sig.significance(Y, P, alternative="two-sided")
    np.testing.assert_allclose(greater.r, r, atol=1e-12)
    np.testing.assert_allclose(greater.p_values, sps.t.sf(t, dof), rtol=1e-8)
    np.testing.assert_allclose(two_sided.p_values, 2 * sps.t.sf(np.abs(t), dof), rtol=1e-8)
    assert np.all(greater.p_values[r < 0] > 0.5)  # negative r is never significant one-sided


def test_effective_sample_size_equals_a_loop_over_lags():
    """Finite-sample Bartlett: Var(r) = sum_g sum_{|k| <= M_g} S_Y(k) S_P(k) / (n_g - |k|) / n^2."""
    gen = np.random.default_rng(2)
    sizes = [40, 33]
    n = sum(sizes)
    Y = ar1(gen, n, 4, 0.8)
    P = fir_prediction(gen, n, 4, 0.5)
    groups = np.repeat([0, 1], sizes)
    got = sig.effective_sample_size(Y, P, groups=groups)
    got_single = sig.effective_sample_size(Y[:40], P[:40])
    got_lag1 = sig.effective_sample_size(Y[:40], P[:40], method="lag1")
    for j in range(4):
        y = (Y[:, j] - Y[:, j].mean()) / Y[:, j].std()
        p = (P[:, j] - P[:, j].mean()) / P[:, j].std()
        total, start = 0.0, 0
        for size in sizes:
            ys = y[start:start + size] - y[start:start + size].mean()
            ps = p[start:start + size] - p[start:start + size].mean()
            for k in range(-int(0.75 * (size - 1)), int(0.75 * (size - 1)) + 1):
                s_y = sum(ys[t] * ys[t + abs(k)] for t in range(size - abs(k)))
                s_p = sum(ps[t] * ps[t + abs(k)] for t in range(size - abs(k)))
                total += s_y * s_p / (size - abs(k))
            start += size
        variance = max(total / n ** 2, 1 / (n - 1))
        assert got[j] == pytest.approx(min(max(1 + 1 / variance, 3.0), n), rel=1e-9)
        ry, rp = acf_loop(list(Y[:40, j]), 1), acf_loop(list(P[:40, j]), 1)
        a = min(max(ry[1] * rp[1], 0.0), 0.999)
        assert got_lag1[j] == pytest.approx(40 * (1 - a) / (1 + a), rel=1e-9)
    assert np.all(got_single <= 40) and np.all(got <= n) and np.all(got >= 3)


def test_lagged_sums_of_long_and_short_stories_equal_a_loop():
    """Stories above DIRECT_LAG_MAX_TRS go through the FFT, shorter ones through direct products."""
    gen = np.random.default_rng(7)
    sizes = [sig.DIRECT_LAG_MAX_TRS + 22, 30]
    X = ar1(gen, sum(sizes), 3, 0.7)
    segments = [(0, sizes[0]), (sizes[0], sum(sizes))]
    got = sig._lagged_sums(X, segments, 40)
    for j in range(3):
        expected = np.zeros(41)
        for a, b in segments:
            c = X[a:b, j] - X[a:b, j].mean()
            for k in range(min(40, b - a - 1) + 1):
                expected[k] += float((c[:len(c) - k] * c[k:]).sum())
        np.testing.assert_allclose(got[:, j], expected, rtol=1e-10, atol=1e-9)


def test_autocorrelation_within_stories_equals_a_loop():
    gen = np.random.default_rng(3)
    X = ar1(gen, 50, 3, 0.6) + np.repeat([[0.0], [5.0]], 25, axis=0)  # two stories with different means
    groups = np.repeat(["a", "b"], 25)
    got = sig.autocorrelation(X, 6, groups=groups)
    for j in range(3):
        parts = [X[:25, j], X[25:, j]]
        centred = [part - part.mean() for part in parts]
        c0 = sum(float((c * c).sum()) for c in centred)
        expected = [sum(float((c[:len(c) - k] * c[k:]).sum()) for c in centred) / c0 for k in range(7)]
        np.testing.assert_allclose(got[:, j], expected, atol=1e-12)
    np.testing.assert_allclose(sig.autocorrelation(X[:25], 6)[:, 0], acf_loop(list(X[:25, 0]), 6), atol=1e-12)


# -- calibration on null autocorrelated data ---------------------------------------------------
@pytest.mark.parametrize("stories", [[37], [46], [37, 34, 37, 34, 40, 46], [251]])
@pytest.mark.parametrize("phi", [0.5, 0.9])
@pytest.mark.parametrize("model", ["ar1", "fir"])
def test_default_test_is_calibrated_on_null_autocorrelated_data(stories, phi, model):
    """effective_dof: 4-6.5 % false positives at nominal 5 % (20000 null voxels, MC s.e. 0.15 %)."""
    gen = np.random.default_rng([len(stories), sum(stories), int(phi * 10), model == "fir"])
    v = 20000
    ys, ps = [], []
    for size in stories:
        y = ar1(gen, size, v, phi)
        p = ar1(gen, size, v, phi) if model == "ar1" else fir_prediction(gen, size, v, phi)
        if len(stories) > 1:  # pooled CV: Y z-scored per story, P centred per story with its own scale
            y = (y - y.mean(axis=0)) / y.std(axis=0)
            p = (p - p.mean(axis=0)) * gen.uniform(0.5, 2.0, v)
        ys.append(y)
        ps.append(p)
    groups = np.repeat(np.arange(len(stories)), stories) if len(stories) > 1 else None
    res = sig.significance(np.concatenate(ys), np.concatenate(ps), groups=groups)
    rate = np.mean(res.p_values <= 0.05)
    # Known and documented: on one story shorter than ~50 TRs the test is conservative (3-4.5 %),
    # never liberal; elsewhere it holds the 4-6.5 % target.
    low = 0.025 if len(stories) == 1 and stories[0] < 50 else 0.04
    assert low <= rate <= 0.065, rate
    # today's textbook t-test on the same data is far off (the reason for this module)
    iid = sig.significance(np.concatenate(ys), np.concatenate(ps), test="parametric_iid")
    assert np.mean(iid.p_values <= 0.05) > 0.08


@pytest.mark.parametrize("phi", [0.5, 0.8])
def test_block_permutation_with_data_chosen_blocks_is_calibrated_at_lebel_length(phi):
    gen = np.random.default_rng(int(phi * 10))
    Y, P = ar1(gen, 251, 4000, phi), ar1(gen, 251, 4000, phi)
    res = sig.significance(Y, P, test="block_permutation", n_permutations=400, seed=1)
    assert res.settings["block_length_source"] == "data"
    assert 0.04 <= np.mean(res.p_values <= 0.05) <= 0.065


# -- one-sided and two-sided --------------------------------------------------------------------
def test_negative_correlations_are_never_significant_one_sided():
    gen = np.random.default_rng(4)
    Y = gen.standard_normal((200, 20))
    P = -0.6 * Y + 0.5 * gen.standard_normal((200, 20))  # strong negative r
    for test, kwargs in (("effective_dof", {}), ("parametric_iid", {}),
                         ("block_permutation", {"n_permutations": 200})):
        one = sig.significance(Y, P, test=test, **kwargs)
        two = sig.significance(Y, P, test=test, alternative="two-sided", **kwargs)
        assert np.all(one.r < -0.5)
        assert np.all(one.p_values > 0.5), test
        assert np.all(two.p_values < 0.01), test


def test_block_permutation_equals_a_loop_over_all_block_orders_both_sides():
    """5 blocks of 8 TRs (120 orders <= n_permutations: exact enumeration), a 3-TR leftover."""
    gen = np.random.default_rng(5)
    n, length = 43, 8
    Y = ar1(gen, n, 4, 0.5)
    P = 0.3 * Y + ar1(gen, n, 4, 0.5)
    P[:, 3] = -P[:, 3]
    greater = sig.significance(Y, P, test="block_permutation", block_length=length, n_permutations=500)
    two = sig.significance(Y, P, test="block_permutation", block_length=length, n_permutations=500,
                           alternative="two-sided")
    assert greater.settings["exhaustive"] and greater.settings["n_permutations"] == 120
    for j in range(4):
        observed = np.corrcoef(Y[:, j], P[:, j])[0, 1]
        null = np.array(block_null_loop(Y[:, j], P[:, j], [(0, n)], length))
        assert greater.p_values[j] == pytest.approx(np.mean(null >= observed - 1e-12), abs=1e-12)
        assert two.p_values[j] == pytest.approx(np.mean(np.abs(null) >= abs(observed) - 1e-12), abs=1e-12)


def test_block_permutation_blocks_stay_within_stories():
    gen = np.random.default_rng(6)
    sizes = [17, 22]  # 8-TR blocks: 2 + 2 whole blocks (24 orders), leftovers 1 and 6 TRs stay in place
    n = sum(sizes)
    groups = np.repeat([0, 1], sizes)
    Y = gen.standard_normal((n, 3))
    P = 0.4 * Y + gen.standard_normal((n, 3))
    res = sig.significance(Y, P, test="block_permutation", groups=groups, block_length=8, n_permutations=1000)
    assert res.settings["n_blocks"] == 4 and res.settings["fixed_trs"] == 7 and res.settings["exhaustive"]
    segments = [(0, 17), (17, 39)]
    for j in range(3):
        null = np.array(block_null_loop(Y[:, j], P[:, j], segments, 8))
        observed = np.corrcoef(Y[:, j], P[:, j])[0, 1]
        assert res.p_values[j] == pytest.approx(np.mean(null >= observed - 1e-12), abs=1e-12)


def test_monte_carlo_block_permutation_approaches_the_exact_p():
    gen = np.random.default_rng(7)
    n, length = 70, 10  # 7 blocks: 5040 orders > n_permutations, so random orders
    Y = gen.standard_normal((n, 3))
    P = 0.3 * Y + gen.standard_normal((n, 3))
    res = sig.significance(Y, P, test="block_permutation", block_length=length, n_permutations=3000, seed=2)
    assert not res.settings["exhaustive"]
    for j in range(3):
        null = np.array(block_null_loop(Y[:, j], P[:, j], [(0, n)], length))
        exact = np.mean(null >= np.corrcoef(Y[:, j], P[:, j])[0, 1] - 1e-12)
        assert res.p_values[j] == pytest.approx(exact, abs=0.025)
    assert res.p_values.min() >= 1 / 3001


# -- block length ------------------------------------------------------------------------------
@pytest.mark.parametrize("phi", [0.5, 0.9])
def test_block_length_matches_the_rule_on_known_ar1_autocorrelation(phi):
    """AR(1) (rho_Y rho_P = phi^2k): the theoretical shortest L keeping 90 % of the null variance."""
    gen = np.random.default_rng(8)
    n = 4000
    Y, P = ar1(gen, n, 400, phi), ar1(gen, n, 400, phi)
    g = [phi ** (2 * k) for k in range(1, 400)]
    total = 1 + 2 * sum(g)
    expected = next(L for L in range(1, n) if 2 * sum(min(k / L, 1) * g[k - 1] for k in range(1, len(g) + 1))
                    / total <= 0.1)
    length, info = sig.choose_block_length(Y, P, min_block_s=0.0, retained_variance=0.9)
    # The estimate is the finite-sample variance (lags up to 3/4 of the series): removing the mean
    # makes far-apart TRs slightly anti-correlated, which adds ~1 % of null variance that no block
    # keeps, so the blocks come out a little longer than the asymptotic theory, never shorter.
    assert expected <= length <= 1.3 * expected + 2, (expected, length, info)
    assert info["rule_reached"] and info["estimated_retained_variance"] >= 0.9
    assert info["median_lag1_autocorrelation_Y"] == pytest.approx(phi, abs=0.01)


def test_block_length_acf_rule_and_floor():
    gen = np.random.default_rng(9)
    Y, P = ar1(gen, 3000, 300, 0.8), ar1(gen, 3000, 300, 0.8)
    length, info = sig.choose_block_length(Y, P, rule="acf", acf_threshold=0.1, min_block_s=0.0)
    assert length in (10, 11, 12)  # 0.8^10 = 0.107, 0.8^11 = 0.086; the sample ACF is slightly low
    white_y, white_p = gen.standard_normal((500, 300)), gen.standard_normal((500, 300))
    assert sig.choose_block_length(white_y, white_p)[0] == 10  # floor: 20 s at TR 2 s
    assert sig.choose_block_length(white_y, white_p, tr_s=1.5)[0] == 14  # ceil(20 / 1.5)
    length, info = sig.choose_block_length(white_y, white_p, min_block_s=0.0)
    assert length == 1 and info["floor_trs"] == 1


def test_short_smooth_series_are_refused_or_warned_not_pretended(caplog):
    gen = np.random.default_rng(10)
    Y, P = ar1(gen, 37, 500, 0.9), ar1(gen, 37, 500, 0.9)
    with pytest.raises(InputError, match="cannot test at 5 %"):
        sig.significance(Y, P, test="block_permutation")  # 3 blocks of 10 TRs: 6 orders
    res = sig.significance(Y, P)  # effective dof: calibrated but almost no power, and says so
    assert res.settings["r_needed_for_p05_at_median_n_eff"] > 0.5
    assert any("effective sample size" in w for w in res.settings["warnings"])
    Y, P = ar1(gen, 46, 500, 0.9), ar1(gen, 46, 500, 0.9)
    res = sig.significance(Y, P, test="block_permutation")
    assert any("anti-conservative" in w for w in res.settings["warnings"])
    assert res.settings["block_rule"]["predicted_false_positive_rate_at_5pct"] > 0.065


# -- settings, labels, fallback threshold ------------------------------------------------------
def test_settings_are_json_and_labels_come_from_them():
    gen = np.random.default_rng(11)
    Y, P = ar1(gen, 120, 50, 0.5), ar1(gen, 120, 50, 0.5)
    for test in sig.TESTS:
        res = sig.significance(Y, P, test=test, n_permutations=200)
        settings = json.loads(json.dumps(res.settings))
        assert res.label == sig.describe_test(settings)
    res = sig.significance(Y, P, test="block_permutation", n_permutations=200)
    assert res.label == (f"block permutation ({res.settings['block_length']}-TR blocks, chosen from the data), "
                         "one-sided r > 0, 200 permutations")
    res = sig.significance(Y, P, test="block_permutation", block_length=12, alternative="two-sided",
                           n_permutations=200)
    assert res.label == "block permutation (12-TR blocks, set by the user), two-sided, 200 permutations"
    res = sig.significance(Y, P)
    assert res.label.startswith("t-test with autocorrelation-corrected degrees of freedom (finite-sample "
                                "Bartlett variance over lags up to 89; median effective sample size ")
    assert res.label.endswith(" of 120 TRs), one-sided r > 0")


def test_fallback_threshold_is_the_percentile_of_the_max_null_r():
    gen = np.random.default_rng(12)
    n, length, v = 48, 8, 6  # 6 blocks: all 720 orders
    Y, P = ar1(gen, n, v, 0.5), ar1(gen, n, v, 0.5)
    res = sig.significance(Y, P, test="block_permutation", block_length=length, n_permutations=1000)
    nulls = np.array([block_null_loop(Y[:, j], P[:, j], [(0, n)], length) for j in range(v)])  # (v, 720)
    rule = sig.fallback_threshold(res)
    assert rule["r_threshold"] == pytest.approx(np.quantile(nulls.max(axis=0), 0.95, method="higher"), abs=1e-9)
    assert rule["label"].startswith(f"r \u2265 {rule['r_threshold']:.2f} (95th percentile of the block-permutation "
                                    f"null of the maximum r over {v} voxels; 8-TR blocks, 720 permutations)")
    pooled = sig.fallback_threshold(res, statistic="pooled", percentile=99.9)
    exact = np.quantile(nulls.ravel(), 0.999, method="inverted_cdf")
    assert exact <= pooled["r_threshold"] <= exact + 5e-4  # upper edge of a 5e-4-wide histogram bin
    assert "99.9th percentile" in pooled["label"] and "pooled over all voxels" in pooled["label"]
    with pytest.raises(InputError, match="permutation null"):
        sig.fallback_threshold(sig.significance(Y, P))


def test_voxel_blocks_and_permutation_batches_do_not_change_results(monkeypatch):
    gen = np.random.default_rng(13)
    Y = ar1(gen, 90, 37, 0.6).astype(np.float32)
    P = (0.3 * Y + ar1(gen, 90, 37, 0.6)).astype(np.float32)
    Y[:, 5] = 1.0  # constant voxel
    P[3, 7] = np.nan
    full = {test: sig.significance(Y, P, test=test, n_permutations=300) for test in sig.TESTS}
    monkeypatch.setattr(sig, "COLUMN_BLOCK_ELEMENTS", 90 * 4)
    monkeypatch.setattr(sig, "PERMUTATION_BATCH_ELEMENTS", 9 * 9 * 3)
    for test, ref in full.items():
        res = sig.significance(Y, P, test=test, n_permutations=300)
        np.testing.assert_allclose(res.p_values, ref.p_values, rtol=1e-12)
        np.testing.assert_allclose(res.r, ref.r, atol=1e-12)
        assert res.p_values[5] == 1.0 and res.p_values[7] == 1.0 and res.r[5] == 0.0
        assert res.settings["n_unusable_voxels"] == 2


def test_bad_inputs_name_the_argument():
    Y = np.zeros((30, 2))
    with pytest.raises(InputError, match="same"):
        sig.significance(Y, np.zeros((30, 3)))
    with pytest.raises(InputError, match="test must be one of"):
        sig.significance(Y, Y, test="bootstrap")
    with pytest.raises(InputError, match="alternative"):
        sig.significance(Y, Y, alternative="less")
    with pytest.raises(InputError, match="contiguous"):
        sig.significance(Y, Y, groups=np.tile([0, 1], 15))
    with pytest.raises(InputError, match="at least 2"):
        sig.significance(np.ones((30, 2)) + np.arange(30)[:, None], np.arange(60.0).reshape(30, 2) ** 2,
                         test="block_permutation", block_length=20)


def test_user_block_length_and_unscaled_pooled_targets_are_flagged():
    gen = np.random.default_rng(14)
    Y, P = ar1(gen, 251, 300, 0.9), ar1(gen, 251, 300, 0.9)
    res = sig.significance(Y, P, test="block_permutation", block_length=10, n_permutations=200)
    assert res.settings["block_rule"]["estimated_retained_variance"] < 0.8
    assert any("anti-conservative" in w for w in res.settings["warnings"])
    groups = np.repeat([0, 1, 2], [80, 80, 91])
    shifted = Y + np.repeat([[-2.0], [0.0], [2.0]], [80, 80, 91], axis=0)  # story means left in Y
    res = sig.significance(shifted, P, groups=groups)
    assert res.settings["median_between_story_share_of_Y_variance"] > 0.5
    assert any("story means" in w for w in res.settings["warnings"])
