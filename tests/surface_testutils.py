"""Helpers for the volume -> surface tests: nilearn references and a synthetic pycortex subject.

The subject is written in pycortex's filestore layout (``surfaces/{pia,wm,inflated}_{lh,rh}.gii``,
``transforms/<xfm>/{matrices.xfm, reference.nii.gz, mask_<type>.nii.gz}``) from nilearn's
fsaverage5 meshes, with an oblique, anisotropic functional grid, so nothing is downloaded.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

SHAPE_XYZ = (80, 90, 40)
"""The functional grid in NIfTI (x, y, z) order; pycortex arrays are (40, 90, 80)."""
INFLATED_SCALE = 1.1
"""The synthetic inflated surface is fsaverage5's, scaled, so a test can tell it from fsaverage5."""


def zero_filled_image(mask, affine, data):
    """NIfTI (X, Y, Z, T) with ``data`` (T, n_mask) at the mask's True voxels, zeros elsewhere."""
    import nibabel

    volume = np.zeros(mask.shape + (data.shape[0],))
    volume[mask] = data.T
    return nibabel.Nifti1Image(volume, affine)


def nilearn_reference(image, mesh, interpolation="linear", **kwargs):
    """(T, n_vertices) from nilearn: ``vol_to_surf``, or its private nearest-voxel sampler."""
    from nilearn import surface

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Mean of empty slice" where nilearn returns NaN
        if interpolation == "linear":
            return np.atleast_2d(surface.vol_to_surf(image, mesh, interpolation="linear", **kwargs).T)
        # vol_to_surf 0.14.1 no longer accepts "nearest"; its nearest-voxel sampler is still there
        from nilearn.surface.surface import _nearest_voxel_sampling

        frames = np.moveaxis(np.asarray(image.get_fdata()), -1, 0)
        mask = kwargs.pop("mask_img", None)
        if mask is not None:
            mask = np.asarray(mask.get_fdata())
        inner = kwargs.pop("inner_mesh", None)
        return _nearest_voxel_sampling(
            frames, surface.load_surf_mesh(mesh), image.affine, kind=kwargs.pop("kind", "auto"),
            radius=kwargs.pop("radius", 3.0), n_points=kwargs.pop("n_samples", None), mask=mask,
            inner_mesh=None if inner is None else surface.load_surf_mesh(inner), depth=kwargs.pop("depth", None))


def write_gifti(path, coords, faces) -> None:
    import nibabel

    image = nibabel.gifti.GiftiImage(darrays=[
        nibabel.gifti.GiftiDataArray(np.asarray(coords, dtype=np.float32), intent="NIFTI_INTENT_POINTSET"),
        nibabel.gifti.GiftiDataArray(np.asarray(faces, dtype=np.int32), intent="NIFTI_INTENT_TRIANGLE")])
    nibabel.save(image, path)


def functional_affine(shape_xyz=SHAPE_XYZ) -> np.ndarray:
    """Oblique, anisotropic voxel (i, j, k) -> surface mm of a native functional grid."""
    a, b = np.radians(12), np.radians(-8)
    rotation = (np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
                @ np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]]))
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([2.4, 2.4, 4.1])
    affine[:3, 3] = -affine[:3, :3] @ (np.asarray(shape_xyz) / 2) + np.array([0.0, -20.0, 15.0])
    return affine


def write_pycortex_subject(db: Path, subject: str, fsaverage5, xfm: Optional[str] = None,
                           masks: Optional[dict[str, np.ndarray]] = None) -> Path:
    """Write ``<db>/<subject>/`` in pycortex's layout; returns the subject folder.

    Surfaces: fsaverage5 pial / white / inflated (scaled by INFLATED_SCALE) as pia / wm / inflated.
    Transform ``xfm`` (default ``<subject>_auto``): ``matrices.xfm`` (JSON, ``coord`` and ``magnet``)
    with the oblique grid of :func:`functional_affine`, ``reference.nii.gz`` with another (scanner)
    affine, and masks: ``thick`` (within 8 mm of the mid-thickness surface) and ``thin`` (2 mm),
    pycortex's definitions, or the given NIfTI-order (x, y, z) arrays.
    """
    import nibabel
    from nilearn.surface import load_surf_mesh
    from scipy.spatial import cKDTree

    folder = Path(db) / subject
    (folder / "surfaces").mkdir(parents=True)
    fiducial = []
    for hemi, part in (("lh", "left"), ("rh", "right")):
        meshes = {kind: load_surf_mesh(fsaverage5[name].parts[part])
                  for kind, name in (("pia", "pial"), ("wm", "white_matter"), ("inflated", "inflated"))}
        for kind, mesh in meshes.items():
            coords = mesh.coordinates * (INFLATED_SCALE if kind == "inflated" else 1.0)
            write_gifti(folder / "surfaces" / f"{kind}_{hemi}.gii", coords, mesh.faces)
        fiducial.append((meshes["pia"].coordinates + meshes["wm"].coordinates) / 2)
    xfm_dir = folder / "transforms" / (xfm or f"{subject}_auto")
    xfm_dir.mkdir(parents=True)
    surface_affine = functional_affine()
    coord = np.linalg.inv(surface_affine)
    scanner = surface_affine.copy()  # the reference's own (scanner) affine differs from the surface space
    scanner[:3, 3] += (7.0, -4.0, 30.0)
    (xfm_dir / "matrices.xfm").write_text(json.dumps(
        {"coord": coord.tolist(), "magnet": (scanner @ coord).tolist()}, sort_keys=True, indent=4))
    rng = np.random.default_rng(0)
    nibabel.save(nibabel.Nifti1Image(rng.random(SHAPE_XYZ, dtype=np.float32), scanner), xfm_dir / "reference.nii.gz")
    if masks is None:
        centres = nibabel.affines.apply_affine(surface_affine, np.argwhere(np.ones(SHAPE_XYZ, dtype=bool)))
        distance = cKDTree(np.vstack(fiducial)).query(centres)[0].reshape(SHAPE_XYZ)
        masks = {"thick": distance <= 8.0, "thin": distance <= 2.0}
    for mask_type, mask in masks.items():
        nibabel.save(nibabel.Nifti1Image(np.asarray(mask).astype(np.uint8), scanner),
                     xfm_dir / f"mask_{mask_type}.nii.gz")
    return folder
