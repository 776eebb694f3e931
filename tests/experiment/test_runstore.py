"""Run store: round trip, listing, incomplete runs, safe deletion, unique ids, storage errors."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from encoding_core.assembly import Space
from encoding_core.config import ExperimentConfig
from encoding_core.common.errors import InputError, StorageError
from encoding_core.experiment.runstore import RUN_ID_PATTERN, RunStore

ROOT = Path(__file__).resolve().parents[2]


def _layer_arrays(rng: np.random.Generator, n_voxels: int = 20) -> dict[str, np.ndarray]:
    return {
        "correlations": rng.uniform(-0.2, 0.8, n_voxels).astype(np.float32),
        "p_values": rng.uniform(0, 1, n_voxels),
        "significant_mask": rng.uniform(0, 1, n_voxels) > 0.5,
        "best_alphas": rng.choice([1.0, 10.0, 100.0], n_voxels),
    }


def _complete_run(store: RunStore, rng: np.random.Generator, layers=(0, 1), name: str = "exp") -> str:
    config = ExperimentConfig(name=name, layers=list(layers))
    writer = store.create(config, {"subject": "S1", "simulated": True, "layers": list(layers)})
    correlations = {}
    for layer in layers:
        arrays = _layer_arrays(rng)
        correlations[layer] = arrays["correlations"]
        writer.write_layer(layer, {"median_score": float(np.median(arrays["correlations"]))}, arrays)
    medians = {str(l): {"median_r": float(np.median(c))} for l, c in correlations.items()}
    best = max(medians, key=lambda k: medians[k]["median_r"])
    writer.finish({"layers": medians, "best_layer": int(best)}, {"fit": 1.0})
    return writer.run_id


def _run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_round_trip_metrics_arrays_space_and_weights(tmp_path, rng):
    store = RunStore(tmp_path / "results")
    config = ExperimentConfig(name="round trip", layers=[2])
    writer = store.create(config, {"subject": "UTS03", "simulated": False, "layers": [2]})
    assert RUN_ID_PATTERN.fullmatch(writer.run_id)
    mask = rng.uniform(size=(4, 5, 6)) > 0.5
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    writer.write_space(Space.volume(mask, affine))
    arrays = _layer_arrays(rng)
    weights = rng.standard_normal((8, 20)).astype(np.float32)
    writer.write_layer(2, {"median_score": 0.25, "n_significant": 7}, arrays, weights=weights)
    writer.write_best_layer(np.full(20, 2), arrays["correlations"])
    writer.finish({"layers": {"2": {"median_r": 0.25}}, "best_layer": 2}, {"fit": 1.5, "total": 2.0})

    run = store.load(writer.run_id)
    assert run.config.name == "round trip" and run.config.layers == [2]
    assert run.layers == [2]
    assert run.metrics(2)["median_score"] == 0.25 and run.metrics(2)["n_significant"] == 7
    loaded = run.arrays(2)
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == value.dtype
    np.testing.assert_array_equal(run.weights(2), weights)
    space = run.space()
    assert space.kind == "volume"
    np.testing.assert_array_equal(space.mask, mask)
    np.testing.assert_array_equal(space.affine, affine)
    np.testing.assert_array_equal(run.best_layer_per_voxel(), np.full(20, 2))
    assert run.subject == "UTS03" and run.simulated is False
    assert set(run.versions) >= {"python", "numpy", "torch", "transformers", "encoding_core"}
    assert run.timings["fit"] == 1.5
    with pytest.raises(InputError, match="no layer 5"):
        run.metrics(5)


def test_list_newest_first_with_summary_fields(tmp_path, rng):
    store = RunStore(tmp_path)
    first = _complete_run(store, rng, name="first")
    second = _complete_run(store, rng, name="second")
    infos = store.list()
    assert [i.run_id for i in infos] == [second, first]  # newest first, even within one second
    info = {i.run_id: i for i in infos}[second]
    assert info.name == "second" and info.status == "complete" and info.subject == "S1" and info.simulated
    summary = json.loads((tmp_path / second / "summary.json").read_text())
    assert info.best_median_r == summary["layers"][str(summary["best_layer"])]["median_r"]
    assert info.layers == [0, 1]


def test_failed_run_is_listed_as_failed_and_cannot_be_loaded(tmp_path, rng):
    store = RunStore(tmp_path)
    writer = store.create(ExperimentConfig(), {})
    writer.write_layer(0, {"median_score": 0.1}, _layer_arrays(rng))
    writer.fail(RuntimeError("boom"))
    assert store.list()[0].status == "failed"
    with pytest.raises(InputError, match="failed"):
        store.load(writer.run_id)
    assert store.load(writer.run_id, allow_incomplete=True).status["error"] == "boom"


def test_run_whose_writer_process_exited_is_incomplete(tmp_path):
    result = _run_python("""
        import sys
        from encoding_core.config import ExperimentConfig
        from encoding_core.experiment.runstore import RunStore
        writer = RunStore(sys.argv[1]).create(ExperimentConfig(), {})
        print(writer.run_id)
    """, str(tmp_path))
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip().splitlines()[-1]
    store = RunStore(tmp_path)
    assert json.loads((tmp_path / run_id / "status.json").read_text())["status"] == "running"
    assert [(i.run_id, i.status) for i in store.list()] == [(run_id, "incomplete")]
    with pytest.raises(InputError, match="incomplete"):
        store.load(run_id)


def test_delete_removes_only_that_run(tmp_path, rng):
    store = RunStore(tmp_path)
    keep, remove = _complete_run(store, rng), _complete_run(store, rng)
    store.delete(remove)
    assert [i.run_id for i in store.list()] == [keep]
    assert not (tmp_path / remove).exists()
    assert store.load(keep).layers == [0, 1]
    with pytest.raises(InputError, match="no run"):
        store.delete(remove)


@pytest.mark.parametrize("bad_id", ["../x", "..", "/etc", "20240101-120000-abcdef/..", "20240101-120000-ABCDEF",
                                    "", "20240101-120000-abcdef\x00", "20240101-120000-abcdef\n"])
def test_delete_rejects_ids_that_are_not_run_ids(tmp_path, rng, bad_id):
    outside = tmp_path / "x"
    outside.mkdir()
    store = RunStore(tmp_path / "results")
    run_id = _complete_run(store, rng)
    with pytest.raises(InputError, match="not a run id"):
        store.delete(bad_id)
    assert outside.exists() and (tmp_path / "results" / run_id).exists()


def test_delete_refuses_a_symlinked_run_folder(tmp_path, rng):
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "data.txt").write_text("keep me")
    results = tmp_path / "results"
    store = RunStore(results)
    _complete_run(store, rng)
    link = results / "20240101-120000-abcdef"
    link.symlink_to(victim, target_is_directory=True)
    with pytest.raises(InputError, match="symbolic link"):
        store.delete(link.name)
    with pytest.raises(InputError, match="symbolic link"):
        store.load(link.name)
    assert (victim / "data.txt").read_text() == "keep me" and link.is_symlink()
    assert link.name not in [i.run_id for i in store.list()]


def test_ids_unique_across_two_concurrent_processes(tmp_path):
    code = """
        import sys
        from encoding_core.config import ExperimentConfig
        from encoding_core.experiment.runstore import RunStore
        store = RunStore(sys.argv[1])
        for i in range(25):
            store.create(ExperimentConfig(name=f"{sys.argv[2]}-{i}"), {})
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(tmp_path), tag], cwd=ROOT, env=env)
             for tag in ("a", "b")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    folders = [p for p in tmp_path.iterdir() if RUN_ID_PATTERN.fullmatch(p.name)]
    assert len(folders) == 50
    names = sorted(json.loads((p / "meta.json").read_text())["name"] for p in folders)
    assert names == sorted([f"a-{i}" for i in range(25)] + [f"b-{i}" for i in range(25)])


def test_unwritable_results_folder_raises_storage_error(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the results folder should be")
    with pytest.raises(StorageError, match="not_a_folder"):
        RunStore(blocker / "results").create(ExperimentConfig(), {})


def test_full_disk_during_a_run_keeps_earlier_runs(tmp_path, rng, monkeypatch):
    store = RunStore(tmp_path)
    earlier = _complete_run(store, rng)
    writer = store.create(ExperimentConfig(), {})

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(StorageError, match="disk is full"):
        writer.write_layer(0, {"median_score": 0.0}, _layer_arrays(rng))
    monkeypatch.undo()
    assert not list((tmp_path / writer.run_id / "layers" / "0").glob("*.npz"))
    assert not list((tmp_path / writer.run_id / "layers" / "0").glob(".*tmp"))
    run = store.load(earlier)
    assert run.layers == [0, 1] and run.arrays(1)["correlations"].shape == (20,)
    assert store.status_of(writer.run_id) == "running"
