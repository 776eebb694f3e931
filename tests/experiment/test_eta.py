"""The job's ETA: measured seconds per unit of each stage, cached stories not counted as work,
the time left summed over every stage with work left, counted down between two progress files."""
from __future__ import annotations

import json

import pytest

from encoding_core.common.progress import Remaining, WorkRates, remaining_seconds
from encoding_core.experiment.jobs import FileProgress, JobManager


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _events(rates: WorkRates, clock: FakeClock, events) -> None:
    for t, stage, done, total in events:
        clock.now = t
        if stage == "skip":
            rates.skipped("features", done)
        else:
            rates.update(stage, done, total)


def test_rates_ignore_cached_stories_and_count_every_stage():
    clock = FakeClock()
    rates = WorkRates(clock)
    _events(rates, clock, [
        (0.0, "audio", 3, 3),
        (2.0, "features", 0, 300),     # model loaded, story 0 starts
        (7.0, "features", 50, 300),
        (12.0, "features", 100, 300),
        (12.3, "skip", 100, None),     # story 1 comes from the cache
        (12.3, "features", 200, 300),
        (17.0, "features", 250, 300),
    ])
    rates.plan("fit", 4)
    # a plain account: 150 computed units took everything but the 0.3 s cache read
    seconds_per_unit = (17.0 - 0.3) / 150
    assert rates.seconds_per_unit("features") == pytest.approx(seconds_per_unit)
    left = remaining_seconds(rates.record())
    assert left.seconds == pytest.approx(50 * seconds_per_unit)
    assert left.unmeasured == ("fit",) and not left.complete
    # counted down between two progress files, never below zero
    assert remaining_seconds(rates.record(), since_update_s=2.0).seconds == pytest.approx(50 * seconds_per_unit - 2)
    assert remaining_seconds(rates.record(), since_update_s=1e6).seconds == 0.0


def test_rates_per_layer_stages_sum_to_the_time_of_a_layer():
    clock = FakeClock()
    rates = WorkRates(clock)
    _events(rates, clock, [
        (0.0, "features", 100, 100),
        (1.0, "alignment", 0, 4),
        (3.0, "alignment", 1, 4),       # 2 s to align layer 0
        (3.0, "fit", 0, 4),
        (9.0, "fit", 1, 4),             # 6 s to fit it
        (9.0, "stats", 1, 4),
        (10.0, "save", 1, 4),           # 1 s to save it
    ])
    left = remaining_seconds(rates.record())
    assert left.complete
    # 3 layers left at (2 + 6 + 1) s; the first alignment event waited 1 s with nothing done (charged too)
    assert left.seconds == pytest.approx(3 * (3.0 + 6.0 + 0.0 + 1.0))


def test_nothing_measured_gives_no_eta():
    assert remaining_seconds({}) == Remaining(None, ())
    assert remaining_seconds({"fit": {"done": 0, "total": 3, "seconds_per_unit": None}}) == Remaining(None, ("fit",))


def test_file_progress_records_rates_and_the_manager_counts_down(tmp_path, monkeypatch):
    job = tmp_path / "20250101-000000-abcdef"
    job.mkdir()
    (job / "job.json").write_text(json.dumps({"job_id": job.name, "pid": None}))
    (job / "state.json").write_text(json.dumps({"state": "running"}))
    clock = FakeClock()
    progress = FileProgress(job / "progress.json", min_interval_s=0.0)
    progress.rates = WorkRates(clock)
    for t, done in ((0.0, 0), (10.0, 50)):
        clock.now = t
        progress("features", done, 100, "")
    record = json.loads((job / "progress.json").read_text())
    assert record["rates"]["features"]["seconds_per_unit"] == pytest.approx(10.0 / 50)
    manager = JobManager(tmp_path)
    monkeypatch.setattr(manager, "_alive", lambda *a: True)
    status = manager.status(job.name)
    assert status.eta_s == pytest.approx(10.0, abs=1.0)  # 50 units at 0.2 s, minus the ms since the write
    (job / "state.json").write_text(json.dumps({"state": "cancelled"}))
    assert manager.status(job.name).eta_s is None  # a stopped job has no ETA
