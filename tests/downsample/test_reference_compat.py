"""The reference's call path of Downsampler.downsample: keywords a method does not use are ignored,
and the boundary-style legacy_* methods equal a loop over ``np.split`` chunks."""
from __future__ import annotations

import numpy as np
import pytest

from encoding_core.common.errors import InputError
from encoding_core.downsample.downsampling import Downsampler


@pytest.fixture
def series():
    rng = np.random.default_rng(0)
    data_times = np.sort(rng.uniform(0, 40, 120))
    return rng.standard_normal((120, 3)), data_times, np.arange(1.0, 40.0, 2.0)


def test_the_trainers_split_indices_and_lanczos_options_are_ignored_where_unused(series):
    data, data_times, tr_times = series
    d = Downsampler()
    split = np.searchsorted(data_times, tr_times)
    np.testing.assert_array_equal(d.downsample(data, data_times, tr_times, "rect", split_indices=split, window=3,
                                               cutoff_mult=1.0),
                                  d.downsample(data, data_times, tr_times, "rect"))
    np.testing.assert_array_equal(d.downsample(data, data_times, tr_times, "lanczos", split_indices=split),
                                  d.downsample(data, data_times, tr_times, "lanczos"))
    np.testing.assert_array_equal(d.downsample(data, data_times, tr_times, "average", window=3),
                                  d.downsample(data, data_times, tr_times, "average"))
    with pytest.raises(InputError, match="does not take"):
        d.downsample(data, data_times, tr_times, "rect", windw=3)  # a typo is still an error
    with pytest.raises(InputError, match="does not take"):
        d.weight_matrix(data_times, tr_times, "rect", split_indices=split)  # our matrix API stays strict


@pytest.mark.parametrize("method", ["legacy_average", "legacy_sum", "legacy_last"])
def test_legacy_methods_equal_a_loop_over_np_split(series, method):
    data, data_times, tr_times = series
    split = [3, 10, 10, 40, 77, 119]
    got = Downsampler().downsample(data, data_times, tr_times, method, split_indices=split)
    assert got.shape == (len(split) + 1, 3)
    for row, chunk in zip(got, np.split(data, split)):
        if len(chunk) == 0:
            expected = np.zeros(3)
        else:
            expected = {"legacy_average": chunk.mean(0), "legacy_sum": chunk.sum(0), "legacy_last": chunk[-1]}[method]
        np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="needs split_indices"):
        Downsampler().downsample(data, data_times, tr_times, method)
    assert method in Downsampler().available_methods
