"""The run store keeps the whole column space, so Results can draw a run's maps from the run alone."""
from __future__ import annotations

import numpy as np
import pytest

from encoding_core.assembly import CorticalSurfaces, Space
from encoding_core.common.errors import StorageError
from encoding_core.config import ExperimentConfig
from encoding_core.experiment.runstore import RunStore


def _finished_run(store: RunStore, space: Space) -> str:
    writer = store.create(ExperimentConfig(name="space", layers=[0]), {"layers": [0]})
    writer.write_space(space)
    n = space.n_columns()
    writer.write_layer(0, {"median_score": 0.1}, {"correlations": np.zeros(n, dtype=np.float32)})
    writer.finish({"layers": {"0": {"median_r": 0.1}}, "best_layer": 0}, {"total": 1.0})
    return writer.run_id


def _surfaces() -> CorticalSurfaces:
    rng = np.random.default_rng(0)
    faces = np.array([[0, 1, 2], [1, 2, 3]], dtype=np.int32)
    meshes = {kind: {h: (rng.standard_normal((4, 3)).astype(np.float32), faces) for h in ("left", "right")}
              for kind in ("pia", "wm", "inflated")}
    return CorticalSurfaces("UTS07", meshes, transform="UTS07_auto", mask_type="thick", source="/db/UTS07",
                            sampling={"kind": "depth", "n_samples": 10, "interpolation": "linear"})


def test_subject_surface_space_round_trip(tmp_path):
    store = RunStore(tmp_path)
    mask = np.zeros((3, 4, 5), dtype=bool)
    mask[1, :, 2:] = True
    affine = np.diag([2.4, 2.4, 4.1, 1.0])
    space = Space.subject_surface("UTS07", mask, affine, _surfaces())
    run = store.load(_finished_run(store, space))
    again = run.space()
    assert (again.kind, again.name, again.template) == ("subject_surface", "UTS07", "native:UTS07")
    np.testing.assert_array_equal(again.mask, mask)
    np.testing.assert_array_equal(again.affine, affine)
    assert (again.surfaces.transform, again.surfaces.mask_type, again.surfaces.source) == \
        ("UTS07_auto", "thick", "/db/UTS07")
    assert again.surfaces.sampling == space.surfaces.sampling
    for kind in ("pia", "wm", "inflated"):
        for hemi in ("left", "right"):
            for x, y in zip(space.surfaces.meshes[kind][hemi], again.surfaces.meshes[kind][hemi]):
                np.testing.assert_array_equal(x, y)
                assert x.dtype == y.dtype


def test_volume_template_round_trip_and_damaged_space(tmp_path):
    store = RunStore(tmp_path)
    mask = np.ones((2, 2, 3), dtype=bool)
    run = store.load(_finished_run(store, Space.volume(mask, np.eye(4), "MNI152")))
    assert run.space().template == "MNI152" and run.space().is_mni
    (run.path / "space.npz").write_bytes(b"not a zip")
    with pytest.raises(StorageError, match="space.npz is unreadable"):
        run.space()
    subject = store.load(_finished_run(store, Space.subject_surface("UTS07", mask, np.eye(4), _surfaces())))
    with np.load(subject.path / "space.npz") as data:
        arrays = {k: data[k] for k in data.files if k != "wm__right__faces"}
    np.savez(subject.path / "space.npz", **arrays)
    with pytest.raises(StorageError, match="complete subject_surface space"):
        subject.space()
