"""Feature-to-TR alignment: resample feature time series at the TR times.

Every method is one (n_trs, n_samples) weight matrix (sparse, banded) times the data, so
the work is a single sparse-dense product with no loop per TR or per feature column.

What a TR time ``t`` means, for every method: the **centre of the TR's acquisition
interval**; TR ``i`` covers ``[t_i - tr/2, t_i + tr/2)`` (``tr`` from ``tr=`` or the mean
spacing of ``tr_times``). ``rect`` averages that interval, ``average``/``sum``/``last``
aggregate the samples of that same interval, and ``lanczos``/``sinc`` are kernels centred
on ``t``: on a linear ramp every method but ``last`` returns ``t`` (the same centre of
mass; ``last`` returns the last sample before ``t + tr/2``). For LeBel data the TR times
are the TR midpoints, as in the reference (``encoding_core.assembly.lebel``).

Methods (names and defaults follow the reference's ``Downsampler``):

- ``rect`` (reference default): mean of the samples whose time lies in
  ``[t - tr/2, t + tr/2)`` around each TR time ``t``; 0 where no sample falls.
- ``lanczos``: Huth-lab ``lanczosinterp2D``; kernel
  ``L(x) = w sin(pi x) sin(pi x / w) / (pi x)^2`` with ``x = (t_tr - t_sample) * cutoff``,
  ``cutoff = cutoff_mult / tr``, ``L(0) = 1``, ``L = 0`` for ``|x| > w`` (``window`` = w lobes,
  default 3). Not renormalised (as the reference). ``rectify=True`` stacks the results for
  the negative and positive parts of the data (twice the columns).
- ``sinc``: Huth-lab ``sincinterp2D``; kernel ``2B sin(2 pi B t) / (2 pi B t)`` with
  ``B = cutoff_mult / tr``, zero for ``|t| > window / (2B)``, optionally causal (only samples
  at or before the TR time) and renormalised so each row sums to 1 (``renorm``, default).
- ``average`` / ``sum`` / ``last``: aggregate the samples of each TR interval given by
  ``split_indices``: ``split_indices[i]`` is the index of the first sample of TR ``i``, so TR
  ``i`` takes ``data[split_indices[i]:split_indices[i+1]]`` (the last TR takes the rest;
  samples before ``split_indices[0]`` are dropped). Without ``split_indices`` the
  intervals are the TR intervals above: ``searchsorted(data_times, tr_times - tr/2, "left")``,
  the last TR ending at ``t_last + tr/2`` (the convention of ``Story.split_indices``, which
  gives them for words by their start times). Empty intervals give 0. (The reference's
  ``average`` takes one TR label per sample, its ``legacy_*`` methods ``n_trs - 1`` boundaries;
  the reference pickle loader converts the latter to these.)

NaN in the features counts as 0. Times are in seconds; ``data_times`` need not be sorted.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import numpy as np
import scipy.sparse as sp

from encoding_core.common.errors import InputError

logger = logging.getLogger(__name__)

METHODS = ("rect", "lanczos", "sinc", "average", "sum", "last")
"""Supported downsampling methods."""

METHOD_PARAMS: dict[str, dict[str, Any]] = {
    "rect": {},
    "lanczos": {"window": 3, "cutoff_mult": 1.0, "rectify": False},
    "sinc": {"window": 1, "cutoff_mult": 1.0, "causal": False, "renorm": True},
    "average": {"split_indices": None},
    "sum": {"split_indices": None},
    "last": {"split_indices": None},
}
"""Keyword arguments each method accepts, with their defaults."""

LEGACY_METHODS = ("legacy_average", "legacy_sum", "legacy_last")
"""The reference's boundary-style methods: ``split_indices`` (n_trs - 1,) are the sample indices
where each TR after the first begins (``np.split`` convention, the LeBel pickles' values);
TR ``i`` aggregates its chunk (mean / sum / last row), empty chunks give 0; the output has
``len(split_indices) + 1`` rows whatever ``tr_times`` holds. ``Downsampler.downsample`` only."""

REFERENCE_PARAMS = frozenset({"split_indices", "window", "cutoff_mult", "rectify", "causal", "renorm",
                              "freqs", "sigma"})
"""Every keyword of the reference's methods. ``Downsampler.downsample`` drops those the chosen
method does not take (the reference's trainer always passes ``split_indices``), with a debug
line; any other unknown keyword is still an error."""


def lanczos_kernel(dt: np.ndarray, cutoff: float, window: int = 3) -> np.ndarray:
    """Lanczos weights for time offsets ``dt`` (seconds, TR time minus sample time).

    ``cutoff`` in Hz (1/TR times cutoff_mult); ``window`` is the number of lobes.
    """
    x = np.asarray(dt, dtype=np.float64) * cutoff
    with np.errstate(divide="ignore", invalid="ignore"):
        val = window * np.sin(np.pi * x) * np.sin(np.pi * x / window) / (np.pi ** 2 * x ** 2)
    val = np.where(x == 0, 1.0, val)
    return np.where(np.abs(x) > window, 0.0, val)


def sinc_kernel(dt: np.ndarray, cutoff: float, window: float = 1, causal: bool = False) -> np.ndarray:
    """Windowed sinc weights (before row renormalisation) for offsets ``dt`` in seconds."""
    t = np.asarray(dt, dtype=np.float64)
    val = 2 * cutoff * np.sin(2 * np.pi * cutoff * t) / (2 * np.pi * cutoff * t + 1e-20)
    val = np.where(t == 0, 2 * cutoff, val)
    val = np.where(np.abs(t) > window / (2 * cutoff), 0.0, val)
    if causal:
        val = np.where(t < 0, 0.0, val)
    return val


def _as_times(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a 1-D array of times in seconds; got {type(values).__name__}.") from None
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite times; every time must be a finite number of seconds.")
    return arr


def _tr_length(tr_times: np.ndarray, tr: Optional[float]) -> float:
    if tr is not None:
        if not tr > 0:
            raise InputError(f"tr must be a positive number of seconds; got {tr}.")
        return float(tr)
    if len(tr_times) < 2:
        raise InputError(
            "tr_times has fewer than 2 entries, so the TR length cannot be inferred; pass tr=<seconds>."
        )
    tr_len = float(np.mean(np.diff(tr_times)))
    if not tr_len > 0:
        raise InputError("tr_times must increase (mean spacing is not positive); check the TR times.")
    return tr_len


def _band_matrix(tr_times: np.ndarray, data_times: np.ndarray, lo_offset: float, hi_offset: float,
                 kernel: Callable[[np.ndarray], np.ndarray], left_closed_hi: bool = False) -> sp.csr_matrix:
    """Sparse (n_trs, n_samples) matrix of ``kernel(tr_time - sample_time)`` over a band.

    Row i covers the samples with time in ``[tr_times[i] + lo_offset, tr_times[i] + hi_offset]``
    (right end open when ``left_closed_hi``). ``data_times`` must be sorted.
    """
    lo = np.searchsorted(data_times, tr_times + lo_offset, side="left")
    hi = np.searchsorted(data_times, tr_times + hi_offset, side="left" if left_closed_hi else "right")
    counts = np.maximum(hi - lo, 0)
    rows = np.repeat(np.arange(len(tr_times)), counts)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    cols = starts + np.arange(counts.sum())
    vals = kernel(tr_times[rows] - data_times[cols]) if len(rows) else np.zeros(0)
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(tr_times), len(data_times)))


def _split_matrix(split_indices: np.ndarray, n_samples: int, method: str,
                  end: Optional[int] = None) -> sp.csr_matrix:
    """Sparse (n_trs, n_samples) matrix aggregating ``data[split[i]:split[i+1]]`` per TR.

    The last TR takes ``data[split[-1]:end]`` (``end`` defaults to ``n_samples``).
    """
    starts = np.clip(split_indices, 0, n_samples)
    last_end = n_samples if end is None else int(np.clip(end, 0, n_samples))
    ends = np.append(starts[1:], max(last_end, int(starts[-1])) if len(starts) else last_end)
    counts = np.maximum(ends - starts, 0)
    n_trs = len(starts)
    if method == "last":
        rows = np.flatnonzero(counts > 0)
        cols = ends[rows] - 1
        vals = np.ones(len(rows))
    else:
        rows = np.repeat(np.arange(n_trs), counts)
        cols = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        vals = np.ones(len(rows)) if method == "sum" else 1.0 / counts[rows]
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_trs, n_samples))


class Downsampler:
    """Reference-compatible downsampler: ``Downsampler().downsample(data, data_times, tr_times, method)``."""

    available_methods = list(METHODS) + list(LEGACY_METHODS)

    def get_method_params(self, method: str) -> dict[str, Any]:
        """The keyword arguments ``method`` accepts, with defaults."""
        if method in LEGACY_METHODS:
            return {"split_indices": None}
        _check_method(method)
        return dict(METHOD_PARAMS[method])

    def weight_matrix(self, data_times: Any, tr_times: Any, method: str = "rect", **kwargs: Any) -> sp.csr_matrix:
        """The sparse (n_trs, n_samples) matrix W such that ``downsample(data) = W @ data``.

        Columns follow the order of ``data_times`` as given (sorted or not).
        """
        _check_method(method)
        params = _check_kwargs(method, kwargs)
        data_times = _as_times(data_times, "data_times")
        tr_times = _as_times(tr_times, "tr_times")
        order = np.argsort(data_times, kind="stable")
        sorted_times = data_times[order]
        split_given = method in ("average", "sum", "last") and params.get("split_indices") is not None
        tr_len = None if split_given else _tr_length(tr_times, params.pop("tr", None))
        if method == "rect":
            weights = _band_matrix(tr_times, sorted_times, -tr_len / 2, tr_len / 2,
                                   lambda dt: np.ones_like(dt), left_closed_hi=True)
            counts = np.asarray(weights.sum(axis=1)).ravel()
            weights = sp.diags(np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)) @ weights
        elif method == "lanczos":
            window = _positive(params["window"], "window")
            cutoff = _positive(params["cutoff_mult"], "cutoff_mult") / tr_len
            reach = window / cutoff
            weights = _band_matrix(tr_times, sorted_times, -reach, reach,
                                   lambda dt: lanczos_kernel(dt, cutoff, window))
        elif method == "sinc":
            window = _positive(params["window"], "window")
            cutoff = _positive(params["cutoff_mult"], "cutoff_mult") / tr_len
            reach = window / (2 * cutoff)
            causal = bool(params["causal"])
            weights = _band_matrix(tr_times, sorted_times, -reach, 0.0 if causal else reach,
                                   lambda dt: sinc_kernel(dt, cutoff, window, causal))
            if params["renorm"]:
                sums = np.asarray(weights.sum(axis=1)).ravel()
                weights = sp.diags(np.where(sums != 0, 1.0 / np.where(sums != 0, sums, 1.0), 1.0)) @ weights
        else:
            split = params.get("split_indices")
            end = len(data_times)
            if split is None:
                if not np.all(np.diff(data_times) >= 0):
                    raise InputError(f"method={method!r} needs data_times in increasing order (or split_indices=).")
                split = np.searchsorted(data_times, tr_times - tr_len / 2, side="left")
                end = int(np.searchsorted(data_times, tr_times[-1] + tr_len / 2, side="left")) if len(tr_times) else 0
            split = np.asarray(split)
            if split.ndim != 1 or not np.issubdtype(split.dtype, np.integer) or np.any(np.diff(split) < 0):
                raise InputError(
                    f"split_indices for method={method!r} must be non-decreasing integer sample indices, one "
                    f"per TR (the first sample of each TR); got shape {split.shape}, dtype {split.dtype}."
                )
            weights = _split_matrix(split, len(data_times), method, end)
            return weights.tocsr()
        # Columns were built over sorted times; put them back in the caller's order.
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return weights.tocsr()[:, inverse]

    def downsample(self, data: Any, data_times: Any, tr_times: Any, method: str = "rect", **kwargs: Any) -> np.ndarray:
        """Resample ``data`` (n_samples, n_features) at ``tr_times`` -> (n_trs, n_features) float32.

        ``data_times`` (n_samples,) and ``tr_times`` (n_trs,) (the centres of the TRs) are in
        seconds. ``kwargs`` are the method's options (see :data:`METHOD_PARAMS`; ``tr=``
        overrides the TR length inferred from ``tr_times``). Options of the reference's other
        methods that this method does not take (e.g. ``split_indices`` with ``rect``) are
        ignored, as the reference does; other unknown options raise InputError.
        ``rectify=True`` (lanczos) returns 2 * n_features columns.
        ``legacy_average/legacy_sum/legacy_last``: see :data:`LEGACY_METHODS`.
        """
        values = _as_data(data)
        n_samples = values.shape[0]
        if method in LEGACY_METHODS:
            return _legacy_downsample(values, method, kwargs.get("split_indices"))
        kwargs = _drop_reference_extras(method, kwargs)
        times = _as_times(data_times, "data_times")
        if len(times) != n_samples:
            raise InputError(
                f"data has {n_samples} rows but data_times has {len(times)} entries; give one time per feature row."
            )
        weights = self.weight_matrix(times, tr_times, method, **kwargs)
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        if method == "lanczos" and kwargs.get("rectify", False):
            out = np.hstack([weights @ np.minimum(values, 0), weights @ np.maximum(values, 0)])
        else:
            out = weights @ values
        return np.asarray(out, dtype=np.float32)


def _drop_reference_extras(method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """kwargs without the reference's keywords that ``method`` does not take (logged at debug level)."""
    if method not in METHOD_PARAMS:
        return kwargs
    taken = set(METHOD_PARAMS[method]) | {"tr"}
    dropped = sorted(k for k in kwargs if k in REFERENCE_PARAMS and k not in taken)
    if dropped:
        logger.debug("Downsampling method %r does not use %s; ignored (as the reference does).", method, dropped)
    return {k: v for k, v in kwargs.items() if k not in dropped}


def _legacy_downsample(values: np.ndarray, method: str, split_indices: Any) -> np.ndarray:
    """The reference's legacy_* methods: aggregate ``np.split(values, split_indices)`` chunks."""
    if split_indices is None:
        raise InputError(f"method={method!r} needs split_indices= (the sample index where each TR after the "
                         "first begins, n_trs - 1 values).")
    split = np.asarray(split_indices).reshape(-1)
    if split.size and (not np.issubdtype(split.dtype, np.integer) or np.any(np.diff(split) < 0)):
        raise InputError(f"split_indices for method={method!r} must be non-decreasing integer sample indices; "
                         f"got dtype {split.dtype}.")
    starts = np.concatenate([[0], split]).astype(np.int64)
    weights = _split_matrix(starts, values.shape[0], method.removeprefix("legacy_"))
    return np.asarray(weights @ np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0), dtype=np.float32)


def downsample_kernel(method: str, tr: float, n_points: int = 601, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """The weight a sample gets as a function of its time relative to a TR, for plotting.

    Returns ``(t_seconds, weights)``, both (n_points,); ``t`` is sample time minus TR time
    (negative = before the TR). ``rect`` is drawn with height 1 (the mean divides by the
    sample count); ``average``/``sum`` cover the same TR interval ``[-tr/2, tr/2)``; ``last``
    is a spike at the end of that interval.
    """
    _check_method(method)
    params = _check_kwargs(method, kwargs)
    tr = _positive(tr, "tr")
    if method == "lanczos":
        window = _positive(params["window"], "window")
        cutoff = _positive(params["cutoff_mult"], "cutoff_mult") / tr
        reach = 1.25 * window / cutoff
        t = np.linspace(-reach, reach, n_points)
        return t, lanczos_kernel(-t, cutoff, window)
    if method == "sinc":
        window = _positive(params["window"], "window")
        cutoff = _positive(params["cutoff_mult"], "cutoff_mult") / tr
        reach = 1.25 * window / (2 * cutoff)
        t = np.linspace(-reach, reach, n_points)
        return t, sinc_kernel(-t, cutoff, window, bool(params["causal"]))
    t = np.linspace(-1.5 * tr, 1.5 * tr, n_points)
    if method == "rect":
        return t, ((t >= -tr / 2) & (t < tr / 2)).astype(np.float64)
    if method == "last":
        weights = np.zeros_like(t)
        weights[np.searchsorted(t, tr / 2, side="left") - 1] = 1.0
        return t, weights
    return t, ((t >= -tr / 2) & (t < tr / 2)).astype(np.float64)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise InputError(f"Unknown downsampling method {method!r}; choose one of {list(METHODS)}.")


def _check_kwargs(method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    allowed = dict(METHOD_PARAMS[method])
    allowed["tr"] = None  # every method: the TR length (s) instead of the mean spacing of tr_times
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise InputError(
            f"Downsampling method {method!r} does not take {unknown}; its options are {sorted(allowed)}."
        )
    allowed.update(kwargs)
    return allowed


def _positive(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a positive number; got {value!r}.") from None
    if not number > 0:
        raise InputError(f"{name} must be a positive number; got {value!r}.")
    return number


def _as_data(data: Any) -> np.ndarray:
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"data must be a numeric array (n_samples, n_features); got {type(data).__name__}.") from None
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise InputError(f"data must be 2-D (n_samples, n_features); got shape {values.shape}.")
    return values
