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


@pytest.mark.parametrize("how", ["average", "sum", "last"])
def test_split_methods_match_loop(series, how):
    data, data_times, tr_times = series
    split = np.searchsorted(data_times, tr_times, side="left")
    expected = loop_split(data, split, how)
    np.testing.assert_allclose(Downsampler().downsample(data, data_times, tr_times, how), expected, atol=1e-5)
    np.testing.assert_allclose(
        Downsampler().downsample(data, data_times, tr_times, how, split_indices=split), expected, atol=1e-5)


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
