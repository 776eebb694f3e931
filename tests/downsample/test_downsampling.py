"""Downsampling methods against straightforward per-TR loops written here (independent references)."""
from __future__ import annotations

import numpy as np
import pytest

from encoding_core.downsample import Downsampler, downsample_kernel
from encoding_core.common.errors import InputError

TR = 2.0


def loop_rect(data, data_times, tr_times):
    out = np.zeros((len(tr_times), data.shape[1]))
    tr = np.mean(np.diff(tr_times))
    for i, t in enumerate(tr_times):
        mask = (data_times >= t - tr / 2) & (data_times < t + tr / 2)
        if mask.any():
            out[i] = data[mask].mean(axis=0)
    return out


def loop_lanczos(data, data_times, tr_times, window=3, cutoff_mult=1.0):
    cutoff = cutoff_mult / np.mean(np.diff(tr_times))
    out = np.zeros((len(tr_times), data.shape[1]))
    for i, t in enumerate(tr_times):
        for j, s in enumerate(data_times):
            x = (t - s) * cutoff
            if x == 0:
                w = 1.0
            elif abs(x) > window:
                w = 0.0
            else:
                w = window * np.sin(np.pi * x) * np.sin(np.pi * x / window) / (np.pi ** 2 * x ** 2)
            out[i] += w * data[j]
    return out


def loop_sinc(data, data_times, tr_times, window=1, cutoff_mult=1.0, causal=False, renorm=True):
    B = cutoff_mult / np.mean(np.diff(tr_times))
    out = np.zeros((len(tr_times), data.shape[1]))
    for i, t in enumerate(tr_times):
        weights = np.zeros(len(data_times))
        for j, s in enumerate(data_times):
            dt = t - s
            if abs(dt) > window / (2 * B) or (causal and dt < 0):
                continue
            weights[j] = 2 * B if dt == 0 else 2 * B * np.sin(2 * np.pi * B * dt) / (2 * np.pi * B * dt)
        if renorm and weights.sum() != 0:
            weights = weights / weights.sum()
        out[i] = weights @ data
    return out


def loop_split(data, split, how):
    out = np.zeros((len(split), data.shape[1]))
    for i in range(len(split)):
        end = split[i + 1] if i + 1 < len(split) else len(data)
        chunk = data[split[i]:end]
        if len(chunk):
            out[i] = {"average": chunk.mean(axis=0), "sum": chunk.sum(axis=0), "last": chunk[-1]}[how]
    return out


@pytest.fixture
def series():
    gen = np.random.default_rng(3)
    data_times = np.sort(gen.uniform(-3, 61, 180))
    data = gen.standard_normal((180, 4))
    tr_times = np.arange(30) * TR
    return data, data_times, tr_times


def test_rect_matches_loop(series):
    data, data_times, tr_times = series
    got = Downsampler().downsample(data, data_times, tr_times)  # rect is the default
    np.testing.assert_allclose(got, loop_rect(data, data_times, tr_times), atol=1e-5)


@pytest.mark.parametrize("window,cutoff_mult", [(3, 1.0), (2, 0.8)])
def test_lanczos_matches_loop(series, window, cutoff_mult):
    data, data_times, tr_times = series
    got = Downsampler().downsample(data, data_times, tr_times, "lanczos", window=window, cutoff_mult=cutoff_mult)
    np.testing.assert_allclose(got, loop_lanczos(data, data_times, tr_times, window, cutoff_mult), atol=1e-5)


@pytest.mark.parametrize("window,causal,renorm", [(1, False, True), (3, True, True), (2, False, False)])
def test_sinc_matches_loop(series, window, causal, renorm):
    data, data_times, tr_times = series
    got = Downsampler().downsample(data, data_times, tr_times, "sinc", window=window, cutoff_mult=1.0,
                                   causal=causal, renorm=renorm)
    np.testing.assert_allclose(got, loop_sinc(data, data_times, tr_times, window, 1.0, causal, renorm), atol=1e-5)


def loop_interval(data, data_times, tr_times, how):
    """Aggregate the samples of each TR interval [t - tr/2, t + tr/2) (data_times sorted)."""
    tr = np.mean(np.diff(tr_times))
    out = np.zeros((len(tr_times), data.shape[1]))
    for i, t in enumerate(tr_times):
        chunk = data[(data_times >= t - tr / 2) & (data_times < t + tr / 2)]
        if len(chunk):
            out[i] = {"average": chunk.mean(axis=0), "sum": chunk.sum(axis=0), "last": chunk[-1]}[how]
    return out


@pytest.mark.parametrize("how", ["average", "sum", "last"])
def test_split_methods_match_loop(series, how):
    data, data_times, tr_times = series
    expected = loop_interval(data, data_times, tr_times, how)
    np.testing.assert_allclose(Downsampler().downsample(data, data_times, tr_times, how), expected, atol=1e-5)
    if how == "average":  # the same interval as rect
        np.testing.assert_allclose(expected, loop_rect(data, data_times, tr_times), atol=1e-12)
    split = np.searchsorted(data_times, tr_times - TR / 2, side="left")  # given: the last TR takes the rest
    np.testing.assert_allclose(Downsampler().downsample(data, data_times, tr_times, how, split_indices=split),
                               loop_split(data, split, how), atol=1e-5)


@pytest.mark.parametrize("method,kwargs", [
    ("rect", {}), ("average", {}), ("sum", {}), ("lanczos", {"window": 3, "cutoff_mult": 1.0}),
    ("lanczos", {"window": 2, "cutoff_mult": 0.8}), ("sinc", {"window": 3, "cutoff_mult": 1.0}),
    ("sinc", {"window": 1, "cutoff_mult": 1.0, "renorm": False}),
])
def test_every_family_puts_a_tr_at_the_same_centre_of_mass(method, kwargs):
    """On a ramp sampled every 10 ms, each method's weights for TR i have their centre of
    mass at the TR time t_i (the centre of [t_i - TR/2, t_i + TR/2)): W @ t / W @ 1 = t_i."""
    data_times = np.arange(-4000, 14000) / 100.0     # every 10 ms, exact at whole seconds
    tr_times = np.arange(-9.0, 101.0, TR)           # LeBel-style midpoints, odd seconds
    ramp_and_ones = np.column_stack([data_times, np.ones_like(data_times)])
    out = Downsampler().downsample(ramp_and_ones, data_times, tr_times, method, **kwargs).astype(np.float64)
    centre = out[:, 0] / out[:, 1]
    np.testing.assert_allclose(centre, tr_times, atol=0.006)  # half a sample step, float32 output


def test_last_takes_the_last_sample_of_the_same_interval():
    data_times = np.arange(-4000, 14000) / 100.0     # every 10 ms, exact at whole seconds
    tr_times = np.arange(-9.0, 101.0, TR)
    out = Downsampler().downsample(data_times[:, None], data_times, tr_times, "last")[:, 0]
    expected = [data_times[data_times < t + TR / 2][-1] for t in tr_times]  # a plain loop
    np.testing.assert_allclose(out, expected, atol=1e-4)
    np.testing.assert_allclose(out, tr_times + TR / 2 - 0.01, atol=1e-4)  # one 10 ms step before the end


def test_unsorted_times_and_nan_features(series):
    data, data_times, tr_times = series
    data = data.copy()
    data[5, 1] = np.nan
    order = np.random.default_rng(1).permutation(len(data_times))
    got = Downsampler().downsample(data[order], data_times[order], tr_times, "lanczos", window=3, cutoff_mult=1.0)
    expected = loop_lanczos(np.nan_to_num(data), data_times, tr_times)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_lanczos_rectify_splits_signs(series):
    data, data_times, tr_times = series
    got = Downsampler().downsample(data, data_times, tr_times, "lanczos", window=3, cutoff_mult=1.0, rectify=True)
    neg = loop_lanczos(np.minimum(data, 0), data_times, tr_times)
    pos = loop_lanczos(np.maximum(data, 0), data_times, tr_times)
    np.testing.assert_allclose(got, np.hstack([neg, pos]), atol=1e-5)


def test_errors_name_the_problem(series):
    data, data_times, tr_times = series
    with pytest.raises(InputError, match="Unknown downsampling method 'gaussian'"):
        Downsampler().downsample(data, data_times, tr_times, "gaussian")
    with pytest.raises(InputError, match="does not take \\['windw'\\]"):
        Downsampler().downsample(data, data_times, tr_times, "lanczos", windw=3)
    with pytest.raises(InputError, match="data_times has 179 entries"):
        Downsampler().downsample(data, data_times[:-1], tr_times)


def test_kernel_picture_shapes():
    t, w = downsample_kernel("lanczos", TR, window=3)
    assert t.shape == w.shape and w[np.argmin(np.abs(t))] == pytest.approx(1.0, abs=1e-3)
    assert np.all(w[np.abs(t) > 3 * TR] == 0)
    t, w = downsample_kernel("rect", TR)
    assert set(np.unique(w)) == {0.0, 1.0} and w[np.abs(t) < TR / 2 - 1e-9].min() == 1.0
    t, w_average = downsample_kernel("average", TR)
    np.testing.assert_array_equal(w_average, w)  # rect and average cover the same TR interval
    t, w_last = downsample_kernel("last", TR)
    assert w_last.sum() == 1.0 and -TR / 2 < t[np.argmax(w_last)] < TR / 2
