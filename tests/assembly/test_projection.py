"""projection_matrix against nilearn's vol_to_surf (0.14.1) on fsaverage5 and MNI-like grids."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage, sparse

from surface_testutils import nilearn_reference, zero_filled_image

from encoding_core.assembly import projection
from encoding_core.assembly.projection import (check_mni_space, fsaverage_matrix, project,
                                               project_dataset_to_fsaverage, projection_matrix)
from encoding_core.common.errors import EncodingCoreError, InputError, SpaceMismatchError

TOL = 1e-6
N_TRS = 2


def _rotation(deg_x: float, deg_z: float) -> np.ndarray:
    ax, az = np.radians(deg_x), np.radians(deg_z)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ rx


@pytest.fixture(scope="module")
def grids(mni_mask):
    """Test grids: name -> (mask, affine)."""
    rng = np.random.default_rng(0)
    brain, affine = mni_mask
    out = {"mni": (brain, affine)}
    # x flipped (LAS, like FSL templates) and cropped to x in [-50, 40] mm: many vertices have no
    # sample inside the image (NaN), and samples reach the last half voxel (extrapolation)
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, brain.shape[0] - 1
    flipped, flipped_affine = brain[::-1], affine @ flip
    x_mm = flipped_affine[0, 0] * np.arange(brain.shape[0]) + flipped_affine[0, 3]
    keep = np.flatnonzero((x_mm >= -50) & (x_mm <= 40))
    shift = np.eye(4)
    shift[0, 3] = keep[0]
    cropped = flipped[keep[0]:keep[-1] + 1] & (rng.random((len(keep),) + brain.shape[1:]) < 0.8)
    out["cropped_las"] = (cropped, flipped_affine @ shift)
    # oblique, anisotropic native-like grid; 70% of voxels in the mask
    oblique = np.eye(4)
    oblique[:3, :3] = _rotation(10, 15) @ np.diag([2.5, 3.0, 3.5])
    shape = (76, 80, 58)
    oblique[:3, 3] = -oblique[:3, :3] @ (np.asarray(shape) / 2) + np.array([0, -18, 15])
    out["oblique"] = (rng.random(shape) < 0.7, oblique)
    return out


def _compare(mask, affine, mesh, interpolation="linear", mask_img=None, seed=0, **sampling):
    """Max |ours - nilearn| (NaN positions must agree) and the NaN count."""
    from nibabel import Nifti1Image

    rng = np.random.default_rng(seed)
    data = rng.standard_normal((N_TRS, int(mask.sum())))
    matrix = projection_matrix(mask, affine, mesh, interpolation=interpolation, mask_img=mask_img, **sampling)
    assert sparse.isspmatrix_csr(matrix) and matrix.shape == (len(np.asarray(_coords(mesh))), mask.sum())
    ours = project(matrix, data)
    kwargs = dict(sampling)
    if mask_img is not None:
        grid_mask = mask if isinstance(mask_img, str) else mask_img
        kwargs["mask_img"] = Nifti1Image(grid_mask.astype(np.uint8), affine)
    reference = nilearn_reference(zero_filled_image(mask, affine, data), mesh, interpolation, **kwargs)
    assert reference.shape == ours.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference))
    finite = ~np.isnan(reference)
    return float(np.max(np.abs(ours[finite] - reference[finite]))), int((~finite).any(axis=0).sum())


def _coords(mesh):
    from nilearn.surface import load_surf_mesh

    return load_surf_mesh(mesh).coordinates


SAMPLINGS = {
    "auto_line": {},
    "line_r2_n7": {"kind": "line", "radius": 2.0, "n_samples": 7},
    "line_depth": {"kind": "line", "depth": [-0.5, 0.0, 0.7, 1.5]},
    "ball": {"kind": "ball"},
    "ball_r4_n10": {"kind": "ball", "radius": 4.0, "n_samples": 10},
    "ball_n7_kmeans": {"kind": "ball", "n_samples": 7},
    "auto_depth": {"inner_mesh": "white"},
    "depth_n4": {"kind": "depth", "inner_mesh": "white", "n_samples": 4},
    "depth_list": {"kind": "depth", "inner_mesh": "white", "depth": [-0.2, 0.5, 1.3]},
    "line_ignores_inner": {"kind": "line", "inner_mesh": "white"},
}


def _sampling(fsaverage5, name, hemi="left"):
    sampling = dict(SAMPLINGS[name])
    if sampling.get("inner_mesh") == "white":
        sampling["inner_mesh"] = fsaverage5["white_matter"].parts[hemi]
    return sampling


@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
@pytest.mark.parametrize("name", sorted(SAMPLINGS))
def test_every_sampling_matches_nilearn_on_a_cropped_flipped_grid(fsaverage5, grids, name, interpolation):
    mask, affine = grids["cropped_las"]
    error, n_nan = _compare(mask, affine, fsaverage5["pial"].parts["left"], interpolation,
                            **_sampling(fsaverage5, name))
    assert error < TOL
    assert n_nan > 100  # the crop leaves many vertices without a sample: NaN in both


@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
@pytest.mark.parametrize("mask_img", ["data_mask", "other"])
@pytest.mark.parametrize("name", ["auto_line", "ball", "depth_n4"])
def test_mask_img_drops_samples_like_nilearn(fsaverage5, grids, name, mask_img, interpolation):
    mask, affine = grids["mni"]
    if mask_img == "other":  # a mask that cuts through the brain: z > 20 mm only
        z_mm = affine[2, 2] * np.arange(mask.shape[2]) + affine[2, 3]
        mask_img = np.broadcast_to(z_mm > 20, mask.shape).copy()
    error, n_nan = _compare(mask, affine, fsaverage5["pial"].parts["right"], interpolation,
                            mask_img=mask_img, **_sampling(fsaverage5, name, "right"))
    assert error < TOL
    if not isinstance(mask_img, str):
        assert n_nan > 1000  # vertices below z = 20 mm keep no sample


@pytest.mark.parametrize("grid", ["mni", "oblique"])
@pytest.mark.parametrize("mesh_name,hemi,name", [("pial", "left", "auto_line"), ("white_matter", "right", "auto_line"),
                                                 ("pial", "right", "auto_depth"), ("pial", "left", "ball"),
                                                 ("white_matter", "left", "line_depth")])
def test_matches_nilearn_on_whole_brain_grids(fsaverage5, grids, grid, mesh_name, hemi, name):
    mask, affine = grids[grid]
    error, _ = _compare(mask, affine, fsaverage5[mesh_name].parts[hemi], **_sampling(fsaverage5, name, hemi))
    assert error < TOL


def test_mesh_forms_give_the_same_matrix_and_polymesh_stacks_left_then_right(fsaverage5, grids):
    from nilearn.surface import InMemoryMesh, load_surf_mesh

    mask, affine = grids["mni"]
    left = fsaverage5["pial"].parts["left"]
    loaded = load_surf_mesh(left)
    by_path = projection_matrix(mask, affine, str(left.file_path))
    for form in (left, loaded, (loaded.coordinates, loaded.faces),
                 InMemoryMesh(loaded.coordinates, loaded.faces)):
        assert (projection_matrix(mask, affine, form) != by_path).nnz == 0
    both = projection_matrix(mask, affine, fsaverage5["pial"])
    right = projection_matrix(mask, affine, fsaverage5["pial"].parts["right"])
    assert both.shape == (20484, mask.sum())
    assert (both[:10242] != by_path).nnz == 0 and (both[10242:] != right).nnz == 0


def test_project_chunks_match_one_product(grids, fsaverage5):
    mask, affine = grids["cropped_las"]
    matrix = projection_matrix(mask, affine, fsaverage5["pial"].parts["left"])
    data = np.random.default_rng(1).standard_normal((7, int(mask.sum()))).astype(np.float32)
    whole = np.asarray(matrix @ data.T.astype(np.float64)).T
    chunked = project(matrix, data, chunk_trs=3)  # blocks of 3, 3 and 1 TRs
    np.testing.assert_array_equal(np.isnan(whole), np.isnan(chunked))
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)
    np.testing.assert_allclose(project(matrix, data[3]), whole[3], rtol=0, atol=1e-12)


def test_empty_vertices_zero_leaves_rows_empty(grids, fsaverage5):
    mask, affine = grids["cropped_las"]
    mesh = fsaverage5["pial"].parts["left"]
    with_nan = projection_matrix(mask, affine, mesh)
    with_zero = projection_matrix(mask, affine, mesh, empty_vertices="zero")
    empty = np.isnan(with_nan.sum(axis=1).A.ravel())
    assert empty.any()
    assert np.diff(with_zero.indptr)[empty].max() == 0
    assert (with_zero[~empty] != with_nan[~empty]).nnz == 0


def test_dataset_projection_equals_the_reference_per_tr_loop(fsaverage5, mni_mask):
    """Two 'stories' (TRs x voxels) -> (TRs, 20484), as the reference's vol_to_surf(img_t, pial) loop."""
    import nibabel
    from nilearn import surface

    mask, affine = mni_mask
    rng = np.random.default_rng(2)
    stories = [rng.standard_normal((3, int(mask.sum()))).astype(np.float32),
               rng.standard_normal((2, int(mask.sum()))).astype(np.float32)]
    ours = project_dataset_to_fsaverage(stories, mask, affine, dtype=np.float64)
    for data, projected in zip(stories, ours):
        assert projected.shape == (len(data), 20484)
        for t in range(len(data)):  # the reference: one NIfTI and two vol_to_surf calls per TR
            volume = np.zeros(mask.shape, dtype=np.float32)
            volume[mask] = data[t]
            image = nibabel.Nifti1Image(volume, affine)
            expected = np.concatenate([surface.vol_to_surf(image, fsaverage5["pial"].parts[h])
                                       for h in ("left", "right")])
            np.testing.assert_allclose(projected[t], expected, rtol=0, atol=TOL)


def test_dataset_projection_rejects_wrong_column_counts(mni_mask):
    mask, affine = mni_mask
    with pytest.raises(SpaceMismatchError, match="story B"):
        project_dataset_to_fsaverage([np.zeros((2, mask.sum())), np.zeros((2, 5))], mask, affine,
                                     names=["story A", "story B"])


# --------------------------------------------------------------------------- cache
def test_cache_reuses_the_matrix_by_content(tmp_path, grids, fsaverage5, monkeypatch):
    mask, affine = grids["cropped_las"]
    mesh = fsaverage5["pial"].parts["left"]
    first = projection_matrix(mask, affine, mesh, cache_dir=tmp_path)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary file left behind
    np.load(files[0], allow_pickle=False).close()  # plain arrays only

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the matrix was rebuilt instead of read from the cache")

    monkeypatch.setattr(projection, "_weights", no_rebuild)
    again = projection_matrix(mask, affine, mesh, cache_dir=tmp_path)
    assert (again != first).nnz == 0 or np.array_equal(np.isnan(again.data), np.isnan(first.data))
    np.testing.assert_array_equal(again.indptr, first.indptr)
    np.testing.assert_array_equal(again.indices, first.indices)
    np.testing.assert_array_equal(np.nan_to_num(again.data, nan=7.0), np.nan_to_num(first.data, nan=7.0))
    monkeypatch.undo()

    # every input that changes the numbers changes the key
    changed_affine = affine.copy()
    changed_affine[0, 3] += 0.5
    changed_mask = mask.copy()
    changed_mask[tuple(np.argwhere(mask)[0])] = False
    projection_matrix(changed_mask, affine, mesh, cache_dir=tmp_path)
    projection_matrix(mask, changed_affine, mesh, cache_dir=tmp_path)
    projection_matrix(mask, affine, fsaverage5["pial"].parts["right"], cache_dir=tmp_path)
    projection_matrix(mask, affine, mesh, radius=2.0, cache_dir=tmp_path)
    projection_matrix(mask, affine, mesh, interpolation="nearest", cache_dir=tmp_path)
    projection_matrix(mask, affine, mesh, mask_img="data_mask", cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 7


def test_a_corrupt_cache_entry_is_rebuilt(tmp_path, grids, fsaverage5, caplog):
    mask, affine = grids["cropped_las"]
    mesh = fsaverage5["pial"].parts["left"]
    good = projection_matrix(mask, affine, mesh, cache_dir=tmp_path)
    (entry,) = tmp_path.iterdir()
    entry.write_bytes(b"not an npz file")
    rebuilt = projection_matrix(mask, affine, mesh, cache_dir=tmp_path)
    assert "unreadable" in caplog.text
    np.testing.assert_array_equal(rebuilt.indices, good.indices)
    assert sparse.load_npz(entry).shape == good.shape  # the entry was rewritten


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs,message", [
    ({"kind": "cylinder"}, "kind must be one of"),
    ({"interpolation": "nearest_most_frequent"}, "not linear"),
    ({"interpolation": "cubic"}, "interpolation must be one of"),
    ({"kind": "depth"}, "needs inner_mesh"),
    ({"kind": "ball", "depth": [0.5]}, "does not take depth"),
    ({"mask_img": np.ones((3, 3, 3))}, "resample it to the data grid"),
    ({"mask_img": "brain"}, "mask_img must be"),
    ({"empty_vertices": "drop"}, "empty_vertices"),
    ({"n_samples": 0}, "n_samples must be"),
])
def test_bad_sampling_options_are_input_errors(grids, fsaverage5, kwargs, message):
    mask, affine = grids["cropped_las"]
    with pytest.raises(InputError, match=message):
        projection_matrix(mask, affine, fsaverage5["pial"].parts["left"], **kwargs)


def test_bad_grid_mesh_and_data_are_input_errors(grids, fsaverage5):
    mask, affine = grids["cropped_las"]
    mesh = fsaverage5["pial"].parts["left"]
    with pytest.raises(InputError, match="3-D"):
        projection_matrix(mask[0], affine, mesh)
    with pytest.raises(InputError, match="no True voxel"):
        projection_matrix(np.zeros_like(mask), affine, mesh)
    with pytest.raises(InputError, match="4x4"):
        projection_matrix(mask, affine[:3], mesh)
    with pytest.raises(InputError, match="not a surface mesh"):
        projection_matrix(mask, affine, "brain.txt")
    with pytest.raises(SpaceMismatchError, match="same hemispheres"):
        projection_matrix(mask, affine, fsaverage5["pial"], inner_mesh=fsaverage5["white_matter"].parts["left"])
    matrix = projection_matrix(mask, affine, mesh)
    with pytest.raises(SpaceMismatchError, match="columns"):
        project(matrix, np.zeros((2, 10)))
    bad = np.zeros((1, int(mask.sum())))
    bad[0, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        project(matrix, bad)
    assert issubclass(SpaceMismatchError, EncodingCoreError)


# --------------------------------------------------------------------------- MNI check
def test_mni_check_accepts_mni_grids(mni_mask):
    mask, affine = mni_mask
    check_mni_space(mask, affine)
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, mask.shape[0] - 1
    check_mni_space(mask[::-1], affine @ flip)  # LAS (FSL) orientation
    check_mni_space(mask[::2, ::2, ::2], affine @ np.diag([2, 2, 2, 1]))  # a 4 mm grid
    cortex_only = mask & ~ndimage.binary_erosion(mask, iterations=3)  # a 6 mm shell, like a cortex mask
    check_mni_space(cortex_only, affine)
    check_mni_space(ndimage.binary_dilation(mask, iterations=2), affine)  # a generous EPI brain mask
    check_mni_space(np.ones(mask.shape, dtype=bool), affine)  # no mask: the whole grid (reference option)


def test_mni_check_rejects_common_mistakes(mni_mask):
    mask, affine = mni_mask
    mistakes = {
        "identity affine (voxel indices as mm)": (mask, np.eye(4)),
        "(z, y, x) array with an (x, y, z) affine": (mask.transpose(2, 1, 0).copy(), affine),
        "shifted by 20 mm": (mask, affine + np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 20], [0, 0, 0, 0]])),
        "whole grid, identity affine": (np.ones(mask.shape, dtype=bool), np.eye(4)),
        "mm written as cm": (mask, affine @ np.diag([0.2, 0.2, 0.2, 1])),
    }
    oblique = affine.copy()
    oblique[:3, :3] = _rotation(0, 20) @ affine[:3, :3]
    mistakes["oblique native grid"] = (mask, oblique)
    for label, (m, a) in mistakes.items():
        with pytest.raises(SpaceMismatchError, match="MNI|axis|voxel sizes"):
            check_mni_space(m, a, source=label)
    with pytest.raises(SpaceMismatchError, match="identity"):
        check_mni_space(mask, np.eye(4), source="identity")  # the source names the data in the message
    with pytest.raises(SpaceMismatchError):
        fsaverage_matrix(mask, np.eye(4))
    fsaverage_matrix(mask, np.eye(4), check_space=False, kind="ball", n_samples=10)  # explicit opt-out


def test_projection_matrix_is_exported_lazily_from_the_package():
    """``encoding_core.projection_matrix`` is this function, and ``import encoding_core`` stays light."""
    import encoding_core

    assert encoding_core.projection_matrix is projection_matrix
    code = ("import sys, encoding_core\n"
            "heavy = [m for m in ('numpy', 'scipy', 'nilearn', 'nibabel') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(projection.Path(encoding_core.__file__).parents[1]))
    assert out.stdout.strip() == ""
