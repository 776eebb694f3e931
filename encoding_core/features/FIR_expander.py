"""The reference's ``FIR`` helper (``encoding.features.FIR_expander``): finite-impulse-response delays."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from encoding_core.common.arrays import as_matrix
from encoding_core.common.errors import InputError


@dataclass
class FIR:
    """``FIR.make_delayed(stim, delays, circpad=False)``: copies of ``stim`` (n_trs, p) shifted by
    each delay (TRs), stacked along columns in delay order -> (n_trs, p * len(delays)).

    Row t of the block for delay d is ``stim[t - d]``: zero where that falls outside, or wrapped
    around with ``circpad=True``. Negative delays shift the other way. Keeps float dtypes.
    """

    delays: Sequence[int] = (1, 2, 3, 4)

    def __call__(self, stim: Any) -> np.ndarray:
        return self.make_delayed(stim, self.delays)

    @staticmethod
    def make_delayed(stim: Any, delays: Sequence[int], circpad: bool = False) -> np.ndarray:
        values = as_matrix(stim, "stim")
        if not np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float64)
        delay_list = [int(d) for d in delays]
        if not delay_list or any(d != r for d, r in zip(delay_list, delays)):
            raise InputError(f"delays must be a non-empty list of whole numbers of TRs; got {list(delays)}.")
        n = values.shape[0]
        rows = np.arange(n)[:, None] - np.asarray(delay_list)[None, :]  # (n, n_delays) source rows
        if circpad:
            rows = rows % n
        valid = (rows >= 0) & (rows < n)
        picked = values[np.clip(rows, 0, n - 1)] * valid[..., None]  # (n, n_delays, p)
        return picked.reshape(n, -1).astype(values.dtype, copy=False)
