"""Train page with a Dask scheduler: the address is checked where it is typed, reaches the job,
is shown with a per-worker table, and survives a resume. Real background jobs (JobManager)."""
from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile
from streamlit.testing.v1 import AppTest

from encoding_core.assembly.assembly_loader import load_assembly
from encoding_core.assembly.audio import map_audio
from encoding_core.config import ExperimentConfig, TrimmingConfig
from encoding_core.experiment.distributed import WorkerTracker
from encoding_core.experiment.jobs import FileProgress, JobManager
from encoding_core.studio import worker_rows
from app_helpers import new_app, open_page, texts, write_assembly


def ready_app(studio: Path) -> AppTest:
    """An app session whose experiment can start: an .h5 assembly, audio for every story, lengths lined up."""
    path = write_assembly(studio)
    audio_dir = studio / "stimuli"
    audio_dir.mkdir()
    sr = 16000
    tone = (0.1 * np.sin(2 * np.pi * 220 * np.arange(60 * sr) / sr)).astype(np.float32)
    for name in ("story0", "story1", "story2"):
        soundfile.write(audio_dir / f"{name}.wav", tone, sr)
    config = ExperimentConfig(results_dir=str(studio / "results"), cache_dir=str(studio / "cache"))
    config.assembly.path, config.assembly.audio_dir, config.assembly.test_story = str(path), str(audio_dir), "story2"
    config.alignment.trimming = TrimmingConfig(5, -3, 5, -3, 5, -3, 5, -3)
    at = new_app()
    at.session_state["assembly_source"] = (str(path), "", ())
    at.session_state["audio_matches"] = map_audio(load_assembly(path), audio_dir)
    at.session_state["experiment_config"] = config
    at.run()
    return open_page(at, "train")


def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_scheduler_address_is_checked_where_typed(studio):
    at = ready_app(studio)
    assert not at.button(key="start_train").disabled
    at.text_input(key="scheduler_address").input("http://somewhere").run()
    assert "Dask scheduler address: scheduler 'http://somewhere' is not a Dask scheduler address" in texts(at.error)
    assert all(b.disabled for b in at.button if b.key in ("start_train", "start_sweep"))
    at.text_input(key="scheduler_address").input("local:0").run()
    assert "needs at least 1 worker" in texts(at.error)
    at.text_input(key="scheduler_address").input("local:2").run()
    assert not at.error and not at.button(key="start_train").disabled
    assert "local Dask cluster of 2 worker processes" in texts(at.caption)
    open_page(at, "home")  # the typed address survives a page switch
    open_page(at, "train")
    assert at.text_input(key="scheduler_address").value == "local:2"
    at.text_input(key="scheduler_address").input("").run()
    assert not at.error and "No jobs yet." in texts(at.info)


def test_job_runs_on_the_typed_scheduler_keeps_it_on_resume_and_lists_workers(studio):
    address = f"tcp://127.0.0.1:{closed_port()}"
    at = ready_app(studio)
    at.text_input(key="scheduler_address").input(address).run()
    at.button(key="start_train").click().run()
    assert not at.exception and not at.error, texts(at.error)
    manager = JobManager(studio / ".encoding_studio" / "jobs")
    first = at.session_state["selected_job"]
    assert manager.status(first).scheduler == address
    status = manager.wait(first, timeout_s=120)
    at.run()
    # the job process really tried that scheduler (nobody listens there) and says so
    assert status.state == "failed" and f"Cannot reach the Dask scheduler at {address}" in status.error
    assert f"Cannot reach the Dask scheduler at {address}" in texts(at.error)
    assert f"Dask scheduler {address}" in texts(at.markdown)
    assert "No worker has reported yet." in texts(at.caption)

    at.button(key=f"resume_{first}").click().run()
    second = at.session_state["selected_job"]
    assert second != first
    resumed = manager.wait(second, timeout_s=120)
    assert resumed.scheduler == address and resumed.resume_of == first and resumed.state == "failed"
    assert at.selectbox(key="job_pick").value == second  # the resumed job is the one shown
    at.selectbox(key="job_pick").set_value(first).run()  # and picking another job still works
    assert at.session_state["selected_job"] == first and at.button(key=f"resume_{first}")
    at.selectbox(key="job_pick").set_value(second).run()

    # per-worker progress recorded the way the job process records it (WorkerTracker -> FileProgress)
    progress = FileProgress(manager.job_dir(second) / "progress.json")
    tracker = WorkerTracker(progress.set_workers)
    tracker.finished("tcp://10.0.0.2:4001", "stories", 3.25)
    tracker.finished("tcp://10.0.0.1:4000", "stories", 1.5)
    tracker.finished("tcp://10.0.0.1:4000", "layers", 2.0)
    tracker.running({"tcp://10.0.0.2:4001": ["layer 3", "layer 1"]})
    at.run()
    tables = [d.value for d in at.dataframe if "worker" in d.value.columns]
    assert len(tables) == 1
    table = tables[0]
    assert list(table.columns) == ["worker", "stories", "layers", "seconds", "running"]
    assert table.to_dict("records") == [
        {"worker": "tcp://10.0.0.1:4000", "stories": 1, "layers": 1, "seconds": 3.5, "running": ""},
        {"worker": "tcp://10.0.0.2:4001", "stories": 1, "layers": 0, "seconds": 3.2, "running": "layer 1, layer 3"},
    ]
    jobs_table = [d.value for d in at.dataframe if "runs on" in d.value.columns][0]
    assert set(jobs_table["runs on"]) == {address}


def test_worker_rows_from_a_snapshot():
    snapshot = {"tcp://b:1": {"stories": 2, "layers": 0, "seconds": 10.04, "running": ["story s9"]},
                "tcp://a:1": {"stories": 0, "layers": 3, "seconds": 0.0, "running": []}}
    rows = worker_rows(snapshot)
    assert [r["worker"] for r in rows] == sorted(snapshot)
    for row in rows:
        info = snapshot[row["worker"]]
        assert (row["stories"], row["layers"]) == (info["stories"], info["layers"])
        assert row["seconds"] == pytest.approx(info["seconds"], abs=0.05)
        assert row["running"].split(", ") == (info["running"] or [""])
