"""Progress reporting shared by the core, the CLI (tqdm) and the app (progress files).

A progress callback has the signature ``callback(stage, done, total, message="")``:
stage is one of ``audio``, ``features``, ``alignment``, ``fit``, ``stats``, ``save``;
done/total count units of that stage (windows, stories, layers). Cancellation is a
``threading.Event``-like object with ``is_set()``; long loops check it between units and
raise :class:`~encoding_core.common.errors.JobCancelled`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Protocol

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
    """Estimates the remaining seconds of one stage from its start time and done/total (kept for
    callers that time a single loop; a job's ETA over all its stages is :class:`WorkRates`)."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def eta(self, stage: str, done: int, total: int) -> Optional[float]:
        now = time.monotonic()
        start = self.started.setdefault(stage, now)
        if done <= 0 or total <= 0 or done > total:
            return None
        return (now - start) / done * (total - done)


PER_LAYER_STAGES = ("alignment", "fit", "stats", "save")
"""Stages a run repeats once per layer (their totals are the number of layers)."""


class WorkRates:
    """Measured seconds per unit of work of each stage of one job, from its progress events.

    Every second between two progress events is charged to the stage of the later event (so
    model loading counts towards the first feature units, a layer's fit towards ``fit``). Units
    announced as skipped (:meth:`skipped`: a story whose features came from the cache) are
    done without their time counting as work, so a cached story does not make the rate look
    faster than the computation is. :meth:`record` is the JSON the job writes; the app turns
    it into an ETA with :func:`remaining_seconds` at the moment it reads it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_event: Optional[float] = None
        self.stages: dict[str, dict[str, float]] = {}

    def _stage(self, stage: str) -> dict[str, float]:
        return self.stages.setdefault(stage, {"done": 0, "total": 0, "seconds": 0.0, "units": 0, "free": 0})

    def update(self, stage: str, done: int, total: int) -> None:
        """One progress event: ``done`` of ``total`` units of ``stage``."""
        now = self._clock()
        elapsed = 0.0 if self._last_event is None else max(0.0, now - self._last_event)
        self._last_event = now
        info = self._stage(stage)
        advanced = max(0, int(done) - int(info["done"]))
        free = min(advanced, int(info["free"]))
        info["free"] -= free
        if advanced == 0 or advanced > free:  # waiting or working: the time is this stage's cost
            info["seconds"] += elapsed
        info["units"] += advanced - free
        info["done"], info["total"] = int(done), int(total)

    def plan(self, stage: str, total: int) -> None:
        """Announce ``total`` units of a stage that has not started yet (e.g. the layers to fit)."""
        info = self._stage(stage)
        if info["done"] == 0 and info["units"] == 0:
            info["total"] = int(total)

    def skipped(self, stage: str, units: int) -> None:
        """The next ``units`` units of ``stage`` cost nothing (e.g. features read from the cache)."""
        self._stage(stage)["free"] += max(0, int(units))

    def seconds_per_unit(self, stage: str) -> Optional[float]:
        """Measured seconds per computed unit of ``stage`` (None before any unit was computed)."""
        info = self.stages.get(stage)
        if not info or info["units"] <= 0:
            return None
        return float(info["seconds"]) / float(info["units"])

    def record(self) -> dict[str, dict[str, Any]]:
        """Per stage: done, total, seconds_per_unit (None when not measured yet)."""
        return {stage: {"done": int(info["done"]), "total": int(info["total"]),
                        "seconds_per_unit": self.seconds_per_unit(stage)} for stage, info in self.stages.items()}


@dataclass(frozen=True)
class Remaining:
    """What is left of a job: ``seconds`` (the measured part; a lower bound when ``unmeasured``
    is not empty) and the stages with work left whose speed is not measured yet."""

    seconds: Optional[float]
    unmeasured: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.seconds is not None and not self.unmeasured


def remaining_seconds(rates: Mapping[str, Mapping[str, Any]], since_update_s: float = 0.0) -> Remaining:
    """The time left of a job from its recorded :meth:`WorkRates.record`, ``since_update_s``
    seconds after it was written: sum over stages of (total - done) x seconds per unit, minus the
    time already spent since the record (never below zero per stage in progress).

    A per-layer stage with no measured unit yet borrows nothing: it is listed in ``unmeasured``.
    Returns seconds None when no stage with work left has a measured speed.
    """
    total = 0.0
    measured = False
    unmeasured = []
    for stage, info in rates.items():
        left = int(info.get("total", 0) or 0) - int(info.get("done", 0) or 0)
        if left <= 0:
            continue
        rate = info.get("seconds_per_unit")
        if rate is None or not math.isfinite(float(rate)):
            unmeasured.append(stage)
            continue
        total += left * float(rate)
        measured = True
    if not measured:
        return Remaining(None, tuple(unmeasured))
    return Remaining(max(0.0, total - max(0.0, float(since_update_s))), tuple(unmeasured))


def report_skipped(progress: Any, stage: str, units: int) -> None:
    """Tell a progress callback that ``units`` units of ``stage`` are free (if it keeps rates)."""
    skipped = getattr(progress, "skipped", None)
    if callable(skipped):
        skipped(stage, units)


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
