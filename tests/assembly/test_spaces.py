"""Spaces onto surfaces: MNI assemblies onto fsaverage5 (against the reference's per-TR vol_to_surf
loop written here), a subject's volume onto its own cortex (against vol_to_surf), and the errors."""
from __future__ import annotations

import json
import warnings

import nibabel
import numpy as np
import pytest

from surface_testutils import write_pycortex_subject

from encoding_core.assembly import Assembly, Space, Story
from encoding_core.assembly.assembly_loader import load_assembly, save_assembly
from encoding_core.assembly.projection import fsaverage_matrix
from encoding_core.assembly.pycortex_store import open_pycortex_subject, subject_surface_space
from encoding_core.assembly.spaces import convexity, project_assembly, space_projection
from encoding_core.common.errors import InputError, SpaceMismatchError

TOL = 1e-6


@pytest.fixture(scope="module")
def mni4(mni_mask):
    """The MNI152 brain mask on a 4 mm grid: (mask (50, 59, 48), affine)."""
    mask, affine = mni_mask
    return mask[::2, ::2, ::2].copy(), affine @ np.diag([2.0, 2.0, 2.0, 1.0])


def _volume_assembly(mask, affine, template=None, seed=0, n_trs=(3, 2)):
    rng = np.random.default_rng(seed)
    n_voxels = int(mask.sum())
    stories = []
    for i, n in enumerate(n_trs):
        repeats = rng.standard_normal((2, n, n_voxels)).astype(np.float32) if i == len(n_trs) - 1 else None
        stories.append(Story(name=f"story{i}", brain_data=rng.standard_normal((n, n_voxels)).astype(np.float32),
                             tr_times=np.arange(n) * 2.0, words=["a", "b"], word_onsets=[0.1, 0.6],
                             word_offsets=[0.5, 0.9], audio_path=f"/audio/story{i}.wav", repeats=repeats))
    return Assembly(subject="sub-01", tr=2.0, stories_list=stories, space=Space.volume(mask, affine, template),
                    provenance={"source": "test"})


def _reference_loop(data, mask, affine, fsaverage5):
    """The reference: one zero-filled NIfTI per TR, one vol_to_surf(image, pial) per hemisphere."""
    from nilearn import surface

    out = []
    for row in np.atleast_2d(data):
        volume = np.zeros(mask.shape, dtype=np.float32)
        volume[mask] = row
        image = nibabel.Nifti1Image(volume, affine)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(np.concatenate([surface.vol_to_surf(image, fsaverage5["pial"].parts[h])
                                       for h in ("left", "right")]))
    return np.asarray(out)


def test_mni_assembly_projected_to_fsaverage5_equals_the_per_tr_loop(mni4, fsaverage5, tmp_path):
    mask, affine = mni4
    assembly = _volume_assembly(mask, affine, template="MNI152NLin2009cAsym")
    projected = project_assembly(assembly, cache_dir=tmp_path / "cache")
    assert projected.space.kind == "surface" and projected.space.name == "fsaverage5"
    assert projected.stories == assembly.stories and projected.tr == assembly.tr
    for source, story in zip(assembly.stories_list, projected.stories_list):
        expected = _reference_loop(source.brain_data, mask, affine, fsaverage5)
        empty = np.isnan(expected).all(axis=0)  # vertices with no sample inside the volume: 0 by the NaN policy
        assert story.brain_data.shape == (source.n_trs, 20484) and story.brain_data.dtype == np.float32
        np.testing.assert_allclose(story.brain_data[:, ~empty], expected[:, ~empty], rtol=0, atol=TOL)
        assert not story.brain_data[:, empty].any()
        assert story.words == source.words and story.audio_path == source.audio_path
        np.testing.assert_array_equal(story.tr_times, source.tr_times)
        if source.repeats is not None:
            for repeat, projected_repeat in zip(source.repeats, story.repeats):
                expected = _reference_loop(repeat, mask, affine, fsaverage5)
                np.testing.assert_allclose(projected_repeat[:, ~empty], expected[:, ~empty], rtol=0, atol=TOL)
    record = projected.provenance["projected_from"]
    assert record["template"] == "MNI152NLin2009cAsym" and record["n_voxels"] == int(mask.sum())
    assert record["target"] == "fsaverage5" and record["mesh_type"] == "pial"
    assert record["sampling"]["kind"] == "line" and record["sampling"]["radius"] == 3.0
    np.testing.assert_allclose(record["affine"], affine)
    assert projected.provenance["source"] == "test"
    # saved natively and read back: same numbers, same provenance
    path = save_assembly(projected, tmp_path / "projected.h5")
    again = load_assembly(path)
    assert again.space.name == "fsaverage5" and again.provenance["projected_from"] == record
    np.testing.assert_array_equal(again.story("story1").repeats, projected.story("story1").repeats)


def test_projection_is_asked_for_knowingly(mni4, fsaverage5):
    mask, affine = mni4
    unknown = _volume_assembly(mask, affine, n_trs=(2,))
    with pytest.raises(SpaceMismatchError, match="records no template.*source_template='MNI152'"):
        project_assembly(unknown)
    declared = project_assembly(unknown, source_template="MNI152")  # the user says it is MNI
    expected = _reference_loop(unknown.stories_list[0].brain_data, mask, affine, fsaverage5)
    finite = ~np.isnan(expected).all(axis=0)
    np.testing.assert_allclose(declared.stories_list[0].brain_data[:, finite], expected[:, finite], atol=TOL)
    assert declared.provenance["projected_from"]["template"] == "MNI152"
    native = _volume_assembly(mask, affine, template="native:UTS01", n_trs=(2,))
    with pytest.raises(SpaceMismatchError, match="'native:UTS01' space, not MNI152"):
        project_assembly(native)
    with pytest.raises(SpaceMismatchError, match="contradicts"):
        project_assembly(_volume_assembly(mask, affine, template="MNI152", n_trs=(2,)), source_template="MNI305")


def test_an_affine_that_is_not_mni_is_refused(mni4):
    mask, affine = mni4
    for wrong in (np.eye(4), affine @ np.diag([0.2, 0.2, 0.2, 1.0])):  # voxel indices as mm; mm written as cm
        assembly = _volume_assembly(mask, wrong, template="MNI152", n_trs=(2,))
        with pytest.raises(SpaceMismatchError, match="assembly 'sub-01' \\(MNI152\\)"):
            project_assembly(assembly)
    with pytest.raises(InputError, match="fsaverage5"):
        project_assembly(_volume_assembly(mask, affine, template="MNI152", n_trs=(2,)), target="fsaverage6")


def test_other_spaces_are_not_projected(make_assembly):
    on_surface = make_assembly(n_stories=1, n_trs=4, n_voxels=20484)
    on_surface.space = Space.surface("fsaverage5")
    with pytest.raises(InputError, match="already on a surface"):
        project_assembly(on_surface)
    with pytest.raises(SpaceMismatchError, match="needs a volume space"):
        project_assembly(make_assembly(n_stories=1, n_trs=4, n_voxels=10))


# --------------------------------------------------------------------------- where maps are drawn
@pytest.fixture(scope="module")
def subject_space(tmp_path_factory, fsaverage5):
    db = tmp_path_factory.mktemp("pycortex-db")
    folder = write_pycortex_subject(db, "S02", fsaverage5)
    subject = open_pycortex_subject(db, "S02")
    thick = subject.transform("S02_auto").mask("thick")
    return folder, subject_surface_space(subject, "S02_auto", int(thick.sum()), data_source="test data")


def test_subject_maps_equal_vol_to_surf_between_pia_and_wm(subject_space, tmp_path):
    from nilearn import surface

    folder, space = subject_space
    projection = space_projection(space, cache_dir=tmp_path)
    assert projection.target == "subject:S02" and "S02" in projection.label
    assert "10 depths from the pial to the white-matter surface" in projection.note
    values = np.random.default_rng(3).standard_normal(space.n_columns())
    ours = projection.to_vertices(values)
    # pycortex's Volume.save_nii: the (z, y, x) volume transposed, with affine inv(coord)
    volume = np.zeros(space.mask.shape)
    volume[space.mask] = values
    coord = np.asarray(json.loads((folder / "transforms" / "S02_auto" / "matrices.xfm").read_text())["coord"])
    image = nibabel.Nifti1Image(volume.T, np.linalg.inv(coord))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.concatenate([
            surface.vol_to_surf(image, str(folder / "surfaces" / f"pia_{h}.gii"),
                                inner_mesh=str(folder / "surfaces" / f"wm_{h}.gii")) for h in ("lh", "rh")])
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(ours[finite], expected[finite], rtol=0, atol=TOL)
    # drawn on the subject's own inflated surface (not fsaverage5's), shaded by its folding
    inflated = nibabel.load(folder / "surfaces" / "inflated_rh.gii").darrays[0].data
    np.testing.assert_array_equal(projection.draw_meshes["right"][0], inflated)
    assert projection.shading["left"].shape == (10242,)


def test_drawing_surface_by_space_kind(mni4, subject_space):
    mask, affine = mni4
    assert space_projection(Space.surface("fsaverage5")).matrix is None
    assert space_projection(Space.surface("fsaverage6")) is None  # not shipped with nilearn: no map
    assert space_projection(Space.volume(mask, affine)) is None  # template unknown: glass brain at most
    assert space_projection(Space.volume(mask, affine, "native:UTS01")) is None
    assert space_projection(Space()) is None
    mni = space_projection(Space.volume(mask, affine, "MNI152"))
    assert mni.target == "fsaverage5" and mni.draw_meshes is None
    assert "pial surface's normal, ±3 mm" in mni.note and "10 points" in mni.note
    expected = fsaverage_matrix(mask, affine)
    np.testing.assert_array_equal(mni.matrix.indptr, expected.indptr)
    np.testing.assert_array_equal(mni.matrix.indices, expected.indices)
    np.testing.assert_array_equal(np.nan_to_num(mni.matrix.data, nan=9.0), np.nan_to_num(expected.data, nan=9.0))
    with pytest.raises(SpaceMismatchError):
        space_projection(Space.volume(mask, np.eye(4), "MNI152"))  # marked MNI, but its grid is not


def test_thresholds_apply_on_the_surface_as_a_plain_loop_does(subject_space):
    _, space = subject_space
    projection = space_projection(space)
    rng = np.random.default_rng(4)
    values = rng.uniform(-0.3, 0.6, space.n_columns())
    values[:50] = np.nan
    significant = rng.random(space.n_columns()) < 0.6
    got = projection.thresholded(values, significant, 0.1)
    matrix = projection.matrix.tocsr()
    shown = np.isfinite(values) & significant & (values >= 0.1)
    filled = np.nan_to_num(values)
    for vertex in range(0, matrix.shape[0], 97):  # every 97th vertex, one by one
        row = slice(matrix.indptr[vertex], matrix.indptr[vertex + 1])
        columns, weights = matrix.indices[row], matrix.data[row]
        value = float(np.sum(weights * filled[columns]))
        weight_shown = float(np.sum(weights * shown[columns]))
        keep = np.isfinite(value) and weight_shown >= 0.5 and value >= 0.1
        if keep:
            assert got[vertex] == pytest.approx(value, abs=1e-12)
        else:
            assert np.isnan(got[vertex])
    assert np.isfinite(got).sum() > 100


def test_convexity_is_positive_in_sulci(fsaverage5):
    from nilearn import datasets

    sulcal = datasets.load_fsaverage_data("fsaverage5", mesh_type="inflated", data_type="sulcal")
    pial, white = fsaverage5["pial"].parts["left"], fsaverage5["white_matter"].parts["left"]
    mid_thickness = (np.asarray(pial.coordinates) + np.asarray(white.coordinates)) / 2
    shading = convexity(mid_thickness, pial.faces)
    assert np.corrcoef(shading, np.asarray(sulcal.data.parts["left"]).ravel())[0, 1] > 0.6
