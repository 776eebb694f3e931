"""The NaN / Inf policy shared by every assembly loader, and small option checks.

Inf anywhere is refused. A column (voxel/vertex) that is NaN in *every* TR of a story
(typically outside the brain or medial wall) is set to 0, a warning is logged and the
count is recorded in ``assembly.provenance["nan_columns_zeroed"][story]``. NaN scattered
inside otherwise valid columns is refused, naming the story and the count, because
silently zeroing single samples would bias the fit.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from encoding_core.common.errors import AssemblyFormatError, InputError

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


def clean_brain_data(data: np.ndarray, story: str, source: PathLike,
                     what: str = "brain data") -> tuple[np.ndarray, int]:
    """Apply the NaN/Inf policy to ``data`` of shape (..., n_voxels).

    Returns ``(data, n_zeroed_columns)``: all-NaN columns set to 0 (in place when the
    array is writable). Raises AssemblyFormatError naming ``source`` and ``story`` for
    any Inf, or for NaN in columns that are not entirely NaN.
    """
    data = np.asarray(data)
    if data.dtype.kind != "f":
        raise AssemblyFormatError(f"{source}: {what} of story {story!r} has dtype {data.dtype}; "
                                  "it must be floating point.")
    n_inf = int(np.isinf(data).sum())
    if n_inf:
        raise AssemblyFormatError(f"{source}: {what} of story {story!r} contains {n_inf} infinite "
                                  "value(s); fix the preprocessing (Inf is never valid fMRI data).")
    nan = np.isnan(data)
    if not nan.any():
        return data, 0
    flat = nan.reshape(-1, data.shape[-1])
    whole_columns = flat.all(axis=0)
    scattered = int(flat[:, ~whole_columns].sum())
    if scattered:
        raise AssemblyFormatError(
            f"{source}: {what} of story {story!r} has {scattered} NaN value(s) scattered inside "
            f"otherwise valid columns ({int((flat.any(axis=0) & ~whole_columns).sum())} columns); "
            "only columns that are NaN in every TR (outside the brain) are accepted. Interpolate or "
            "mask those voxels before loading.")
    if not data.flags.writeable:
        data = data.copy()
    data[..., whole_columns] = 0.0
    n_zeroed = int(whole_columns.sum())
    logger.warning("%s: story %r has %d all-NaN column(s) in its %s; they were set to 0.",
                   source, story, n_zeroed, what)
    return data, n_zeroed


def record_zeroed_columns(provenance: dict[str, Any], story: str, n_zeroed: int) -> None:
    """Note in ``provenance["nan_columns_zeroed"]`` how many all-NaN columns a story had."""
    if n_zeroed:
        provenance.setdefault("nan_columns_zeroed", {})[story] = int(
            provenance.get("nan_columns_zeroed", {}).get(story, 0) + n_zeroed)


def optional_float(value: Optional[Any], name: str) -> Optional[float]:
    """Check an optional positive float option (e.g. ``tr=``)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}.") from None
    if not (np.isfinite(number) and number > 0):
        raise InputError(f"{name} must be a positive number of seconds, got {value!r}.")
    return number
