"""The pycortex filestore reader on a synthetic subject written in pycortex's layout."""
from __future__ import annotations

import json
import shutil

import nibabel
import numpy as np
import pytest

from surface_testutils import functional_affine, nilearn_reference, write_gifti, write_pycortex_subject

from encoding_core.assembly.projection import check_mni_space, fsaverage_matrix, project
from encoding_core.assembly.pycortex_store import (PYCORTEX_LINE_NEAREST, check_response_columns,
                                                   open_pycortex_subject, subject_surface_space)
from encoding_core.common.errors import PycortexFormatError, SpaceMismatchError

SUBJECT, XFM = "S01", "S01_auto"
SHAPE_XYZ = (80, 90, 40)  # NIfTI order; pycortex arrays are (40, 90, 80)


@pytest.fixture(scope="module")
def filestore(tmp_path_factory, fsaverage5):
    """A pycortex-db folder with subject S01: fsaverage5 as pia/wm/inflated, transform S01_auto."""
    db = tmp_path_factory.mktemp("pycortex-db")
    write_pycortex_subject(db, SUBJECT, fsaverage5)
    return db


@pytest.fixture()
def subject(filestore):
    return open_pycortex_subject(filestore, SUBJECT)


def test_reader_follows_pycortex_conventions(subject, filestore):
    transform = subject.transform(XFM)
    assert transform.volume_shape == SHAPE_XYZ[::-1]
    assert sorted(transform.masks) == ["thick", "thin"]
    thick = transform.mask("thick")
    # pycortex's get_mask: nibabel data transposed, != 0
    expected = np.asarray(nibabel.load(filestore / SUBJECT / "transforms" / XFM / "mask_thick.nii.gz")
                          .get_fdata()).T != 0
    np.testing.assert_array_equal(thick, expected)
    # the (z, y, x) affine puts voxel (z, y, x) where the NIfTI voxel (x, y, z) is
    zyx = np.array([[3, 40, 70], [0, 0, 0], [39, 89, 79]])
    np.testing.assert_allclose(nibabel.affines.apply_affine(transform.surface_affine(), zyx),
                               nibabel.affines.apply_affine(functional_affine(), zyx[:, ::-1]), atol=1e-9)
    assert subject.check_surfaces() == {"lh": 10242, "rh": 10242}
    assert subject.mesh("inflated").n_vertices == 20484


def test_columns_are_c_order_of_the_zyx_array(subject, filestore, tmp_path):
    """pycortex's unmask fills volume[:, mask] of the (z, y, x) array: C order there."""
    folder = tmp_path / "db"
    shutil.copytree(filestore, folder)
    tiny = np.zeros(SHAPE_XYZ, dtype=np.uint8)
    tiny[5, 1, 0] = tiny[0, 0, 1] = 1  # NIfTI (x, y, z) positions
    nibabel.save(nibabel.Nifti1Image(tiny, np.eye(4)), folder / SUBJECT / "transforms" / XFM / "mask_tiny.nii.gz")
    mask = open_pycortex_subject(folder, SUBJECT).transform(XFM).mask("tiny")
    # column 0 is NIfTI voxel (5, 1, 0) (z = 0 first), although (0, 0, 1) comes first in NIfTI C order
    np.testing.assert_array_equal(np.argwhere(mask), [[0, 1, 5], [1, 0, 0]])


@pytest.mark.parametrize("sampling", [{}, {"n_samples": 4}, {"interpolation": "nearest"}])
def test_subject_projection_equals_vol_to_surf(subject, filestore, sampling):
    transform = subject.transform(XFM)
    mask = transform.mask("thick")
    matrix = subject.projection_matrix(XFM, "thick", **sampling)
    assert matrix.shape == (20484, mask.sum())
    data = np.random.default_rng(1).standard_normal((3, int(mask.sum())))
    ours = project(matrix, data)
    # what pycortex's Volume.save_nii writes (volume.T), with the coord transform as affine
    volume = np.zeros((3,) + mask.shape)
    volume[:, mask] = data
    image = nibabel.Nifti1Image(volume.T, np.linalg.inv(transform.coord))
    surfaces = filestore / SUBJECT / "surfaces"
    expected = np.hstack([nilearn_reference(image, str(surfaces / f"pia_{h}.gii"),
                                            inner_mesh=str(surfaces / f"wm_{h}.gii"), **sampling)
                          for h in ("lh", "rh")])
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected))
    finite = np.isfinite(expected)
    assert finite.all(axis=0).mean() > 0.99
    np.testing.assert_allclose(ours[finite], expected[finite], rtol=0, atol=1e-6)


def test_line_nearest_preset_matches_pycortex_inside_the_volume(subject, filestore):
    """PYCORTEX_LINE_NEAREST against a plain re-statement of pycortex's LineNN mapper."""
    transform = subject.transform(XFM)
    mask = transform.mask("thin")
    ours = subject.projection_matrix(XFM, "thin", **PYCORTEX_LINE_NEAREST)
    shape = transform.volume_shape
    columns = np.full(np.prod(shape), -1)
    columns[np.flatnonzero(mask)] = np.arange(mask.sum())
    start = 0
    for hemi in ("lh", "rh"):
        pia = nibabel.affines.apply_affine(transform.coord, subject.hemisphere("pia", hemi).coordinates)
        wm = nibabel.affines.apply_affine(transform.coord, subject.hemisphere("wm", hemi).coordinates)
        n = len(pia)
        weights = [dict() for _ in range(n)]
        inside_everywhere = np.ones(n, dtype=bool)
        for t in np.linspace(0, 1, 66)[1:-1]:  # pycortex: pia*t + wm*(1-t), 64 samples of weight 1/64
            points = np.round(pia * t + wm * (1 - t)).astype(int)
            inside_everywhere &= ((points >= 0) & (points < np.asarray(shape[::-1]))).all(axis=1)
            flat = np.ravel_multi_index(np.clip(points[:, ::-1], 0, np.asarray(shape) - 1).T, shape)
            for v in range(n):
                weights[v][flat[v]] = weights[v].get(flat[v], 0.0) + 1 / 64
        block = ours[start:start + n]
        for v in np.flatnonzero(inside_everywhere)[::25]:
            expected = {columns[k]: w for k, w in weights[v].items() if columns[k] >= 0}
            row = block[v]
            assert dict(zip(row.indices.tolist(), row.data.tolist())) == pytest.approx(expected, abs=1e-12)
        start += n


def test_bad_inputs_name_the_files(subject, filestore, tmp_path):
    folder = tmp_path / "db"
    shutil.copytree(filestore, folder)
    xfm_dir = folder / SUBJECT / "transforms" / XFM
    nibabel.save(nibabel.Nifti1Image(np.ones((80, 90, 41), dtype=np.uint8), np.eye(4)), xfm_dir / "mask_wrong.nii.gz")
    with pytest.raises(PycortexFormatError, match="mask_wrong.nii.gz.*reference.nii.gz"):
        open_pycortex_subject(folder, SUBJECT).transform(XFM).mask("wrong")
    # a right inflated surface from another reconstruction (fewer vertices)
    surfaces = folder / SUBJECT / "surfaces"
    inflated = nibabel.load(surfaces / "inflated_rh.gii")
    coords, faces = (a.data for a in inflated.darrays)
    keep = faces.max(axis=1) < 10000
    write_gifti(surfaces / "inflated_rh.gii", coords[:10000], faces[keep])
    with pytest.raises(PycortexFormatError, match=r"right.*inflated_rh.gii: 10000"):
        open_pycortex_subject(folder, SUBJECT).check_surfaces()
    open_pycortex_subject(folder, SUBJECT).projection_matrix(XFM, "thin", n_samples=2)  # pia/wm still agree
    with pytest.raises(PycortexFormatError, match="No subject folder"):
        open_pycortex_subject(folder, "UTS09")
    with pytest.raises(PycortexFormatError, match="available: \\['S01_auto'\\]"):
        subject.transform("S01_manual")
    with pytest.raises(PycortexFormatError, match="available mask types"):
        subject.transform(XFM).mask("cortical")
    (xfm_dir / "matrices.xfm").write_text("{not json")
    with pytest.raises(PycortexFormatError, match="matrices.xfm"):
        open_pycortex_subject(folder, SUBJECT).transform(XFM)
    (xfm_dir / "matrices.xfm").write_text(json.dumps({"subject": SUBJECT}))
    with pytest.raises(PycortexFormatError, match="neither a 'coord' nor a 'magnet'"):
        open_pycortex_subject(folder, SUBJECT).transform(XFM)


def test_magnet_only_transform_gives_the_coord_matrix(subject, filestore, tmp_path):
    folder = tmp_path / "db"
    shutil.copytree(filestore, folder)
    path = folder / SUBJECT / "transforms" / XFM / "matrices.xfm"
    matrices = json.loads(path.read_text())
    path.write_text(json.dumps({"magnet": matrices["magnet"]}))
    derived = open_pycortex_subject(folder, SUBJECT).transform(XFM).coord
    np.testing.assert_allclose(derived, subject.transform(XFM).coord, atol=1e-9)


def test_response_columns_and_native_space_checks(subject):
    transform = subject.transform(XFM)
    thick, thin = transform.mask("thick"), transform.mask("thin")
    check_response_columns(thick, int(thick.sum()), mask_source="mask_thick", data_source="story.hf5")
    with pytest.raises(SpaceMismatchError, match=r"story.hf5 has 12 voxel columns but mask_thick"):
        check_response_columns(thick, 12, mask_source="mask_thick", data_source="story.hf5")
    assert transform.find_mask(int(thin.sum()))[0] == "thin"
    with pytest.raises(SpaceMismatchError, match="thick"):
        transform.find_mask(12, source="story.hf5")
    # this subject's own volume is not MNI: fsaverage must refuse it
    with pytest.raises(SpaceMismatchError, match="axis"):
        check_mni_space(thick, transform.surface_affine(), source="S01 thick mask")
    with pytest.raises(SpaceMismatchError):
        fsaverage_matrix(thick, transform.scanner_affine())
    with pytest.raises(SpaceMismatchError, match="volume shape"):
        subject.projection_matrix(XFM, thick.T)


def test_subject_surface_space_holds_what_drawing_needs(subject, filestore):
    """The space: the thick mask (z, y, x), the index -> surface mm affine and the meshes as in the files."""
    thick = subject.transform(XFM).mask("thick")
    space = subject_surface_space(subject, XFM, int(thick.sum()), data_source="responses")
    assert space.kind == "subject_surface" and space.name == SUBJECT and space.template == f"native:{SUBJECT}"
    np.testing.assert_array_equal(space.mask, thick)
    # the affine maps (z, y, x) indices where the NIfTI (x, y, z) voxel lies, in surface mm
    zyx = np.array([[2, 10, 60], [39, 0, 5]])
    np.testing.assert_allclose(nibabel.affines.apply_affine(space.affine, zyx),
                               nibabel.affines.apply_affine(functional_affine(), zyx[:, ::-1]), atol=1e-9)
    surfaces = space.surfaces
    assert (surfaces.transform, surfaces.mask_type, surfaces.subject) == (XFM, "thick", SUBJECT)
    for kind in ("pia", "wm", "inflated"):
        for hemi, short in (("left", "lh"), ("right", "rh")):
            image = nibabel.load(filestore / SUBJECT / "surfaces" / f"{kind}_{short}.gii")
            coords, faces = surfaces.meshes[kind][hemi]
            np.testing.assert_array_equal(coords, image.darrays[0].data)
            np.testing.assert_array_equal(faces, image.darrays[1].data)
    # the thin mask is found by its voxel count, as pycortex picks a mask for masked data
    thin = subject.transform(XFM).mask("thin")
    assert subject_surface_space(subject, XFM, int(thin.sum()), data_source="r").surfaces.mask_type == "thin"


def test_column_count_mismatch_names_the_masks(subject):
    with pytest.raises(SpaceMismatchError, match=r"story.hf5 has 17 voxel columns.*mask_thick.nii.gz"):
        subject_surface_space(subject, XFM, 17, data_source="story.hf5")
    with pytest.raises(SpaceMismatchError, match=r"mask_thick.nii.gz has \d+ True voxels"):
        subject_surface_space(subject, XFM, 17, data_source="story.hf5", mask_type="thick")


def test_swapped_or_mismatched_hemispheres_are_refused(filestore, tmp_path):
    folder = tmp_path / "db"
    shutil.copytree(filestore, folder)
    surfaces = folder / SUBJECT / "surfaces"
    for kind in ("pia", "wm"):  # the left files hold the right hemisphere and vice versa
        (surfaces / f"{kind}_lh.gii").rename(surfaces / "tmp.gii")
        (surfaces / f"{kind}_rh.gii").rename(surfaces / f"{kind}_lh.gii")
        (surfaces / "tmp.gii").rename(surfaces / f"{kind}_rh.gii")
    with pytest.raises(PycortexFormatError, match=r"pia_lh.gii lies right of .*pia_rh.gii.*swapped"):
        open_pycortex_subject(folder, SUBJECT).cortical_surfaces()
    shutil.rmtree(folder)
    shutil.copytree(filestore, folder)
    wm = nibabel.load(surfaces / "wm_lh.gii")
    coords, faces = (a.data for a in wm.darrays)
    write_gifti(surfaces / "wm_lh.gii", coords[:9000], faces[faces.max(axis=1) < 9000])
    with pytest.raises(PycortexFormatError, match=r"left \(lh\).*wm_lh.gii: 9000"):
        open_pycortex_subject(folder, SUBJECT).cortical_surfaces()
