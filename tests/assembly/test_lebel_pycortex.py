"""The LeBel loader finds the subject's pycortex filestore and gives its responses a surface space."""
from __future__ import annotations

import nibabel
import numpy as np
import pytest
from lebel_tree import N_VOXELS, build_lebel_tree
from surface_testutils import SHAPE_XYZ, functional_affine, write_pycortex_subject

from encoding_core.assembly.assembly_loader import load_assembly, save_assembly
from encoding_core.assembly.lebel import load_lebel
from encoding_core.assembly.lebel_pycortex import find_pycortex_subject
from encoding_core.common.errors import PycortexFormatError, SpaceMismatchError


def _cortical_mask(n_voxels: int) -> np.ndarray:
    """A NIfTI-order (x, y, z) mask of ``n_voxels`` voxels spread over the grid."""
    mask = np.zeros(SHAPE_XYZ, dtype=bool)
    mask.flat[np.linspace(0, mask.size - 1, n_voxels).astype(int)] = True
    return mask


@pytest.mark.parametrize("derivative", ["derivative", "derivatives"])
def test_pycortex_db_gives_the_subject_surface_space(tmp_path, fsaverage5, derivative):
    build_lebel_tree(tmp_path, subjects=("UTS01", "UTS02"))
    thick = _cortical_mask(N_VOXELS)
    db = tmp_path / derivative / "pycortex-db"
    write_pycortex_subject(db, "UTS01", fsaverage5, masks={"thick": thick, "thin": _cortical_mask(7)})
    assert find_pycortex_subject(tmp_path, "UTS01") == db / "UTS01"
    assert find_pycortex_subject(tmp_path, "UTS02") is None
    assembly = load_lebel(tmp_path, "UTS01")
    space = assembly.space
    assert space.kind == "subject_surface" and space.name == "UTS01"
    assert space.surfaces.transform == "UTS01_auto" and space.surfaces.mask_type == "thick"
    np.testing.assert_array_equal(space.mask, thick.T)  # pycortex orientation: (z, y, x)
    assert space.n_columns() == N_VOXELS == assembly.n_voxels
    zyx = np.argwhere(space.mask)[:3]
    np.testing.assert_allclose(nibabel.affines.apply_affine(space.affine, zyx),
                               nibabel.affines.apply_affine(functional_affine(), zyx[:, ::-1]), atol=1e-9)
    # the other subject has no filestore: its volume space stays unknown
    assert load_lebel(tmp_path, "UTS02").space.kind == "unknown"
    # opting out, through the generic loader
    assert load_assembly(tmp_path, subject="UTS01", surfaces=False).space.kind == "unknown"


def test_without_pycortex_db_the_volume_space_stays(tmp_path):
    build_lebel_tree(tmp_path, subjects=("UTS01", "UTS02"))
    assert load_lebel(tmp_path, "UTS01").space.kind == "unknown"
    mask = np.zeros((2, 3, 10), dtype=bool)
    mask.flat[:N_VOXELS] = True
    space = load_lebel(tmp_path, "UTS01", mask=mask, affine=np.eye(4)).space
    assert space.kind == "volume" and space.template == "native:UTS01"  # the subject's own volume, never MNI


def test_mask_that_does_not_match_the_responses_is_a_clear_error(tmp_path, fsaverage5):
    build_lebel_tree(tmp_path, subjects=("UTS01",))
    write_pycortex_subject(tmp_path / "derivative" / "pycortex-db", "UTS01", fsaverage5,
                           masks={"thick": _cortical_mask(N_VOXELS + 5)})
    with pytest.raises(SpaceMismatchError, match=rf"UTS01's responses\) has {N_VOXELS} voxel columns.*"
                                                 rf"mask_thick.nii.gz': {N_VOXELS + 5}"):
        load_lebel(tmp_path, "UTS01")


def test_a_reference_that_does_not_fit_the_mask_names_both_files(tmp_path, fsaverage5):
    build_lebel_tree(tmp_path, subjects=("UTS01",))
    folder = write_pycortex_subject(tmp_path / "derivative" / "pycortex-db", "UTS01", fsaverage5,
                                    masks={"thick": _cortical_mask(N_VOXELS)})
    xfm = folder / "transforms" / "UTS01_auto"
    nibabel.save(nibabel.Nifti1Image(np.zeros((80, 90, 41), dtype=np.float32), np.eye(4)), xfm / "reference.nii.gz")
    with pytest.raises(PycortexFormatError, match=r"mask_thick.nii.gz has shape \(80, 90, 40\).*reference.nii.gz"):
        load_lebel(tmp_path, "UTS01")


def test_subject_surface_assembly_survives_the_native_format(tmp_path, fsaverage5):
    build_lebel_tree(tmp_path, subjects=("UTS01",))
    write_pycortex_subject(tmp_path / "derivative" / "pycortex-db", "UTS01", fsaverage5,
                           masks={"thick": _cortical_mask(N_VOXELS)})
    assembly = load_lebel(tmp_path, "UTS01", stories=["sweetaspie"], test_story=None)
    again = load_assembly(save_assembly(assembly, tmp_path / "uts01.h5"))
    a, b = assembly.space, again.space
    assert (b.kind, b.name, b.template) == (a.kind, a.name, a.template)
    np.testing.assert_array_equal(b.mask, a.mask)
    np.testing.assert_array_equal(b.affine, a.affine)
    assert (b.surfaces.transform, b.surfaces.mask_type, b.surfaces.sampling) == \
        (a.surfaces.transform, a.surfaces.mask_type, a.surfaces.sampling)
    for kind in ("pia", "wm", "inflated"):
        for hemi in ("left", "right"):
            for x, y in zip(a.surfaces.meshes[kind][hemi], b.surfaces.meshes[kind][hemi]):
                np.testing.assert_array_equal(x, y)
                assert x.dtype == y.dtype  # same dtype: the projection cache key stays the same
