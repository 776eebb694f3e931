"""Is a voxel's encoding accuracy above chance? p-values for Pearson r between held-out Y and P.

Arrays are (n_trs, n_voxels): ``Y`` the measured responses, ``P`` the model's predictions of the
same TRs. fMRI responses and encoding-model predictions are both smooth in time, so their TRs
are not independent samples and a textbook t-test on r (n - 2 degrees of freedom) rejects far
too often (measured 12-33 % at a nominal 5 % on null AR(1) data). The tests here account for
that. One entry point, :func:`significance`, returns a :class:`SignificanceResult` whose
``settings`` (a JSON-ready dict) record how the test was run; :func:`describe_test` turns
those settings into the label the app shows (labels are never typed anywhere else).

Tests (``test=``):

``"effective_dof"`` (default)
    t-test of r with autocorrelation-corrected degrees of freedom. Under H0 (Y and P
    independent, each stationary) the variance of the cross-product of the centred series
    is Bartlett's (1935) sum over lags, in its finite-sample form
    ``Var(sum_t y~_t p~_t) = sum_{|k| < n} (n - |k|) gamma_Y(k) gamma_P(k)``. It is estimated
    per voxel by ``sum_{|k| <= M} S_Y(k) S_P(k) / (n - |k|)``, with ``S(k) = sum_t x~_t x~_{t+k}``
    the lagged sums of that voxel's standardised series (an unbiased plug-in, as Y and P
    are independent under H0), summed over stories (each centred within its story; lags
    never cross a story boundary), ``M`` = 3/4 of the story's length. Dividing by ``n^2``
    gives ``Var(r)``, and ``n_eff = 1 + 1 / Var(r)`` is the number of independent samples
    whose correlation has that null variance (n when the TRs are independent), clipped to
    [3, n]. Then ``t = r sqrt((n_eff - 2) / (1 - r^2))`` with ``n_eff - 2`` degrees of freedom.
    ``neff_method="lag1"`` uses instead the AR(1) special case
    ``n_eff = n (1 - rho_Y(1) rho_P(1)) / (1 + rho_Y(1) rho_P(1))`` (Bartlett/Quenouille), right
    only when both series are AR(1) (conservative for FIR-smoothed predictions, liberal for
    long-memory noise).
    Measured (bench/calibrate_significance.py, 4000 null voxels per cell, AR(1) Y with phi
    0.3-0.9, AR(1) or FIR-smoothed P): 4.0-5.9 % false positives at a nominal one-sided 5 %
    for the demo's pooled CV (228 TRs), LeBel's test story (251 TRs) and pooled LeBel CV
    (3000 TRs); on a single story of 37-46 TRs it is conservative, 3.0-4.8 % (r is then
    normalised by that story's own variances and its null distribution is lighter-tailed
    than a t). Two-sided: 2.3-5.9 %. Plain autocorrelation products summed to n/2 looked
    fine on single stories but reached 8.9 % on pooled short stories, and the lag-1 formula
    8.9 % there. Under H1 the plug-in null variance is inflated, because Y's autocovariance
    then contains P's (measured +8 to +13 % at r = 0.3): a small loss of power, not of
    validity.
    Assumes: each series is stationary within a story; Y is centred within each story (the
    pipeline z-scores each story; a warning is recorded otherwise); H0 is independence of Y
    and P.

``"block_permutation"``
    The prediction time course is cut into blocks of ``block_length`` TRs (blocks never
    straddle a story boundary when ``groups`` is given; a story's leftover TRs stay in
    place) and the blocks are reordered, the same order for every voxel; Y stays fixed.
    With ``B`` blocks all ``B!`` orders are used when ``B! <= n_permutations`` (an exact
    enumeration, p = #{null >= observed} / B!), otherwise ``n_permutations`` random orders
    (p = (1 + #{null >= observed}) / (1 + n_permutations)).
    Assumes: blocks ``block_length`` apart are independent and the series stationary. They
    are not quite independent: shuffling loses the covariance of Y and P across each block
    boundary, about ``2 sum_k min(k/L, 1) rho_Y(k) rho_P(k) / (1 + 2 sum_k rho_Y(k) rho_P(k))``
    of the null variance of r for long AR series, which makes the test liberal (10-TR
    blocks: 10 % false positives at phi = 0.9). By default the block length is chosen from
    the data (:func:`choose_block_length`): the shortest L whose shuffling keeps
    ``retained_variance`` (0.95) of the null variance, estimated from the voxel-averaged
    lagged sums of Y and of P within stories, at least ``min_block_s`` seconds (20 s, 10
    TRs at TR = 2 s) and at most what leaves MIN_BLOCKS (5) blocks. When the series are too
    smooth for their length the target cannot be met; the recorded settings then give the
    estimated retained variance and the predicted false-positive rate, and a warning says
    so. It refuses (InputError) when the blocks are so few that no p-value can fall below
    0.05 (e.g. 37 TRs: 3 blocks of 10 TRs, 6 orders). Circular shifts and block shuffling
    with a random circular offset were measured (bench) and calibrate no better (circular
    shifts get more liberal as the excluded lags grow; a random offset keeps the same
    number of boundaries), so they are not offered. Even when calibrated it is less
    powerful than ``effective_dof`` and its p-values cannot go below 1 / (n_permutations + 1),
    which limits BH-FDR over many voxels.

``"parametric_iid"``
    The textbook t-test with n - 2 degrees of freedom (``scipy.stats.pearsonr``). Assumes
    independent TRs; kept for comparison and labelled so.

Pooled cross-validated predictions (``variance_factor``): when the held-out predictions of
several folds are pooled, each fold's model trained on the others' held-out data, so the
folds' cross-products are correlated under H0 and the null variance of r is larger than any
fixed-P estimate here (about twice, for ridge: see :mod:`encoding_core.models.cv_dependence`).
The caller passes that factor per voxel. Measured on refitted leave-one-story-out ridge at the
demo's lengths: 8.8-10.2 % false positives at a nominal 5 % without it, 3.8-4.8 % with it
(bench/calibrate_significance.py); on the demo's vertices outside every planted region, 10-11 %
without it and 3.4-4.4 % with it.

Considered and rejected: estimating Y's autocorrelation from its residual on P (which would
keep a planted signal, as smooth as P, from inflating the null variance under H1) made the
test liberal on null data (the calibration test's sizes, 37-251 TRs): 7.5-13.6 % at a nominal
5 % for phi 0.9 and 6.5-8.6 % for FIR-smoothed predictions at phi 0.5.

Every test is one-sided (H1: r > 0) by default, ``alternative="two-sided"`` for |r|.
Constant or non-finite voxels get r = 0 and p = 1 (counted in a warning). Memory is bounded:
voxels are processed in blocks and permutations in batches (PERMUTATION_BATCH_ELEMENTS).
"""
from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from scipy import fft as sp_fft
from scipy import special

from encoding_core.common.arrays import as_matrix
from encoding_core.common.errors import InputError
from encoding_core.stats.scores import _columns_ok

logger = logging.getLogger(__name__)

TESTS = ("effective_dof", "block_permutation", "parametric_iid")
"""Names accepted by ``significance(test=...)``; the first is the default."""

ALTERNATIVES = ("greater", "two-sided")
NEFF_METHODS = ("bartlett", "lag1")
THRESHOLD_STATISTICS = ("max", "pooled")

COLUMN_BLOCK_ELEMENTS = 1_000_000
"""Voxel blocks hold at most this many float64 values per (n_trs, block) array (8 MB). Larger
blocks were slower here: each 32 MB temporary is a fresh memory map (page faults on every call)."""

PERMUTATION_BATCH_ELEMENTS = 10_000_000
"""Block cross-products and permutation batches hold at most this many float64 values (80 MB)."""

ACF_SUMMARY_VOXELS = 2048
"""The block-length rule summarises the autocorrelations of at most this many (evenly spaced) voxels."""

NULL_HISTOGRAM_EDGES = np.linspace(-1.0, 1.0, 4001)
"""Bins (width 5e-4) of the pooled permutation null of r kept for :func:`fallback_threshold`."""

MIN_PERMUTATIONS_FOR_MAX_THRESHOLD = 100

MIN_BLOCKS = 5
"""The data-chosen block length is capped to leave at least this many whole blocks (5! = 120 orders)."""

_Z_95 = 1.6448536269514722  # one-sided 5 % point of the standard normal


# --------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignificanceResult:
    """What :func:`significance` returns.

    r: (v,) Pearson r per voxel; p_values: (v,) float64 in (0, 1]; settings: JSON-ready dict
    of how the test was run (see :func:`describe_test`); null_max_r: (n_orders,) maximum over
    voxels of the null r (of |r| when two-sided) for each block order, permutation test
    only; null_histogram: counts of all null r (|r| when two-sided) over voxels and orders on
    :data:`NULL_HISTOGRAM_EDGES`, permutation test only; usable: (v,) bool, False for voxels
    constant or non-finite in Y or P (their r is 0 and p is 1).
    """

    r: np.ndarray
    p_values: np.ndarray
    settings: dict
    null_max_r: Optional[np.ndarray] = None
    null_histogram: Optional[np.ndarray] = None
    usable: Optional[np.ndarray] = None

    def textbook_p_values(self) -> np.ndarray:
        """(v,) p-values of the textbook t-test of the same r (n - 2 degrees of freedom, TRs assumed
        independent, the same sidedness): what ``test="parametric_iid"`` gives, without a second pass."""
        usable = np.ones(self.r.shape, dtype=bool) if self.usable is None else self.usable
        n = int(self.settings["n_trs"])
        return np.where(usable, _t_pvalues(self.r, n - 2.0, self.settings["alternative"]), 1.0)

    @property
    def label(self) -> str:
        """Human description of the test, built from ``settings``."""
        return describe_test(self.settings)


# --------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------
def _pair(Y: Any, P: Any) -> tuple[np.ndarray, np.ndarray]:
    y, p = as_matrix(Y, "Y"), as_matrix(P, "P")
    if y.shape != p.shape:
        raise InputError(f"Y and P must have the same (n_trs, n_voxels) shape; got {y.shape} and {p.shape}.")
    if y.shape[0] < 4:
        raise InputError(f"Y and P need at least 4 TRs (rows) for a significance test; got {y.shape[0]}.")
    return y, p


def _segments(groups: Any, n: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) TR ranges of each story; the whole series when groups is None."""
    if groups is None:
        return [(0, n)]
    labels = np.asarray(groups).reshape(-1)
    if labels.shape[0] != n:
        raise InputError(f"groups must give one story label per TR ({n}); got {labels.shape[0]} labels.")
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [n]])
    if len(np.unique(labels)) != len(starts):
        raise InputError("groups must label contiguous runs of TRs (each story's TRs together, as stacked by the "
                         "pipeline); a label appears in more than one run. Sort the TRs by story first.")
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def _voxel_blocks(n_rows: int, n_columns: int, per_column: int = 1) -> list[slice]:
    width = max(1, COLUMN_BLOCK_ELEMENTS // max(n_rows * per_column, 1))
    return [slice(start, min(start + width, n_columns)) for start in range(0, n_columns, width)]


def _standardised(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 z-scores (population sd) of a voxel block of Y and P, and the usable-column mask (w,).

    Unusable columns (constant, NaN/inf in Y or P) are zeros, so they give r = 0.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    ok = _columns_ok(y) & _columns_ok(p)
    out = []
    for values in (y, p):
        centred = np.where(ok, values, 0.0)
        centred = centred - centred.mean(axis=0)
        sd = np.sqrt((centred * centred).mean(axis=0))
        out.append(np.divide(centred, sd, out=np.zeros_like(centred), where=ok & (sd > 0)))
    return out[0], out[1], ok


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise InputError(f"alternative must be one of {ALTERNATIVES}; got {alternative!r}.")


# --------------------------------------------------------------------------------------
# Autocorrelation
# --------------------------------------------------------------------------------------
DIRECT_LAG_MAX_TRS = 128
"""Stories up to this many TRs get their lagged sums directly (measured 3-7x faster than the
FFT for 38-100 TRs x 20484 voxels); longer ones through the FFT."""


def _lagged_sums(x: np.ndarray, segments: Sequence[tuple[int, int]], max_lag: int) -> np.ndarray:
    """(max_lag + 1, w) sums over stories of sum_t x~_t x~_{t+k}, x~ = x centred within each story."""
    out = np.zeros((max_lag + 1, x.shape[1]))
    for start, stop in segments:  # a few stories, each vectorised over TRs and voxels
        part = x[start:stop] - x[start:stop].mean(axis=0)
        n_seg = stop - start
        if n_seg <= DIRECT_LAG_MAX_TRS:  # short stories: one product per lag beats the FFT's padding
            for lag in range(min(max_lag, n_seg - 1) + 1):
                out[lag] += np.einsum("tv,tv->v", part[:n_seg - lag], part[lag:])
            continue
        n_fft = sp_fft.next_fast_len(n_seg + max_lag, real=True)
        spectrum = sp_fft.rfft(part, n=n_fft, axis=0)
        lags = sp_fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2, n=n_fft, axis=0)
        usable = min(max_lag, n_seg - 1) + 1
        out[:usable] += lags[:usable]
    return out


def _acf_from_sums(sums: np.ndarray) -> np.ndarray:
    return np.divide(sums, sums[:1], out=np.zeros_like(sums), where=sums[:1] > 0)


def autocorrelation(X: Any, max_lag: int, groups: Any = None) -> np.ndarray:
    """Sample autocorrelation of each column of X (n, v) at lags 0..max_lag -> (max_lag + 1, v).

    The usual biased estimator ``sum_t x~_t x~_{t+k} / sum_t x~_t^2``, with x~ centred
    within each story when ``groups`` (n,) labels contiguous stories (lags never cross a
    story boundary). Constant or non-finite columns get 0 at every lag.
    """
    x = as_matrix(X, "X")
    n = x.shape[0]
    segments = _segments(groups, n)
    if int(max_lag) != max_lag or not 0 <= max_lag < n:
        raise InputError(f"max_lag must be a whole number of TRs in [0, {n - 1}]; got {max_lag}.")
    out = np.zeros((int(max_lag) + 1, x.shape[1]))
    for cols in _voxel_blocks(n, x.shape[1], per_column=2):
        block = np.asarray(x[:, cols], dtype=np.float64)
        ok = _columns_ok(block)
        acf = _acf_from_sums(_lagged_sums(np.where(ok, block, 0.0), segments, int(max_lag)))
        out[:, cols] = np.where(ok, acf, 0.0)
    return out


MAX_LAG_FRACTION = 0.75
"""Default Bartlett truncation: lags up to 3/4 of each story's length (see the module docstring)."""


def _story_max_lags(segments: Sequence[tuple[int, int]], max_lag: Optional[int]) -> list[int]:
    """Truncation lag of each story: ``max_lag`` (capped at n_g - 1) or 3/4 of (n_g - 1)."""
    sizes = [stop - start for start, stop in segments]
    if max_lag is None:
        return [max(1, int(MAX_LAG_FRACTION * (size - 1))) for size in sizes]
    return [max(1, min(int(max_lag), size - 1)) for size in sizes]


def _null_variance_block(yz: np.ndarray, pz: np.ndarray, segments: Sequence[tuple[int, int]],
                         story_lags: Sequence[int]) -> np.ndarray:
    """Finite-sample Bartlett estimate of Var(r) under H0 (w,) for a globally standardised voxel block.

    Per story g (centred within the story), with lagged sums ``S(k) = sum_t x~_t x~_{t+k}``:
    ``Var(sum_t y~ p~) ~ sum_{|k| <= M_g} S_Y(k) S_P(k) / (n_g - |k|)``; stories are independent,
    and the sum is divided by ``(sum_t yz^2)(sum_t pz^2) = n^2``.
    """
    n = yz.shape[0]
    total = np.zeros(yz.shape[1])
    for (start, stop), lag in zip(segments, story_lags, strict=True):  # a few stories, each vectorised
        story = [(_lagged_sums(values[start:stop], [(0, stop - start)], lag)) for values in (yz, pz)]
        weights = 1.0 / (stop - start - np.arange(lag + 1))  # 1 / (n_g - k)
        weights[1:] *= 2.0  # lags +k and -k
        total += (weights[:, None] * story[0] * story[1]).sum(axis=0)
    return total / float(n * n)


def _neff_block(yz: np.ndarray, pz: np.ndarray, segments: Sequence[tuple[int, int]], method: str,
                story_lags: Sequence[int]) -> np.ndarray:
    """Effective sample size (w,) of a standardised voxel block, before clipping to [3, n]."""
    n = yz.shape[0]
    if method == "lag1":
        a = np.clip(_acf_from_sums(_lagged_sums(yz, segments, 1))[1] * _acf_from_sums(_lagged_sums(pz, segments, 1))[1],
                    0.0, 0.999)
        return n * (1.0 - a) / (1.0 + a)
    variance = np.maximum(_null_variance_block(yz, pz, segments, story_lags), 1.0 / (n - 1))
    return 1.0 + 1.0 / variance  # the n of an independent-sample correlation with this null variance


def effective_sample_size(Y: Any, P: Any, groups: Any = None, method: str = "bartlett",
                          max_lag: Optional[int] = None) -> np.ndarray:
    """Autocorrelation-corrected number of independent samples per voxel -> (v,) in [3, n].

    ``method="bartlett"``: ``1 + 1 / Var(r)`` with the finite-sample Bartlett variance
    ``Var(r) = sum_g sum_{|k| <= M_g} S_Y,g(k) S_P,g(k) / (n_g - |k|) / n^2`` (S the lagged sums
    of the standardised, within-story centred series; M_g = 3/4 of story g's length, or
    ``max_lag``), floored at the independent-sample 1 / (n - 1); ``"lag1"``: ``n (1 - a) / (1 + a)``
    with ``a = rho_Y(1) rho_P(1)`` clipped to [0, 0.999]. Never more than n, never less than 3.
    Constant or non-finite voxels get n.
    """
    y_all, p_all = _pair(Y, P)
    n, n_voxels = y_all.shape
    segments = _segments(groups, n)
    method, story_lags = _check_neff_settings(method, max_lag, segments)
    out = np.empty(n_voxels)
    for cols in _voxel_blocks(n, n_voxels, per_column=4):
        yz, pz, ok = _standardised(y_all[:, cols], p_all[:, cols])
        out[cols] = np.where(ok, _neff_block(yz, pz, segments, method, story_lags), n)
    return np.clip(out, 3.0, n)


def _check_neff_settings(method: str, max_lag: Optional[int],
                         segments: Sequence[tuple[int, int]]) -> tuple[str, list[int]]:
    if method not in NEFF_METHODS:
        raise InputError(f"neff_method must be one of {NEFF_METHODS}; got {method!r}.")
    shortest = min(stop - start for start, stop in segments)
    if shortest < 3:
        raise InputError(f"every story needs at least 3 TRs to estimate its autocorrelation; the shortest has "
                         f"{shortest}. Drop it or pass groups=None.")
    if max_lag is not None and (int(max_lag) != max_lag or max_lag < 1):
        raise InputError(f"max_lag must be a whole number of TRs >= 1 (or None for 3/4 of each story); got {max_lag}.")
    return method, _story_max_lags(segments, max_lag)


# --------------------------------------------------------------------------------------
# Parametric p-values
# --------------------------------------------------------------------------------------
def _t_pvalues(r: np.ndarray, dof: Any, alternative: str) -> np.ndarray:
    """p-values of the t-test of r with ``dof`` degrees of freedom (scalar or (v,)).

    ``t = r sqrt(dof / (1 - r^2))``; the two-sided p is ``I_{1 - r^2}(dof/2, 1/2)``
    (exact at |r| = 1) and the one-sided p for r > 0 is half of it when r >= 0, one minus
    half of it otherwise.
    """
    rr = np.clip(np.asarray(r, dtype=np.float64), -1.0, 1.0)
    two_sided = np.clip(special.betainc(np.asarray(dof, dtype=np.float64) / 2.0, 0.5, 1.0 - rr * rr), 0.0, 1.0)
    if alternative == "two-sided":
        return two_sided
    return np.where(rr >= 0, 0.5 * two_sided, 1.0 - 0.5 * two_sided)


# --------------------------------------------------------------------------------------
# Block length
# --------------------------------------------------------------------------------------
def _summary_columns(y: np.ndarray, p: np.ndarray, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` evenly spaced usable voxels (checked in blocks)."""
    n, n_voxels = y.shape
    candidates = np.unique(np.linspace(0, n_voxels - 1, min(n_voxels, 4 * limit)).astype(int))
    ok = np.zeros(len(candidates), dtype=bool)
    for cols in _voxel_blocks(n, len(candidates)):
        idx = candidates[cols]
        ok[cols] = (_columns_ok(np.asarray(y[:, idx], dtype=np.float64))
                    & _columns_ok(np.asarray(p[:, idx], dtype=np.float64)))
    usable = candidates[ok]
    if len(usable) > limit:
        usable = usable[np.unique(np.linspace(0, len(usable) - 1, limit).astype(int))]
    return usable


def _lost_variance(yz: np.ndarray, pz: np.ndarray, segments: Sequence[tuple[int, int]],
                   story_lags: Sequence[int], lengths: np.ndarray) -> np.ndarray:
    """Fraction of the null variance of r that shuffling blocks of each length misses -> (len(lengths),).

    yz, pz: (n, w) standardised voxels. Per story g and lag k, the product of the voxel means
    of ``S_Y(k)`` and of ``S_P(k)`` (lagged sums within the story, centred there) estimates
    ``(n_g - k)^2 a(k) b(k)``, a and b the typical autocovariances of the centred series.
    Averaging over voxels before multiplying matters: within a voxel where P predicts Y, S_Y
    and S_P are correlated and their product is inflated at every lag (measured: averaging
    products gave 10-TR blocks on null data but 287-TR blocks at r = 0.2, phi = 0.3, 3000 TRs).
    The null variance of the observed cross-product is
    ``sum_{|k| <= M_g} (n_g - |k|) a b`` (as in the effective-dof test); the block-shuffled
    null keeps only pairs inside a block, ``floor(n_g / L) sum_{|k| < L} (L - |k|) a b``
    (leftover TRs stay fixed and add no null variance).
    """
    full = 0.0
    retained = np.zeros(len(lengths))
    for (start, stop), lag in zip(segments, story_lags, strict=True):
        size = stop - start
        products = (_lagged_sums(yz[start:stop], [(0, size)], lag).mean(axis=1)
                    * _lagged_sums(pz[start:stop], [(0, size)], lag).mean(axis=1))  # (lag + 1,)
        k = np.arange(lag + 1)
        full += products[0] / size + 2.0 * (products[1:] / (size - k[1:])).sum()
        u = products / (size - k) ** 2  # a(k) b(k)
        first = np.concatenate([[0.0], np.cumsum(u[1:])])  # sum_{1..j} u
        second = np.concatenate([[0.0], np.cumsum(k[1:] * u[1:])])  # sum_{1..j} k u
        j = np.minimum(lengths - 1, lag)
        within = lengths * u[0] + 2.0 * (lengths * first[j] - second[j])
        retained += (size // lengths) * within
    return 1.0 - retained / full if full > 0 else np.zeros(len(lengths))


def _lost_variance_of(y: np.ndarray, p: np.ndarray, segments: Sequence[tuple[int, int]], length: int) -> float:
    """Estimated null-variance fraction lost by shuffling ``length``-TR blocks (ACF_SUMMARY_VOXELS voxels)."""
    columns = _summary_columns(y, p, ACF_SUMMARY_VOXELS)
    if len(columns) == 0:
        return 0.0
    yz, pz, _ = _standardised(y[:, columns], p[:, columns])
    return float(_lost_variance(yz, pz, segments, _story_max_lags(segments, None), np.array([length]))[0])


def predicted_false_positive_rate(lost_variance: float) -> float:
    """False-positive rate at a nominal one-sided 5 % when the null variance is too small by ``lost_variance``.

    Normal approximation: the permutation critical value is ``sqrt(1 - lost)`` times the true one.
    """
    return float(special.ndtr(-_Z_95 * math.sqrt(max(1.0 - lost_variance, 0.0))))


def choose_block_length(Y: Any, P: Any, tr_s: float = 2.0, groups: Any = None, min_block_s: float = 20.0,
                        retained_variance: float = 0.95, rule: str = "retained_variance",
                        acf_threshold: float = 0.1) -> tuple[int, dict]:
    """Block length (TRs) for block permutation, from the data -> (block_length, recorded rule dict).

    Uses at most ACF_SUMMARY_VOXELS evenly spaced usable voxels. ``rule="retained_variance"``
    (default): the shortest L whose block shuffling keeps at least ``retained_variance`` (0.95)
    of the null variance of r, from the voxel-averaged lagged sums of Y and of P within
    stories (see :func:`_lost_variance`). ``rule="acf"``: the first lag at which both the median (over voxels) sample
    autocorrelations of Y and of P fall below ``acf_threshold``. Either way the result is at
    least ``ceil(min_block_s / tr_s)`` TRs (the floor wins) and otherwise at most the length
    that leaves MIN_BLOCKS whole blocks (the cap; the recorded ``estimated_retained_variance``
    and ``predicted_false_positive_rate_at_5pct`` then say how liberal the test is). Units:
    tr_s and min_block_s in seconds.
    """
    y, p = _pair(Y, P)
    n = y.shape[0]
    segments = _segments(groups, n)
    if not tr_s > 0 or not min_block_s >= 0:
        raise InputError(f"tr_s must be > 0 and min_block_s >= 0 seconds; got tr_s={tr_s}, min_block_s={min_block_s}.")
    if not 0 < retained_variance < 1:
        raise InputError(f"retained_variance must be between 0 and 1 (e.g. 0.9); got {retained_variance}.")
    if rule not in ("retained_variance", "acf"):
        raise InputError(f"rule must be 'retained_variance' or 'acf'; got {rule!r}.")
    sizes = np.array([stop - start for start, stop in segments])
    columns = _summary_columns(y, p, ACF_SUMMARY_VOXELS)
    if len(columns) == 0:
        raise InputError("every voxel of Y or P is constant or holds NaN/inf; no block length can be chosen.")
    yz, pz, _ = _standardised(y[:, columns], p[:, columns])
    story_lags = _story_max_lags(segments, None)
    candidates = np.arange(1, int(sizes.max()) + 1)
    lost = _lost_variance(yz, pz, segments, story_lags, candidates)
    acf_lag = max(1, int(np.median(sizes)) // 2)
    acf_y = np.median(_acf_from_sums(_lagged_sums(yz, segments, acf_lag)), axis=1)
    acf_p = np.median(_acf_from_sums(_lagged_sums(pz, segments, acf_lag)), axis=1)
    if rule == "retained_variance":
        meets = np.flatnonzero(lost <= 1.0 - retained_variance)
    else:
        meets = np.flatnonzero((acf_y[1:] < acf_threshold) & (acf_p[1:] < acf_threshold))
    rule_reached = len(meets) > 0
    rule_lag = int(candidates[meets[0]]) if rule_reached else int(candidates[-1])
    floor = max(1, int(math.ceil(min_block_s / tr_s - 1e-9)))
    # Cap: the longest length that still leaves MIN_BLOCKS whole blocks (never below the floor).
    n_whole = (sizes[None, :] // candidates[:, None]).sum(axis=1)
    enough = candidates[n_whole >= MIN_BLOCKS]
    cap = max(floor, int(enough[-1]) if len(enough) else 1)
    length = min(max(rule_lag, floor), cap)
    lost_at_length = float(_lost_variance(yz, pz, segments, story_lags, np.array([length]))[0])
    info = {
        "rule": rule, "tr_s": float(tr_s), "min_block_s": float(min_block_s), "floor_trs": floor,
        "rule_lag": rule_lag, "rule_reached": bool(rule_reached), "cap_trs": int(cap), "min_blocks": MIN_BLOCKS,
        "n_voxels_summarised": int(len(columns)),
        "median_lag1_autocorrelation_Y": float(acf_y[1]), "median_lag1_autocorrelation_P": float(acf_p[1]),
        "estimated_retained_variance": 1.0 - lost_at_length,
        "predicted_false_positive_rate_at_5pct": predicted_false_positive_rate(lost_at_length),
    }
    if rule == "retained_variance":
        info["target_retained_variance"] = float(retained_variance)
    else:
        info["acf_threshold"] = float(acf_threshold)
    return length, info


# --------------------------------------------------------------------------------------
# Block permutation
# --------------------------------------------------------------------------------------
def _block_starts(segments: Sequence[tuple[int, int]], length: int) -> np.ndarray:
    """First TR of every whole block, blocks aligned at each story's start -> (n_blocks,)."""
    starts = [np.arange(start, stop - length + 1, length) for start, stop in segments]
    return np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)


def _block_orders(n_blocks: int, n_permutations: int, seed: int) -> tuple[np.ndarray, bool]:
    """(n_orders, n_blocks) block orders: all of them when n_blocks! <= n_permutations, else random."""
    if math.factorial(min(n_blocks, 20)) <= n_permutations:
        return np.array(list(itertools.permutations(range(n_blocks))), dtype=np.int64), True
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((n_permutations, n_blocks)), axis=1), False


def _permutation_pass(y_all: np.ndarray, p_all: np.ndarray, starts: np.ndarray, length: int,
                      orders: np.ndarray, alternative: str, scale: Optional[np.ndarray] = None) -> tuple[np.ndarray, ...]:
    """r (v,), exceedance counts (v,), usable mask (v,), null max (n_orders,), null histogram.

    scale: (v,) multiplies each voxel's null r (the square root of its variance factor).
    """
    n, n_voxels = y_all.shape
    n_blocks = len(starts)
    in_block = (starts[:, None] + np.arange(length)[None, :])  # (n_blocks, L) TR indices
    fixed = np.ones(n, dtype=bool)
    fixed[in_block.reshape(-1)] = False
    width = max(1, min(COLUMN_BLOCK_ELEMENTS // n, PERMUTATION_BATCH_ELEMENTS // (n_blocks * n_blocks)))
    r = np.zeros(n_voxels)
    counts = np.zeros(n_voxels, dtype=np.int64)
    ok_all = np.zeros(n_voxels, dtype=bool)
    null_max = np.full(len(orders), -np.inf)
    histogram = np.zeros(len(NULL_HISTOGRAM_EDGES) - 1, dtype=np.int64)
    rows = np.arange(n_blocks)
    for v0 in range(0, n_voxels, width):
        cols = slice(v0, min(v0 + width, n_voxels))
        yz, pz, ok = _standardised(y_all[:, cols], p_all[:, cols])
        observed = (yz * pz).sum(axis=0)  # n * r
        base = (yz[fixed] * pz[fixed]).sum(axis=0)
        yb = np.moveaxis(yz[in_block], 2, 0)  # (w, n_blocks, L)
        pb = np.moveaxis(pz[in_block], 2, 0)
        cross = np.matmul(yb, np.swapaxes(pb, 1, 2))  # (w, i, j): Y block i against P block j
        tol = 1e-9 * n
        batch = max(1, PERMUTATION_BATCH_ELEMENTS // (cross.shape[0] * n_blocks))
        for o0 in range(0, len(orders), batch):
            chosen = orders[o0:o0 + batch]
            null = cross[:, rows[None, :], chosen].sum(axis=2) + base[:, None]  # (w, batch): n * null r
            if scale is not None:
                null = null * scale[cols][:, None]
            null = np.where(ok[:, None], null, 0.0)
            if alternative == "two-sided":
                counts[cols] += (np.abs(null) >= np.abs(observed)[:, None] - tol).sum(axis=1)
                summary = np.abs(null) / n
            else:
                counts[cols] += (null >= observed[:, None] - tol).sum(axis=1)
                summary = null / n
            if ok.any():
                null_max[o0:o0 + batch] = np.maximum(null_max[o0:o0 + batch], summary[ok].max(axis=0))
                histogram += np.histogram(np.clip(summary[ok], -1.0, 1.0), bins=NULL_HISTOGRAM_EDGES)[0]
        r[cols] = np.clip(observed / n, -1.0, 1.0)
        ok_all[cols] = ok
    return r, counts, ok_all, null_max, histogram


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------
def significance(Y: Any, P: Any, test: str = "effective_dof", alternative: str = "greater", *,
                 groups: Any = None, tr_s: float = 2.0, block_length: Optional[int] = None,
                 min_block_s: float = 20.0, retained_variance: float = 0.95, n_permutations: int = 1000,
                 seed: int = 0, neff_method: str = "bartlett", max_lag: Optional[int] = None,
                 variance_factor: Any = None) -> SignificanceResult:
    """p-values for the Pearson r of each column of Y (n, v) with the same column of P (n, v).

    test: one of :data:`TESTS` (see the module docstring for what each assumes);
    alternative: ``"greater"`` (H1: r > 0, default) or ``"two-sided"``; groups: (n,) story
    label per TR for pooled cross-validated predictions (autocorrelations and blocks stay
    within stories); tr_s: TR in seconds. Block permutation: ``block_length`` in TRs (None:
    chosen from the data, :func:`choose_block_length` with ``min_block_s``,
    ``retained_variance``), ``n_permutations``, ``seed``. Effective dof: ``neff_method``
    ("bartlett" or "lag1"), ``max_lag`` (TRs; None: 3/4 of each story's length).
    variance_factor: (v,) or scalar >= 1, the null variance of r is that many times what the
    test estimates with P held fixed: pooled cross-validated predictions, whose folds were
    trained on each other's held-out data (see :mod:`encoding_core.models.cv_dependence`). The
    effective-dof test divides ``n_eff - 1`` by it; block permutation compares the observed r
    with the permutation null scaled by its square root; the textbook t-test ignores it.
    Returns a :class:`SignificanceResult`; its ``settings`` record every choice and warning.
    """
    if test not in TESTS:
        raise InputError(f"test must be one of {TESTS}; got {test!r}.")
    _check_alternative(alternative)
    y_all, p_all = _pair(Y, P)
    n, n_voxels = y_all.shape
    segments = _segments(groups, n)
    settings: dict[str, Any] = {"test": test, "alternative": alternative, "n_trs": int(n), "n_voxels": int(n_voxels),
                                "n_stories": len(segments), "warnings": []}
    factor = _variance_factor(variance_factor, n_voxels)
    if factor is not None and test != "parametric_iid":
        settings["variance_factor"] = {"median": float(np.median(factor)), "min": float(factor.min()),
                                       "max": float(factor.max()), "reason": "dependence between cross-validation "
                                       "folds (each fold's model trained on the other folds' held-out data)"}
    if test == "block_permutation":
        result, n_bad = _block_permutation(y_all, p_all, segments, groups, alternative, settings, tr_s=tr_s,
                                    block_length=block_length, min_block_s=min_block_s,
                                    retained_variance=retained_variance, n_permutations=n_permutations, seed=seed,
                                    factor=factor)
    else:
        result, n_bad = _parametric(y_all, p_all, segments, test, alternative, settings, neff_method=neff_method,
                                    max_lag=max_lag, factor=factor if test == "effective_dof" else None)
    settings["n_unusable_voxels"] = n_bad
    if n_bad:
        _warn(settings, f"{n_bad} of {n_voxels} voxels are constant or hold NaN/inf in Y or P; their r is 0 and "
                        "p is 1.")
    return result


def _variance_factor(value: Any, n_voxels: int) -> Optional[np.ndarray]:
    """The null-variance factor as a (v,) float64 array (None when not given); refuses values below 0 or NaN."""
    if value is None:
        return None
    factor = np.broadcast_to(np.asarray(value, dtype=np.float64), (n_voxels,)).copy()
    if not np.all(np.isfinite(factor)) or np.any(factor <= 0):
        raise InputError("variance_factor must be positive and finite (one value, or one per voxel); got "
                         f"min {np.nanmin(factor) if factor.size else 'n/a'}.")
    return factor


def _warn(settings: dict, message: str) -> None:
    settings["warnings"].append(message)
    logger.warning("significance: %s", message)


def _parametric(y_all: np.ndarray, p_all: np.ndarray, segments: list, test: str, alternative: str,
                settings: dict, neff_method: str, max_lag: Optional[int],
                factor: Optional[np.ndarray] = None) -> tuple[SignificanceResult, int]:
    """The t-tests (effective_dof, parametric_iid) -> (result, number of unusable voxels)."""
    n, n_voxels = y_all.shape
    corrected = test == "effective_dof"
    if corrected:
        neff_method, story_lags = _check_neff_settings(neff_method, max_lag, segments)
    r = np.zeros(n_voxels)
    n_eff = np.full(n_voxels, float(n))
    ok_all = np.zeros(n_voxels, dtype=bool)
    lag1 = {"Y": [], "P": []}
    between = np.zeros(n_voxels)
    for cols in _voxel_blocks(n, n_voxels, per_column=4):
        yz, pz, ok = _standardised(y_all[:, cols], p_all[:, cols])
        r[cols] = np.clip((yz * pz).sum(axis=0) / n, -1.0, 1.0)
        ok_all[cols] = ok
        if corrected:
            block_neff = _neff_block(yz, pz, segments, neff_method, story_lags)
            if factor is not None:  # Var(r) = (n_eff - 1)^-1 grows by the factor
                block_neff = 1.0 + (block_neff - 1.0) / factor[cols]
            n_eff[cols] = np.where(ok, block_neff, n)
            if len(segments) > 1:  # share of Y's variance in its story means (0 when z-scored per story)
                means = np.stack([yz[a:b].mean(axis=0) * math.sqrt(b - a) for a, b in segments])
                between[cols] = (means * means).sum(axis=0) / n
        else:  # record how autocorrelated the data are, so the label's assumption can be judged
            for name, values in (("Y", yz), ("P", pz)):
                lag1[name].append(_acf_from_sums(_lagged_sums(values, segments, 1))[1][ok])
    if corrected:
        raw = n_eff.copy()
        n_eff = np.clip(n_eff, 3.0, n)
        usable = n_eff[ok_all] if ok_all.any() else np.array([float(n)])
        settings.update({
            "neff_method": neff_method,
            "max_lag": int(max(story_lags)) if neff_method == "bartlett" else 1,
            "max_lag_rule": ("user" if max_lag is not None else f"{MAX_LAG_FRACTION:g} of each story's length")
            if neff_method == "bartlett" else "lag 1 only",
            "n_eff": {"median": float(np.median(usable)), "min": float(usable.min()),
                      "p05": float(np.percentile(usable, 5)), "p95": float(np.percentile(usable, 95)),
                      "max": float(usable.max())},
            "n_voxels_n_eff_at_floor": int(((raw < 3.0) & ok_all).sum()),
        })
        if len(segments) > 1:
            share = float(np.median(between[ok_all])) if ok_all.any() else 0.0
            settings["median_between_story_share_of_Y_variance"] = share
            if share > 0.05:
                _warn(settings, f"{100 * share:.0f} % of Y's variance (median voxel) lies in differences between "
                                "story means, which this test does not model. "
                                "Z-score Y within each story (the pipeline does) before testing pooled predictions.")
        median_dof = max(float(np.median(usable)) - 2.0, 1.0)
        t_needed = float(special.stdtrit(median_dof, 0.95))
        settings["r_needed_for_p05_at_median_n_eff"] = t_needed / math.sqrt(median_dof + t_needed ** 2)
        if settings["r_needed_for_p05_at_median_n_eff"] > 0.5:
            _warn(settings, f"the median effective sample size is {np.median(usable):.1f} of {n} TRs: Y and P are so "
                            f"smooth for this length that a typical voxel needs r >= "
                            f"{settings['r_needed_for_p05_at_median_n_eff']:.2f} for one-sided p < 0.05 (little "
                            "power). Use a longer test set (more stories) if you can.")
        if settings["n_voxels_n_eff_at_floor"]:
            _warn(settings, f"{settings['n_voxels_n_eff_at_floor']} voxels have fewer than 3 effective samples; their "
                            "n_eff is set to 3 (1 degree of freedom), which may be optimistic for them.")
    else:
        settings["median_lag1_autocorrelation"] = {
            name: float(np.median(np.concatenate(v))) if sum(map(len, v)) else 0.0 for name, v in lag1.items()}
    p = np.where(ok_all, _t_pvalues(r, n_eff - 2.0, alternative), 1.0)
    return SignificanceResult(r=r, p_values=p, settings=settings, usable=ok_all), int((~ok_all).sum())


def _block_permutation(y_all: np.ndarray, p_all: np.ndarray, segments: list, groups: Any, alternative: str,
                       settings: dict, tr_s: float, block_length: Optional[int], min_block_s: float,
                       retained_variance: float, n_permutations: int, seed: int,
                       factor: Optional[np.ndarray] = None) -> tuple[SignificanceResult, int]:
    """The block permutation test -> (result, number of unusable voxels)."""
    n, n_voxels = y_all.shape
    if int(n_permutations) != n_permutations or n_permutations < 1:
        raise InputError(f"n_permutations must be a whole number >= 1; got {n_permutations}.")
    n_permutations = int(n_permutations)
    if block_length is None:
        length, rule = choose_block_length(y_all, p_all, tr_s=tr_s, groups=groups, min_block_s=min_block_s,
                                           retained_variance=retained_variance)
        settings.update({"block_length": length, "block_length_source": "data", "block_rule": rule})
        if not rule["rule_reached"] or rule["estimated_retained_variance"] < retained_variance:
            _warn(settings, f"{length}-TR blocks keep only about {100 * rule['estimated_retained_variance']:.0f} % "
                            f"of the null variance of r (target {100 * retained_variance:.0f} %): Y and P are too "
                            f"smooth for {n} TRs, so block permutation is anti-conservative here (predicted "
                            f"false-positive rate about {100 * rule['predicted_false_positive_rate_at_5pct']:.1f} % "
                            "at 5 %). Prefer "
                            "test='effective_dof'.")
    else:
        if int(block_length) != block_length or block_length < 1:
            raise InputError(f"block_length must be a positive whole number of TRs (or None to choose it from the "
                             f"data); got {block_length}.")
        length = int(block_length)
        lost = _lost_variance_of(y_all, p_all, segments, length)
        settings.update({"block_length": length, "block_length_source": "user", "block_rule": {
            "rule": "user", "estimated_retained_variance": 1.0 - lost,
            "predicted_false_positive_rate_at_5pct": predicted_false_positive_rate(lost)}})
        if lost > 0.1:
            _warn(settings, f"{length}-TR blocks keep only about {100 * (1 - lost):.0f} % of the null variance of r, "
                            f"so block permutation is anti-conservative here (predicted false-positive rate about "
                            f"{100 * predicted_false_positive_rate(lost):.1f} % at 5 %). Use block_length=None (chosen "
                            "from the data) or test='effective_dof'.")
    settings["tr_s"] = float(tr_s)
    starts = _block_starts(segments, length)
    n_blocks = len(starts)
    if n_blocks < 2:
        raise InputError(f"{length}-TR blocks leave {n_blocks} whole block(s) in {n} TRs"
                         f"{' (blocks stay within stories)' if len(segments) > 1 else ''}; block permutation needs "
                         f"at least 2. Use test='effective_dof', a shorter block_length or a longer test set.")
    n_orders_possible = math.factorial(min(n_blocks, 20))
    smallest_p = 1.0 / min(n_orders_possible, n_permutations + 1)
    if smallest_p > 0.05:
        raise InputError(f"{n_blocks} blocks of {length} TRs in {n} TRs give only {n_orders_possible} block orders, so "
                         f"no p-value can fall below {smallest_p:.3f}: block permutation cannot test at 5 % here. Use "
                         f"test='effective_dof' (or, knowingly, a shorter block_length / min_block_s).")
    orders, exhaustive = _block_orders(n_blocks, n_permutations, seed)
    r, counts, ok, null_max, histogram = _permutation_pass(y_all, p_all, starts, length, orders, alternative,
                                                           None if factor is None else np.sqrt(factor))
    if exhaustive:  # the identity order is among the orders: exact randomisation p-value
        p = counts / len(orders)
    else:
        p = (1.0 + counts) / (1.0 + len(orders))
    p = np.where(ok, np.clip(p, 0.0, 1.0), 1.0)
    settings.update({"n_blocks": int(n_blocks), "n_permutations": int(len(orders)), "exhaustive": bool(exhaustive),
                     "seed": int(seed), "smallest_possible_p": float(smallest_p if not exhaustive else 1 / len(orders)),
                     "fixed_trs": int(n - n_blocks * length), "blocks_within_stories": len(segments) > 1})
    # BH at q = 0.05 over m voxels can accept k voxels only if smallest_p <= 0.05 k / m.
    settings["fewest_fdr_discoveries_at_q05"] = int(math.ceil(settings["smallest_possible_p"] * n_voxels / 0.05 - 1e-9))
    if settings["fewest_fdr_discoveries_at_q05"] > max(1, 0.01 * n_voxels):
        _warn(settings, f"the smallest possible p-value is {settings['smallest_possible_p']:.2g}, so "
                        f"Benjamini-Hochberg at q = 0.05 over {n_voxels} voxels can only accept voxels when at least "
                        f"{settings['fewest_fdr_discoveries_at_q05']} are significant together; raise n_permutations "
                        "or use test='effective_dof'.")
    return (SignificanceResult(r=r, p_values=p, settings=settings, null_max_r=null_max, null_histogram=histogram,
                               usable=ok), int((~ok).sum()))


# --------------------------------------------------------------------------------------
# Labels and the fallback threshold
# --------------------------------------------------------------------------------------
def _side_text(alternative: str) -> str:
    return "one-sided r > 0" if alternative == "greater" else "two-sided"



def planned_settings(test: str = "effective_dof", alternative: str = "greater", block_length: Optional[int] = None,
                     min_block_s: float = 20.0, n_permutations: int = 1000) -> dict:
    """The settings of a test before it runs (for a config, an exported script) -> dict for :func:`describe_test`.

    Marked ``"planned": True``; a run records the full settings instead (block length used,
    effective sample sizes ...).
    """
    if test not in TESTS:
        raise InputError(f"test must be one of {TESTS}; got {test!r}.")
    _check_alternative(alternative)
    return {"test": test, "alternative": alternative, "planned": True, "block_length": block_length,
            "block_length_source": "data" if block_length is None else "user", "min_block_s": float(min_block_s),
            "n_permutations": int(n_permutations)}


def _factor_text(settings: dict, what: str) -> str:
    factor = settings.get("variance_factor")
    if not factor:
        return ""
    scale = factor["median"] if what == "null variance" else math.sqrt(factor["median"])
    return f"; {what} x {scale:.2f} (median) for the dependence between cross-validation folds"


def describe_test(settings: dict) -> str:
    """The human label of a test from its recorded ``settings`` (as in SignificanceResult.settings,
    or :func:`planned_settings` before a run).

    e.g. "block permutation (12-TR blocks, chosen from the data), one-sided r > 0, 1000 permutations".
    """
    test = settings.get("test")
    side = _side_text(settings.get("alternative", "greater"))
    planned = bool(settings.get("planned"))
    if test == "block_permutation":
        if planned:
            blocks = (f"blocks chosen from the data, at least {settings.get('min_block_s', 20.0):g} s"
                      if settings.get("block_length") is None else f"{settings['block_length']}-TR blocks, set by the user")
            return f"block permutation ({blocks}), {side}, {settings.get('n_permutations', 1000)} permutations"
        source = "chosen from the data" if settings.get("block_length_source") == "data" else "set by the user"
        within = ", within stories" if settings.get("blocks_within_stories") else ""
        count = (f"all {settings['n_permutations']} block orders" if settings.get("exhaustive")
                 else f"{settings['n_permutations']} permutations")
        return (f"block permutation ({settings['block_length']}-TR blocks, {source}{within}"
                f"{_factor_text(settings, 'null r')}), {side}, {count}")
    if test == "effective_dof":
        if settings.get("neff_method") == "lag1":
            how = "lag-1 autocorrelations, n(1 - rYrP)/(1 + rYrP)"
        elif planned:
            how = "finite-sample Bartlett variance over lags within each story"
        else:
            how = f"finite-sample Bartlett variance over lags up to {settings['max_lag']}"
        if planned:
            return f"t-test with autocorrelation-corrected degrees of freedom ({how}), {side}"
        median = settings["n_eff"]["median"]
        return (f"t-test with autocorrelation-corrected degrees of freedom ({how}"
                f"{_factor_text(settings, 'null variance')}; median effective sample size "
                f"{median:.0f} of {settings['n_trs']} TRs), {side}")
    if test == "parametric_iid":
        dof = "n - 2" if planned else settings["n_trs"] - 2
        return (f"t-test assuming independent TRs ({dof} degrees of freedom; ignores "
                f"autocorrelation, so optimistic for fMRI), {side}")
    raise InputError(f"settings do not describe a known test (test={test!r}); expected one of {TESTS}.")


def fallback_threshold(result: SignificanceResult, statistic: str = "max", percentile: float = 95.0) -> dict:
    """A threshold on r from the permutation null, for when no voxel survives FDR -> recorded rule dict.

    statistic="max" (default): the ``percentile`` of the maximum null r over voxels, one value
    per block order; voxels above it are significant with family-wise error rate
    ``1 - percentile/100`` (Nichols & Holmes 2002), 5 % by default. statistic="pooled": the
    ``percentile`` of all null r of all voxels (an uncorrected per-voxel threshold, e.g. 99.9 for
    p < 0.001). Uses |r| when the test was two-sided. The dict holds ``r_threshold``, the
    rule and ``label`` (see :func:`describe_threshold`). Needs a block-permutation result.
    """
    if result.null_max_r is None or result.null_histogram is None:
        raise InputError("fallback_threshold needs the permutation null: run significance(..., "
                         "test='block_permutation') on the same Y and P first.")
    if statistic not in THRESHOLD_STATISTICS:
        raise InputError(f"statistic must be one of {THRESHOLD_STATISTICS}; got {statistic!r}.")
    if not 0 < percentile < 100:
        raise InputError(f"percentile must be between 0 and 100 (e.g. 95); got {percentile}.")
    settings = result.settings
    rule = {"statistic": statistic, "percentile": float(percentile), "alternative": settings["alternative"],
            "block_length": settings["block_length"], "n_permutations": settings["n_permutations"],
            "n_voxels": settings["n_voxels"], "warnings": []}
    if statistic == "max":
        values = result.null_max_r[np.isfinite(result.null_max_r)]
        if len(values) == 0:
            raise InputError("the permutation null holds no usable voxel; no threshold can be derived.")
        threshold = float(np.quantile(values, percentile / 100.0, method="higher"))
        needed = max(MIN_PERMUTATIONS_FOR_MAX_THRESHOLD, int(math.ceil(10 / (1 - percentile / 100.0))))
        if len(values) < needed:
            rule["warnings"].append(f"only {len(values)} block orders for a {percentile:g}th percentile; the threshold "
                                    f"is coarse (use at least {needed}).")
    else:
        counts = result.null_histogram
        total = counts.sum()
        if total == 0:
            raise InputError("the permutation null holds no usable voxel; no threshold can be derived.")
        cumulative = np.cumsum(counts) / total
        bin_index = int(np.searchsorted(cumulative, percentile / 100.0, side="left"))
        threshold = float(NULL_HISTOGRAM_EDGES[min(bin_index + 1, len(NULL_HISTOGRAM_EDGES) - 1)])  # bin's upper edge
    rule["r_threshold"] = threshold
    for message in rule["warnings"]:
        logger.warning("fallback_threshold: %s", message)
    rule["label"] = describe_threshold(rule)
    return rule


def describe_threshold(rule: dict) -> str:
    """e.g. "r >= 0.23 (95th percentile of the block-permutation null of the maximum r over 20484 voxels; ...)"."""
    symbol = "r" if rule["alternative"] == "greater" else "|r|"
    pct = f"{rule['percentile']:g}"
    suffix = "th" if not pct.endswith(("1", "2", "3")) or pct.endswith(("11", "12", "13")) else {
        "1": "st", "2": "nd", "3": "rd"}[pct[-1]]
    what = (f"the maximum {symbol} over {rule['n_voxels']} voxels" if rule["statistic"] == "max"
            else f"{symbol} pooled over all voxels")
    return (f"{symbol} \u2265 {rule['r_threshold']:.2f} ({pct}{suffix} percentile of the block-permutation null of "
            f"{what}; {rule['block_length']}-TR blocks, {rule['n_permutations']} permutations)")


# --------------------------------------------------------------------------------------
# BH-FDR (unchanged from encoding_core.stats.significance)
# --------------------------------------------------------------------------------------
def fdr_bh(p: Any, q: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg FDR at level q -> (significant_mask (v,), corrected_p (v,)).

    corrected_p are the BH-adjusted p-values (as statsmodels ``fdrcorrection``); a voxel is
    significant when its adjusted p <= q. NaN p-values count as 1.
    """
    if not 0 < float(q) < 1:
        raise InputError(f"q (the false discovery rate) must be between 0 and 1; got {q}.")
    pv = np.nan_to_num(np.asarray(p, dtype=np.float64).reshape(-1), nan=1.0)
    m = len(pv)
    if m == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    order = np.argsort(pv, kind="mergesort")
    scaled = pv[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    corrected = np.empty(m)
    corrected[order] = adjusted_sorted
    return corrected <= q, corrected
