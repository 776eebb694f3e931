"""Per-story preparation of features and targets: FIR delays, trimming, z-scoring.

Units: delays, trimming bounds and lengths are in TRs (rows).
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from encoding_core.common.arrays import as_matrix
from encoding_core.common.errors import InputError, TrimmingMismatchError

logger = logging.getLogger(__name__)


def make_delayed(X: Any, delays: Iterable[int]) -> np.ndarray:
    """FIR expansion: stack copies of ``X`` (n_trs, p) shifted by each delay (TRs).

    Returns (n_trs, p * len(delays)) in X's float dtype, columns grouped by delay (all p
    columns for ``delays[0]`` first). Row t of the block for delay d is ``X[t - d]``, zero
    where ``t - d`` falls outside; negative delays shift the other way.
    """
    values = as_matrix(X, "X")
    raw = list(delays)
    if not raw:
        raise InputError("delays is empty; give at least one delay in TRs, e.g. [1, 2, 3, 4].")
    try:
        delay_list = [int(d) for d in raw]
    except (TypeError, ValueError):
        raise InputError(f"delays must be whole numbers of TRs; got {raw}.") from None
    if any(d != r for d, r in zip(delay_list, raw)):
        raise InputError(f"delays must be whole numbers of TRs; got {raw}.")
    n_trs, n_cols = values.shape
    dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64
    out = np.zeros((n_trs, n_cols * len(delay_list)), dtype=dtype)
    for block, delay in enumerate(delay_list):  # one slice copy per delay (a handful), not per row
        cols = slice(block * n_cols, (block + 1) * n_cols)
        if delay >= 0:
            if delay < n_trs:
                out[delay:, cols] = values[: n_trs - delay]
        elif -delay < n_trs:
            out[: n_trs + delay, cols] = values[-delay:]
    return out


def zscore(X: Any) -> np.ndarray:
    """Z-score each column of ``X`` (n_trs, p) over rows (population std, ddof=0).

    Returns float32 for float32 input, else float64. Zero-variance (constant) columns become
    0; NaN/inf entries are treated as 0 first, so the result never holds NaN.
    """
    values = as_matrix(X, "X")
    dtype = np.float32 if values.dtype == np.float32 else np.float64
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    # A column is constant when its spread is at rounding level relative to its magnitude.
    constant = std <= 1e-12 * np.maximum(np.abs(mean), 1.0)
    n_constant = int(constant.sum())
    if n_constant:
        logger.debug("zscore: %d of %d columns are constant; set to 0.", n_constant, values.shape[1])
    out = (values - mean) / np.where(constant, 1.0, std)
    out[:, constant] = 0.0
    return out.astype(dtype, copy=False)


def nan_to_zero(X: Any) -> np.ndarray:
    """Replace NaN and +/-inf by 0 (returns a new array, same shape and float dtype)."""
    arr = np.asarray(X)
    if not np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float64)
    return np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)


def trim(x: Any, start: Optional[int] = None, end: Optional[int] = None) -> Any:
    """Rows ``x[start:end]`` with Python slice semantics (None = open, negatives from the end)."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and (isinstance(value, bool) or int(value) != value):
            raise InputError(f"trim {name} must be a whole number of TRs or None; got {value!r}.")
    return x[slice(None if start is None else int(start), None if end is None else int(end))]


def _slice_text(start: Optional[int], end: Optional[int]) -> str:
    return f"[{0 if start is None else start}:{'None' if end is None else end}]"


def check_trimmed_lengths(story: str, n_features: int, n_targets: int,
                          keys_used: Sequence[tuple[str, Optional[int]]] | dict[str, Optional[int]]) -> None:
    """Raise TrimmingMismatchError if a story's trimmed features and targets differ in length.

    ``n_features`` / ``n_targets`` are row counts (TRs) after trimming. ``keys_used`` names
    the four trimming keys in effect and their values, features start/end first, then
    targets start/end, e.g. ``{"train_features_start": 10, "train_features_end": -5,
    "train_targets_start": 0, "train_targets_end": None}``.
    """
    if n_features == n_targets:
        return
    items = list(keys_used.items()) if isinstance(keys_used, dict) else list(keys_used)
    if len(items) != 4:
        raise InputError(
            f"keys_used must name 4 trimming keys (features start/end, targets start/end); got {items}."
        )
    (fs_key, fs), (fe_key, fe), (ts_key, ts), (te_key, te) = items
    diff = n_features - n_targets
    longer, shorter = ("features", "targets") if diff > 0 else ("targets", "features")
    if diff > 0:
        hint = (f"drop {diff} more feature row(s) (e.g. increase {fs_key} by {diff} or decrease {fe_key} by {diff}) "
                f"or keep {diff} more target row(s) (change {ts_key} or {te_key})")
    else:
        hint = (f"drop {-diff} more target row(s) (e.g. increase {ts_key} by {-diff} or decrease {te_key} by {-diff}) "
                f"or keep {-diff} more feature row(s) (change {fs_key} or {fe_key})")
    raise TrimmingMismatchError(
        f"Story {story!r}: features have {n_features} rows after {_slice_text(fs, fe)} ({fs_key}, {fe_key}), "
        f"targets have {n_targets} rows after {_slice_text(ts, te)} ({ts_key}, {te_key}); the {longer} are "
        f"{abs(diff)} row(s) longer than the {shorter}. To fix: {hint}."
    )
