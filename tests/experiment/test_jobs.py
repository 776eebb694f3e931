"""Background jobs: a real worker process on a tiny real experiment (random 2-layer Whisper)."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from encoding_core.common.errors import InputError
from encoding_core.features.cache import list_cache_entries
from encoding_core.experiment.jobs import FileCancelFlag, FileProgress, JobManager
from encoding_core.experiment.runstore import RunStore

from tiny_experiment import make_tiny_experiment, save_tiny_whisper


@pytest.fixture(scope="module")
def shared_model(tmp_path_factory) -> Path:
    return save_tiny_whisper(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def tiny_config(tmp_path, shared_model):
    (tmp_path / "model").symlink_to(shared_model, target_is_directory=True)
    return make_tiny_experiment(tmp_path)


def _wait_for(predicate, timeout_s=60.0, poll_s=0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError("condition not reached in time")


def test_job_runs_to_done_and_writes_a_complete_run(tmp_path, tiny_config):
    jobs = JobManager(tmp_path / "jobs")
    job_id = jobs.start(tiny_config)
    status = jobs.wait(job_id, timeout_s=120)
    assert status.state == "done", jobs.log_tail(job_id)
    run = RunStore(tiny_config.results_dir).load(status.run_id)
    assert run.layers == [0, 1]
    assert {"features", "alignment", "fit", "save"} <= set(status.stages)
    assert status.stages["save"]["done"] == status.stages["save"]["total"] == 2
    assert status.config_name == "tiny" and status.finished
    assert [j.job_id for j in jobs.list()] == [job_id]
    assert "Job done" in jobs.log_tail(job_id)
    for bad in ("../" + job_id, "../etc", job_id + "/.."):
        with pytest.raises(InputError, match="not a job id"):
            jobs.status(bad)


def test_cancel_stops_the_job_between_units(tmp_path, tiny_config):
    jobs = JobManager(tmp_path / "jobs", grace_s=20.0)
    job_id = jobs.start(tiny_config)
    _wait_for(lambda: jobs.status(job_id).state == "running")
    jobs.cancel(job_id)
    status = jobs.wait(job_id, timeout_s=60)
    assert status.state == "cancelled", jobs.log_tail(job_id)
    assert status.run_id is None
    assert not [r for r in RunStore(tiny_config.results_dir).list() if r.status == "complete"]


def test_sigkilled_job_is_interrupted_and_resume_reuses_cached_features(tmp_path, tiny_config):
    jobs = JobManager(tmp_path / "jobs")
    job_id = jobs.start(tiny_config)
    # kill once the first story's features are in the cache
    _wait_for(lambda: list_cache_entries(tiny_config.cache_dir), timeout_s=90)
    pid = jobs.status(job_id).pid
    os.killpg(pid, signal.SIGKILL)
    status = _wait_for(lambda: (s := jobs.status(job_id)).state == "interrupted" and s)
    assert status.run_id is None
    first_entries = {e.audio_file: (e.path, e.created) for e in list_cache_entries(tiny_config.cache_dir)}
    assert first_entries

    new_id = jobs.resume(job_id)
    resumed = jobs.wait(new_id, timeout_s=120)
    assert resumed.state == "done", jobs.log_tail(new_id)
    assert resumed.resume_of == job_id
    entries = {e.audio_file: (e.path, e.created) for e in list_cache_entries(tiny_config.cache_dir)}
    assert len(entries) == 3
    for audio_file, entry in first_entries.items():
        assert entries[audio_file] == entry  # the same cache entry, not recomputed
    assert RunStore(tiny_config.results_dir).load(resumed.run_id).layers == [0, 1]
    assert jobs.status(job_id).state == "interrupted"


def test_file_progress_is_throttled_and_keeps_final_values(tmp_path):
    path = tmp_path / "progress.json"
    progress = FileProgress(path, min_interval_s=10.0)
    writes = []
    original = progress.flush

    def counting_flush():
        writes.append(1)
        original()

    progress.flush = counting_flush
    for done in range(1, 1001):
        progress("features", done, 1000, "window")
    progress("fit", 0, 2)
    assert len(writes) == 3  # first call, last unit of features, stage change
    data = json.loads(path.read_text())
    assert data["stage"] == "fit" and data["stages"]["features"] == {"done": 1000, "total": 1000}


def test_cancel_flag_file(tmp_path):
    flag = FileCancelFlag(tmp_path / "cancel")
    assert not flag.is_set()
    flag.set()
    assert flag.is_set()
