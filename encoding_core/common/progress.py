"""Progress reporting shared by the core, the CLI (tqdm) and the app (progress files).

A progress callback has the signature ``callback(stage, done, total, message="")``:
stage is one of ``audio``, ``features``, ``alignment``, ``fit``, ``stats``, ``save``;
done/total count units of that stage (windows, stories, layers). Cancellation is a
``threading.Event``-like object with ``is_set()``; long loops check it between units and
raise :class:`~encoding_core.common.errors.JobCancelled`.
"""
from __future__ import annotations

import time
from typing import Optional, Protocol

from encoding_core.common.errors import JobCancelled


class ProgressCallback(Protocol):
    def __call__(self, stage: str, done: int, total: int, message: str = "") -> None: ...


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


def null_progress(stage: str, done: int, total: int, message: str = "") -> None:
    """A progress callback that does nothing."""


def check_cancel(cancel: Optional[CancelFlag]) -> None:
    """Raise JobCancelled if the flag is set."""
    if cancel is not None and cancel.is_set():
        raise JobCancelled("Cancelled by the user.")


class EtaTracker:
    """Estimates the remaining seconds of a stage from its start time and done/total."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def eta(self, stage: str, done: int, total: int) -> Optional[float]:
        now = time.monotonic()
        start = self.started.setdefault(stage, now)
        if done <= 0 or total <= 0 or done > total:
            return None
        return (now - start) / done * (total - done)


class TqdmProgress:
    """A progress callback that draws one tqdm bar per stage (for the CLI)."""

    def __init__(self) -> None:
        self.bars: dict[str, object] = {}

    def __call__(self, stage: str, done: int, total: int, message: str = "") -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None or bar.total != total:  # type: ignore[attr-defined]
            if bar is not None:
                bar.close()  # type: ignore[attr-defined]
            bar = tqdm(total=total, desc=stage, leave=False, dynamic_ncols=True)
            self.bars[stage] = bar
        bar.n = done  # type: ignore[attr-defined]
        if message:
            bar.set_postfix_str(message[:60])  # type: ignore[attr-defined]
        bar.refresh()  # type: ignore[attr-defined]

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()  # type: ignore[attr-defined]
        self.bars.clear()
