"""Validation of numeric array inputs shared by preprocessing, ridge and statistics."""
from __future__ import annotations

from typing import Any

import numpy as np

from encoding_core.common.errors import InputError


def as_matrix(values: Any, name: str, allow_bool: bool = False) -> np.ndarray:
    """``values`` as a 2-D numeric array (n_trs, n_columns); a 1-D array becomes one column.

    Raises InputError naming ``name`` for anything else (bool accepted when ``allow_bool``).
    """
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a numeric array; got {type(values).__name__}.") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    numeric = np.issubdtype(arr.dtype, np.number) or (allow_bool and arr.dtype == bool)
    if arr.ndim != 2 or not numeric:
        raise InputError(f"{name} must be a 2-D numeric array (n_trs, n_columns); got shape {arr.shape}, dtype {arr.dtype}.")
    return arr
