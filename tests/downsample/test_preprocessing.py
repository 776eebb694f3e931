"""FIR delays, z-scoring, trimming and the trimming-mismatch message."""
from __future__ import annotations

import numpy as np
import pytest

from encoding_core.common.errors import InputError, TrimmingMismatchError
from encoding_core.downsample.preprocessing import check_trimmed_lengths, make_delayed, nan_to_zero, trim, zscore


def test_make_delayed_matches_loop():
    X = np.random.default_rng(0).standard_normal((12, 3))
    delays = [-2, 0, 1, 4]
    got = make_delayed(X, delays)
    assert got.shape == (12, 12)
    for k, d in enumerate(delays):
        for t in range(12):
            src = t - d
            expected = X[src] if 0 <= src < 12 else np.zeros(3)
            np.testing.assert_array_equal(got[t, 3 * k:3 * k + 3], expected)


def test_make_delayed_longer_than_series_is_zero():
    X = np.ones((3, 2))
    assert not make_delayed(X, [5, -5]).any()
    with pytest.raises(InputError, match="whole numbers"):
        make_delayed(X, [1.5])
    with pytest.raises(InputError, match="delays is empty"):
        make_delayed(X, [])


def test_zscore_matches_scipy_and_handles_constant_columns():
    from scipy.stats import zscore as scipy_zscore
    X = np.random.default_rng(1).standard_normal((40, 3)) * 5 + 2
    X = np.column_stack([X, np.full(40, 7.0)])
    X[3, 0] = np.nan
    got = zscore(X)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[:, 1:3], scipy_zscore(X[:, 1:3], axis=0), atol=1e-12)
    np.testing.assert_allclose(got[:, 0], scipy_zscore(np.nan_to_num(X[:, 0])), atol=1e-12)
    assert not got[:, 3].any()
    assert zscore(X.astype(np.float32)).dtype == np.float32


def test_nan_to_zero_and_trim():
    x = np.array([[1.0, np.nan], [np.inf, 2.0]])
    np.testing.assert_array_equal(nan_to_zero(x), [[1.0, 0.0], [0.0, 2.0]])
    a = np.arange(20)
    np.testing.assert_array_equal(trim(a, 10, -5), a[10:-5])
    np.testing.assert_array_equal(trim(a, None, None), a)
    np.testing.assert_array_equal(trim(a, 0, None), a)
    with pytest.raises(InputError, match="trim start"):
        trim(a, 1.5, None)


def test_trimming_mismatch_message_names_story_lengths_and_keys():
    keys = {"train_features_start": 10, "train_features_end": -5,
            "train_targets_start": 0, "train_targets_end": None}
    check_trimmed_lengths("alternateithicatom", 290, 290, keys)  # equal: no error
    with pytest.raises(TrimmingMismatchError) as info:
        check_trimmed_lengths("alternateithicatom", 290, 291, keys)
    message = str(info.value)
    for part in ("alternateithicatom", "290 rows after [10:-5]", "291 rows after [0:None]",
                 "train_targets_start", "train_features_end", "by 1"):
        assert part in message
