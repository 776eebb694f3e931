"""No widget shows a stale or contradictory job state: the job picker, the job panel, the "All jobs"
table and the sidebar are read from the job files at every rerun; a stopped job shows no time
left; a cancelled job offers Resume and says how much is cached; the sidebar names the job just
started or resumed. Jobs are folders written here the way the worker writes them (no worker runs)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from encoding_core.config import ExperimentConfig, TrimmingConfig
from encoding_core.experiment.jobs import JobManager
from encoding_core.experiment.runstore import new_run_id, process_start_ticks

from app_helpers import new_app, open_page, texts, write_assembly

ALIVE = {"pid": os.getpid(), "pid_start": process_start_ticks(os.getpid())}  # this test process: "running"


def write_job(jobs_dir: Path, state: str, *, progress: dict | None = None, run_id: str | None = None,
              config: ExperimentConfig | None = None, alive: bool = True, job_id: str | None = None) -> str:
    """A job folder as JobManager.start and the worker leave it."""
    job_id = job_id or new_run_id()
    path = jobs_dir / job_id
    path.mkdir(parents=True)
    pid = ALIVE if alive else {"pid": 999_999_999, "pid_start": 1}
    (path / "job.json").write_text(json.dumps({"job_id": job_id, "config_name": "demo", **pid}))
    (path / "state.json").write_text(json.dumps({"state": state, "run_id": run_id, **pid}))
    if progress is not None:
        (path / "progress.json").write_text(json.dumps(progress))
    (config or ExperimentConfig(name="demo")).save(path / "config.toml")
    return job_id


def features_progress(done: int, total: int = 600, seconds_per_unit: float = 0.2) -> dict:
    import time

    return {"stage": "features", "done": done, "total": total, "message": "story 2/6",
            "stages": {"features": {"done": done, "total": total}},
            "rates": {"features": {"done": done, "total": total, "seconds_per_unit": seconds_per_unit},
                      "fit": {"done": 0, "total": 4, "seconds_per_unit": None}},
            "updated_epoch": time.time()}


def sidebar_text(at) -> str:
    """The sidebar's captions for this session's state. AppTest records the sidebar only on a
    session's first run (not after switch_page), so a fresh session with the same job and
    experiment draws it: the sidebar derives everything from these keys and the files on disk."""
    fresh = new_app()
    for key in ("selected_job", "experiment_config", "assembly_source"):
        try:
            fresh.session_state[key] = at.session_state[key]
        except KeyError:
            pass
    fresh.run()
    return texts(fresh.sidebar.caption)


def state_line(at) -> str:
    """The job panel's state line (not the "How this works" text)."""
    return "\n".join(str(m.value) for m in at.markdown if str(m.value).startswith("**State:**"))


def job_texts(at) -> str:
    """Everything the Train page and the sidebar say about jobs."""
    picker = at.selectbox(key="job_pick")
    labels = list(picker.options)  # AppTest gives the options as shown (format_func applied)
    table = [d.value for d in at.dataframe if "time left" in d.value.columns]
    return "\n".join([*labels, state_line(at), sidebar_text(at),
                      *(t.to_csv() for t in table)])


@pytest.fixture
def jobs_dir(studio) -> Path:
    return studio / ".encoding_studio" / "jobs"


def test_a_finished_job_shows_done_everywhere(studio, jobs_dir):
    job_id = write_job(jobs_dir, "running", progress=features_progress(250))
    at = new_app()
    at.session_state["selected_job"] = job_id
    at.run()
    open_page(at, "train")
    assert at.selectbox(key="job_pick").options[0].endswith("running")
    table = [d.value for d in at.dataframe if "time left" in d.value.columns][0]
    assert table["state"].tolist() == ["running"] and table["time left"][0].startswith("at least")
    assert "fitting 4 layers" in table["time left"][0]
    assert f"Job: `{job_id}` · running" in sidebar_text(at)

    # the worker finishes: it rewrites state.json (progress.json keeps its last values)
    (jobs_dir / job_id / "state.json").write_text(json.dumps({"state": "done", "run_id": "20250101-000000-aaaaaa",
                                                              **ALIVE}))
    at.run()
    assert not at.exception
    assert at.selectbox(key="job_pick").options == [f"{job_id} · demo · done"]
    table = [d.value for d in at.dataframe if "time left" in d.value.columns][0]
    assert table.to_dict("records")[0] | {} == {
        "job": job_id, "name": "demo", "state": "done", "progress": "finished: run 20250101-000000-aaaaaa",
        "time left": "", "runs on": "this machine", "run": "20250101-000000-aaaaaa", "resumes": ""}
    assert state_line(at) == "**State:** done"
    assert "running" not in job_texts(at) and "0/0" not in job_texts(at)
    assert f"Job: `{job_id}` · done" in sidebar_text(at)
    assert "finished: run 20250101-000000-aaaaaa" in [p.proto.text for p in at.get("progress")]


def test_a_cancelled_job_has_no_eta_and_offers_resume_with_the_cache_state(studio, jobs_dir, monkeypatch):
    from encoding_core.demo.preset import demo_config

    config = demo_config(results_dir=str(studio / "results"), cache_dir=str(studio / "cache"))
    job_id = write_job(jobs_dir, "cancelled", progress=features_progress(150), config=config)
    started = []

    def fake_start(self, config, resume_of=None, scheduler=None):  # no worker process in this test
        new_id = write_job(self.root, "queued", config=config)
        started.append((new_id, resume_of))
        return new_id

    monkeypatch.setattr(JobManager, "start", fake_start)
    at = new_app()
    at.session_state["selected_job"] = job_id
    at.run()
    open_page(at, "train")
    assert "cancelled" in at.selectbox(key="job_pick").options[0]
    assert "queued" not in job_texts(at) and state_line(at) == "**State:** cancelled"
    table = [d.value for d in at.dataframe if "time left" in d.value.columns][0]
    assert table["time left"].tolist() == [""] and table["state"].tolist() == ["cancelled"]
    # nothing is cached in this fresh studio: the resume report counts the demo's 6 stories, 0 cached
    assert "The features of 0 of 6 stories are in the feature cache" in texts(at.caption)
    at.button(key=f"resume_{job_id}").click().run()
    assert not at.exception
    (new_id, resume_of), = started
    assert resume_of == job_id
    assert at.session_state["selected_job"] == new_id
    assert at.selectbox(key="job_pick").value == new_id
    assert f"Job: `{new_id}` · queued" in sidebar_text(at)  # the sidebar names the new job at once


def test_the_sidebar_names_a_job_as_soon_as_it_starts(studio, jobs_dir, monkeypatch):
    path = write_assembly(studio)
    audio_dir = studio / "stimuli"
    audio_dir.mkdir()
    tone = (0.1 * np.sin(2 * np.pi * 220 * np.arange(60 * 16000) / 16000)).astype(np.float32)
    for name in ("story0", "story1", "story2"):
        soundfile.write(audio_dir / f"{name}.wav", tone, 16000)
    config = ExperimentConfig(results_dir=str(studio / "results"), cache_dir=str(studio / "cache"), layers=[1])
    config.assembly.path, config.assembly.audio_dir, config.assembly.test_story = str(path), str(audio_dir), "story2"
    config.alignment.trimming = TrimmingConfig(5, -3, 5, -3, 5, -3, 5, -3)
    old = write_job(jobs_dir, "done", run_id="20250101-000000-aaaaaa")
    monkeypatch.setattr(JobManager, "start", lambda self, config, resume_of=None, scheduler=None:
                        write_job(self.root, "queued", config=config))
    from encoding_core.assembly.assembly_loader import load_assembly
    from encoding_core.assembly.audio import map_audio

    at = new_app()
    at.session_state["assembly_source"] = (str(path), "", ())
    at.session_state["audio_matches"] = map_audio(load_assembly(path), audio_dir)
    at.session_state["experiment_config"] = config
    at.session_state["selected_job"] = old
    at.run()
    open_page(at, "train")
    assert f"Job: `{old}` · done" in sidebar_text(at)
    # Train and Sweep differ here (one layer chosen): both buttons, and the difference is said
    assert "**Sweep** fits every layer" in texts(at.caption)
    at.button(key="start_train").click().run()
    new = at.session_state["selected_job"]
    assert new != old
    assert f"Job: `{new}` · queued" in sidebar_text(at) and old not in sidebar_text(at)
    assert at.selectbox(key="job_pick").value == new


def test_train_and_sweep_are_one_button_when_all_layers_are_chosen(studio):
    at = new_app()
    at.run()
    open_page(at, "train")
    keys = [b.key for b in at.button]
    assert "start_train" in keys and "start_sweep" not in keys
    assert at.button(key="start_train").label == "Train all layers"


def test_jobs_signature_changes_with_any_state():
    from types import SimpleNamespace

    from encoding_core.studio import any_job_active, jobs_signature

    a = [SimpleNamespace(job_id="j1", state="running"), SimpleNamespace(job_id="j2", state="done")]
    b = [SimpleNamespace(job_id="j1", state="done"), SimpleNamespace(job_id="j2", state="done")]
    assert jobs_signature(a) != jobs_signature(b)
    assert any_job_active(a) and not any_job_active(b)
