"""The native format's schema 2: volume templates and subject surface spaces; schema 1 files still load."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from encoding_core.assembly import Assembly, CorticalSurfaces, Space, Story
from encoding_core.assembly.assembly_loader import load_assembly, save_assembly
from encoding_core.common.errors import AssemblyFormatError


def _story(n_columns: int, seed: int = 0) -> Story:
    rng = np.random.default_rng(seed)
    return Story("s", rng.standard_normal((5, n_columns)).astype(np.float32), np.arange(5) * 2.0)


def _write_schema_1(path, mask, affine, data) -> None:
    """A file laid out as schema 1 wrote it (no template attribute), by hand."""
    with h5py.File(path, "w") as h5:
        h5.attrs.update({"format": "encoding_core.assembly", "schema_version": 1, "subject": "old", "tr": 2.0,
                         "simulated": False, "test_story": "", "provenance": "{}"})
        space = h5.create_group("space")
        space.attrs.update({"kind": "volume", "name": "volume"})
        space["mask"] = mask.astype(np.uint8)
        space["affine"] = affine
        story = h5.create_group("stories/0")
        story.attrs["name"] = "s"
        story["brain_data"] = data
        story["tr_times"] = np.arange(len(data)) * 2.0
        for key in ("word_onsets", "word_offsets"):
            story[key] = np.zeros(0)
        story.create_dataset("words", shape=(0,), dtype=h5py.string_dtype("utf-8"))


def test_schema_1_files_still_load(tmp_path):
    mask = np.zeros((3, 4, 5), dtype=bool)
    mask[1, 2, :] = True
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    data = np.arange(25, dtype=np.float32).reshape(5, 5)
    _write_schema_1(tmp_path / "old.h5", mask, affine, data)
    loaded = load_assembly(tmp_path / "old.h5")
    assert loaded.space.kind == "volume" and loaded.space.template is None
    np.testing.assert_array_equal(loaded.space.mask, mask)
    np.testing.assert_array_equal(loaded.space.affine, affine)
    np.testing.assert_array_equal(loaded.stories_list[0].brain_data, data)


def test_volume_template_round_trip(tmp_path):
    mask = np.ones((2, 3, 4), dtype=bool)
    assembly = Assembly("a", 2.0, [_story(24)], space=Space.volume(mask, np.eye(4), "MNI152NLin6Asym"))
    path = save_assembly(assembly, tmp_path / "mni.h5")
    with h5py.File(path, "r") as h5:
        assert h5.attrs["schema_version"] == 2 and h5["space"].attrs["template"] == "MNI152NLin6Asym"
    space = load_assembly(path).space
    assert space.template == "MNI152NLin6Asym" and space.is_mni


def _surfaces(n_left: int = 4, n_right: int = 5) -> CorticalSurfaces:
    rng = np.random.default_rng(1)
    faces = {"left": np.array([[0, 1, 2], [1, 2, 3]], dtype=np.int32),
             "right": np.array([[0, 1, 2], [2, 3, 4]], dtype=np.int32)}
    meshes = {kind: {h: (rng.standard_normal((n, 3)).astype(np.float32), faces[h])
                     for h, n in (("left", n_left), ("right", n_right))} for kind in ("pia", "wm", "inflated")}
    return CorticalSurfaces("UTS09", meshes, transform="UTS09_auto", mask_type="thick", source="/db/UTS09",
                            sampling={"kind": "depth", "n_samples": 4})


def test_subject_surface_round_trip_and_damage(tmp_path):
    mask = np.zeros((4, 3, 2), dtype=bool)
    mask[:2] = True
    affine = np.diag([2.5, 2.5, 4.0, 1.0])
    space = Space.subject_surface("UTS09", mask, affine, _surfaces())
    path = save_assembly(Assembly("UTS09", 2.0, [_story(12)], space=space), tmp_path / "s.h5")
    again = load_assembly(path).space
    assert (again.kind, again.name, again.template) == ("subject_surface", "UTS09", "native:UTS09")
    assert again.surfaces.sampling == {"kind": "depth", "n_samples": 4} and again.surfaces.source == "/db/UTS09"
    for kind in ("pia", "wm", "inflated"):
        for hemi in ("left", "right"):
            for x, y in zip(space.surfaces.meshes[kind][hemi], again.surfaces.meshes[kind][hemi]):
                np.testing.assert_array_equal(x, y)
                assert x.dtype == y.dtype
    with h5py.File(path, "r+") as h5:
        del h5["space/surfaces/wm/right"]
    with pytest.raises(AssemblyFormatError, match=r"s.h5.*space/surfaces/wm/right"):
        load_assembly(path)


def test_cortical_surfaces_refuse_mismatched_hemispheres():
    surfaces = _surfaces()
    meshes = {k: dict(v) for k, v in surfaces.meshes.items()}
    coords, faces = meshes["inflated"]["left"]
    meshes["inflated"]["left"] = (np.vstack([coords, coords[:1]]), faces)  # one vertex more than pia/wm
    with pytest.raises(AssemblyFormatError, match=r"left hemisphere has different vertex counts.*'inflated': 5"):
        CorticalSurfaces("UTS09", meshes)
    del meshes["wm"]["right"]
    with pytest.raises(AssemblyFormatError, match=r"lack the meshes \['wm/right'\]"):
        CorticalSurfaces("UTS09", meshes)
