"""Sweeps on a Dask cluster give the serial pipeline's run and cache, and survive a killed worker.

A tiny real experiment (native .h5 assembly, generated wavs, random 2-layer Whisper) runs once
serially (the reference) and then on a loopback LocalCluster of 2 worker processes.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from encoding_core.assembly.assembly_loader import load_assembly, save_assembly
from encoding_core.experiment.distributed import run_sweep_distributed, run_sweeps_distributed, worker_progress
from encoding_core.experiment.pipeline import run_experiment
from encoding_core.experiment.runstore import RunStore

from tiny_experiment import make_tiny_experiment

pytestmark = pytest.mark.slow

N_STORIES = 3


def _copy(config, **changes):
    copy = type(config).from_dict(config.to_dict())
    for key, value in changes.items():
        setattr(copy, key, value)
    return copy


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Two subjects sharing the audio and model, plus their serial reference runs."""
    root = tmp_path_factory.mktemp("dist")
    config = make_tiny_experiment(root, n_stories=N_STORIES)
    other = load_assembly(config.assembly.path)
    rng = np.random.default_rng(11)
    for story in other.stories_list:
        story.brain_data = (story.brain_data[:, ::-1] + 0.3 * rng.standard_normal(story.brain_data.shape)
                            ).astype(np.float32)
    other.subject = "tiny2"
    second = _copy(config)
    second.assembly.path = str(save_assembly(other, root / "s2.h5"))
    serial_ids = [run_experiment(config), run_experiment(second)]
    return root, config, second, serial_ids


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local, Client(local) as client:
        yield local, client


def _assert_same_run(store_a: RunStore, id_a: str, store_b: RunStore, id_b: str) -> None:
    a, b = store_a.load(id_a), store_b.load(id_b)
    assert a.layers == b.layers and a.layers
    files_a = sorted(str(p.relative_to(a.path)) for p in a.path.rglob("*") if p.is_file())
    files_b = sorted(str(p.relative_to(b.path)) for p in b.path.rglob("*") if p.is_file())
    assert files_a == files_b
    for layer in a.layers:
        arrays_a, arrays_b = a.arrays(layer), b.arrays(layer)
        assert sorted(arrays_a) == sorted(arrays_b)
        for key in arrays_a:
            if arrays_a[key].dtype == bool:
                np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
            else:  # 1 BLAS thread per worker vs 2 here: last-bit differences only
                np.testing.assert_allclose(arrays_b[key], arrays_a[key], rtol=0, atol=1e-6, err_msg=key)
        assert a.metrics(layer)["n_significant"] == b.metrics(layer)["n_significant"]
        assert a.metrics(layer)["median_score"] == pytest.approx(b.metrics(layer)["median_score"], abs=1e-6)
    assert a.summary["best_layer"] == b.summary["best_layer"]
    np.testing.assert_array_equal(a.best_layer_per_voxel(), b.best_layer_per_voxel())
    assert a.meta["stories"] == b.meta["stories"] and a.meta["subject"] == b.meta["subject"]


def _cache_arrays(cache_dir) -> dict[str, dict[str, bytes]]:
    root = Path(cache_dir) / "speech_features"
    return {entry.name: {f.name: f.read_bytes() for f in sorted(entry.glob("*.npy"))}
            for entry in sorted(root.iterdir()) if entry.is_dir() and not entry.name.startswith(".")}


def test_two_subjects_on_two_workers_match_the_serial_runs_and_cache(experiment, cluster):
    root, config, second, serial_ids = experiment
    local, _ = cluster
    cache = str(root / "cache_dist")
    results = str(root / "results_dist")
    events, snapshots = [], []
    run_ids = run_sweeps_distributed(
        [_copy(config, cache_dir=cache, results_dir=results), _copy(second, cache_dir=cache, results_dir=results)],
        scheduler=local.scheduler_address, progress=lambda s, d, t, m="": events.append((s, d, t)),
        on_workers=snapshots.append)

    for serial_id, run_id in zip(serial_ids, run_ids):
        _assert_same_run(RunStore(config.results_dir), serial_id, RunStore(results), run_id)
    # the shared audio was extracted once for both subjects, and the cache equals the serial one byte for byte
    assert ("features", N_STORIES, N_STORIES) in events
    assert ("fit", 4, 4) in events  # 2 layers x 2 subjects
    serial_cache, dist_cache = _cache_arrays(config.cache_dir), _cache_arrays(cache)
    assert sorted(serial_cache) == sorted(dist_cache) and len(dist_cache) == N_STORIES
    assert serial_cache == dist_cache
    # per-worker counts add up to the work done, on real worker addresses
    final = worker_progress()
    assert final == snapshots[-1]
    assert sum(row["stories"] for row in final.values()) == N_STORIES
    assert sum(row["layers"] for row in final.values()) == 4
    assert all(address.startswith("tcp://127.0.0.1:") for address in final)


def test_a_worker_killed_mid_job_is_replaced_and_the_run_completes(experiment, cluster):
    root, config, _, serial_ids = experiment
    local, client = cluster
    pids = client.run(os.getpid)
    killed: list[int] = []
    latest: dict = {}

    def on_progress(stage, done, total, message=""):
        if stage == "features" and done == 1 and not killed:
            busy = [w for w, row in latest.items() if row["running"] and w in pids]
            victim = busy[0] if busy else next(iter(pids))
            killed.append(pids[victim])
            os.kill(pids[victim], signal.SIGKILL)

    run_id = run_sweep_distributed(_copy(config, cache_dir=str(root / "cache_kill"), results_dir=str(root / "r_kill")),
                                   scheduler=local.scheduler_address, progress=on_progress,
                                   on_workers=lambda snap: latest.update(snap))
    assert killed and killed[0] not in client.run(os.getpid).values()
    _assert_same_run(RunStore(config.results_dir), serial_ids[0], RunStore(root / "r_kill"), run_id)
    assert _cache_arrays(root / "cache_kill") == _cache_arrays(config.cache_dir)
