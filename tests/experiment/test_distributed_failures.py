"""Cluster failures end a sweep cleanly: unreachable scheduler, workers or scheduler gone, cancel.

Clusters here run their workers as threads of the test process (fast to start); the sweep
connects to them by their tcp address exactly as to a remote scheduler.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from encoding_core.cli import main
from encoding_core.experiment.distributed import connect, parse_scheduler, run_sweep_distributed
from encoding_core.common.errors import AudioError, ClusterError, InputError, JobCancelled
from encoding_core.experiment.jobs import FileProgress, JobManager
from encoding_core.experiment.runstore import RunStore

from tiny_experiment import make_tiny_experiment


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unreachable() -> str:
    return f"tcp://127.0.0.1:{_free_port()}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_experiment(tmp_path_factory.mktemp("fail"), n_stories=3)


def _fresh(config, tmp_path, name):
    copy = type(config).from_dict(config.to_dict())
    copy.cache_dir, copy.results_dir = str(tmp_path / f"cache_{name}"), str(tmp_path / f"results_{name}")
    return copy


def _thread_cluster():
    from distributed import LocalCluster

    return LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://", host="127.0.0.1",
                        dashboard_address=None)


def _entries(cache_dir) -> dict[str, tuple[int, int]]:
    """Cache entry -> (inode, mtime_ns) of its meta.json: unchanged means not recomputed."""
    root = Path(cache_dir) / "speech_features"
    return {e.name: ((e / "meta.json").stat().st_ino, (e / "meta.json").stat().st_mtime_ns)
            for e in root.iterdir() if e.is_dir() and not e.name.startswith(".")} if root.is_dir() else {}


@pytest.mark.parametrize("text, expected", [
    (None, (None, 3)), ("local", (None, 3)), ("local:2", (None, 2)), ("tcp://10.0.0.5:8786", ("tcp://10.0.0.5:8786", 0)),
    ("tls://sched.example.org:8786", ("tls://sched.example.org:8786", 0)), ("node7:8786", ("tcp://node7:8786", 0)),
])
def test_scheduler_settings_are_parsed(text, expected):
    assert parse_scheduler(text, n_workers=3) == expected


@pytest.mark.parametrize("text", ["http://host:8786/", "local:0", "just a name", "tcp://"])
def test_bad_scheduler_settings_name_the_value_and_the_fix(text):
    with pytest.raises(InputError) as info:
        parse_scheduler(text)
    assert repr(text) in str(info.value) and ("tcp://HOST:8786" in str(info.value) or "local:2" in str(info.value))


def test_unreachable_scheduler_fails_fast_and_writes_nothing(tiny, tmp_path):
    address = _unreachable()
    started = time.monotonic()
    with pytest.raises(ClusterError) as info:
        with connect(address, connect_timeout_s=2.0):
            pass
    assert time.monotonic() - started < 8.0
    assert address in str(info.value) and "dask scheduler" in str(info.value)

    config = _fresh(tiny, tmp_path, "unreachable")
    with pytest.raises(ClusterError):
        run_sweep_distributed(config, scheduler=address, connect_timeout_s=2.0)
    assert RunStore(config.results_dir).list() == [] and _entries(config.cache_dir) == {}


def test_bad_input_is_reported_before_connecting(tiny, tmp_path):
    config = _fresh(tiny, tmp_path, "badaudio")
    (tmp_path / "empty").mkdir()
    config.assembly.audio_dir = str(tmp_path / "empty")  # no audio for any story
    with pytest.raises(AudioError) as info:  # not a ClusterError: the scheduler is never contacted
        run_sweep_distributed(config, scheduler=_unreachable(), connect_timeout_s=30.0)
    assert "story0" in str(info.value) and "audio_dir" in str(info.value)


def test_all_workers_gone_fails_cleanly_then_a_rerun_resumes_from_the_cache(tiny, tmp_path):
    config = _fresh(tiny, tmp_path, "gone")
    with _thread_cluster() as cluster:
        def on_progress(stage, done, total, message=""):
            if stage == "features" and done == 1:
                cluster.scale(0)

        started = time.monotonic()
        with pytest.raises(ClusterError) as info:
            run_sweep_distributed(config, scheduler=cluster.scheduler_address, progress=on_progress,
                                  no_worker_timeout_s=1.0)
        assert time.monotonic() - started < 60
        assert "no workers" in str(info.value) and "resume" in str(info.value)
        kept = _entries(config.cache_dir)
        assert 1 <= len(kept) <= 3  # on a fast machine all stories may finish before the workers go
        assert all(run.status != "complete" for run in RunStore(config.results_dir).list())

        cluster.scale(1)
        events = []
        run_id = run_sweep_distributed(config, scheduler=cluster.scheduler_address,
                                       progress=lambda s, d, t, m="": events.append((s, d, t, m)))
    run = RunStore(config.results_dir).load(run_id)
    assert run.layers == [0, 1]
    after = _entries(config.cache_dir)
    assert len(after) == 3 and all(after[key] == value for key, value in kept.items())  # not recomputed
    assert sum("(from cache)" in m for s, _, _, m in events if s == "features") == len(kept)


def test_scheduler_going_away_mid_job_raises_cluster_error(tiny, tmp_path):
    config = _fresh(tiny, tmp_path, "lost")
    cluster = _thread_cluster()
    closer = threading.Thread(target=cluster.close)

    def on_progress(stage, done, total, message=""):
        if stage == "features" and done == 1 and not closer.is_alive():
            closer.start()

    try:
        with pytest.raises(ClusterError) as info:
            run_sweep_distributed(config, scheduler=cluster.scheduler_address, progress=on_progress)
        assert "went away" in str(info.value) and cluster.scheduler_address.split("//")[1] in str(info.value)
        assert _entries(config.cache_dir)  # what was extracted stays
    finally:
        closer.join(timeout=30)
        cluster.close()


def test_cancel_stops_the_sweep_and_keeps_the_cache(tiny, tmp_path):
    config = _fresh(tiny, tmp_path, "cancel")
    flag = threading.Event()
    with _thread_cluster() as cluster:
        with pytest.raises(JobCancelled):
            run_sweep_distributed(config, scheduler=cluster.scheduler_address,
                                  progress=lambda s, d, t, m="": flag.set() if (s, d) == ("features", 1) else None,
                                  cancel=flag)
    assert len(_entries(config.cache_dir)) >= 1
    assert RunStore(config.results_dir).list() == []


def test_cli_sweep_with_an_unreachable_scheduler_prints_one_error_line(tiny, tmp_path, capsys):
    path = _fresh(tiny, tmp_path, "cli").save(tmp_path / "exp.toml")
    address = _unreachable()
    assert main(["sweep", str(path), "--scheduler", address, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: Cannot reach the Dask scheduler at " + address)
    assert main(["sweep", str(path), "--workers", "0", "--quiet"]) == 2
    assert "at least 1 worker" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --scheduler and --workers exclude each other
        main(["sweep", str(path), "--workers", "2", "--scheduler", address])


def test_job_with_a_scheduler_records_it_and_fails_cleanly_when_unreachable(tiny, tmp_path):
    jobs = JobManager(tmp_path / "jobs")
    with pytest.raises(InputError):
        jobs.start(tiny, scheduler="ftp://nowhere")
    address = _unreachable()
    job_id = jobs.start(_fresh(tiny, tmp_path, "job"), scheduler=address)
    status = jobs.wait(job_id, timeout_s=120)
    assert status.state == "failed" and status.scheduler == address
    assert "Cannot reach the Dask scheduler" in status.error
    assert json.loads((tmp_path / "jobs" / job_id / "job.json").read_text())["scheduler"] == address


def test_file_progress_records_worker_snapshots(tmp_path):
    progress = FileProgress(tmp_path / "progress.json")
    progress("features", 1, 4, "story a")
    snapshot = {"tcp://10.0.0.2:4000": {"stories": 1, "layers": 0, "seconds": 2.5, "running": ["story b"]}}
    progress.set_workers(snapshot)
    record = json.loads((tmp_path / "progress.json").read_text())
    assert record["workers"] == snapshot and record["stage"] == "features" and record["done"] == 1
    progress("features", 4, 4, "done")
    assert json.loads((tmp_path / "progress.json").read_text())["workers"] == snapshot
