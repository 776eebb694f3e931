"""Read a pycortex filestore subject (no pycortex needed) and project its volumes onto its cortex.

The Huth lab publishes LeBel et al. (ds003020) responses in each subject's own functional
volume and draws them with pycortex from ``derivative/pycortex-db/<SUBJECT>`` (transform
``<SUBJECT>_auto``). This module reads that filestore with nibabel and builds the
vertex x voxel matrix with :func:`encoding_core.assembly.projection.projection_matrix` (nilearn semantics).

What we rely on, in our words, with the pycortex source it comes from
(GitHub gallantlab/pycortex):

* Layout (``cortex/database.py`` ``Database.get_paths``; ``docs/database.rst``):
  ``<db>/<subject>/surfaces/<type>_<hemi>.<ext>`` with ``hemi`` in ``lh``/``rh`` and types
  such as ``pia``, ``wm``, ``inflated``, ``flat``; modern stores use GIfTI (``.gii``). The
  fiducial surface is ``(wm + pia) / 2`` unless a ``fiducial`` file exists
  (``Database.get_surf``). All types of one hemisphere must share their vertex count
  (pycortex itself does not check this). Units are mm, in the surfaces' own space.
* Transforms (``Database.get_xfm`` / ``save_xfm``; ``docs/transforms.rst``):
  ``<subject>/transforms/<xfm>/matrices.xfm`` is JSON with 4x4 matrices under the keys
  ``"coord"`` and ``"magnet"`` (old files may also carry ``"subject"``/``"epifile"``), and
  ``reference.nii.gz`` is the functional reference volume. Transforms always go *from the
  surface (fiducial) space to the functional volume*. ``coord`` maps surface mm to
  continuous voxel indices ``(i, j, k)`` of the reference NIfTI array
  (``Transform.__call__``: ``(xfm @ [x, y, z, 1])[:3]``); ``magnet`` maps surface mm to the
  reference's scanner mm, and ``save_xfm`` stores ``magnet = reference_affine @ coord``.
  pycortex samples with ``coord`` (``get_xfm`` defaults to it), so do we; when only
  ``magnet`` is present we use ``inv(reference_affine) @ magnet``.
* Axis order (``cortex/xfm.py`` ``Transform.shape = reference.shape[:3][::-1]``;
  ``Database.get_mask`` returns ``nibabel data .T != 0``, ``save_mask`` writes ``mask.T``;
  ``cortex/dataset/braindata.py``): pycortex volumes are ``(z, y, x)`` arrays, the transpose
  of the NIfTI ``(x, y, z)`` array; movies are ``(t, z, y, x)``.
* Masks (``get_paths``: ``transforms/<xfm>/mask_<type>.nii.gz``; ``docs/database.rst``,
  ``cortex.utils.get_cortical_mask`` docs): ``thick`` = voxels within 8 mm of the cortical
  surface, ``thin`` = within 2 mm; other types (``cortical``, ``nearest``,
  ``line_nearest``) may exist.
* Column order of masked data (``cortex/volume.py`` ``unmask``; braindata ``_find_mask``):
  a ``(t, v)`` array fills ``volume[:, mask]``, so columns are the mask's True voxels in
  C order of the ``(z, y, x)`` array (= Fortran order of the NIfTI array). pycortex picks
  the mask whose voxel count equals the column count; LeBel responses use the ``thick``
  mask of ``<SUBJECT>_auto``.
* pycortex's own samplers (``cortex/mapper/samplers.py``, ``point.py``, ``line.py``,
  ``mapper.py``): ``Volume.map()`` defaults to ``"nearest"``: the fiducial vertex in voxel
  coordinates, rounded (numpy ``round``), valid within ``(-0.5, size + 0.5)`` per axis and
  then clipped; ``"trilinear"`` takes the 8 neighbouring voxels there. With a flat surface,
  point mappers map only vertices used by the flat mesh's faces. ``"line_nearest"`` /
  ``"line_trilinear"`` average 64 samples at ``t = linspace(0, 1, 66)[1:-1]`` between wm and
  pia, each weighing 1/64; samples outside the volume are dropped *without* renormalising.

The matrix built here uses nilearn's ``"depth"`` sampling between pia (depth 0) and wm
(depth 1) instead (default 10 depths, trilinear, renormalised over kept samples), so it
equals ``vol_to_surf(nifti, pia, inner_mesh=wm)`` on the NIfTI that pycortex's
``Volume.save_nii`` would write, with affine ``inv(coord)``. :data:`PYCORTEX_LINE_NEAREST`
gives pycortex's line_nearest positions (identical inside the volume; at its border we
renormalise where pycortex does not).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from scipy import sparse

from encoding_core.assembly.data_model import CORTICAL_SURFACE_TYPES, CorticalSurfaces, Space
from encoding_core.assembly.projection import PathLike, projection_matrix
from encoding_core.common.errors import PycortexFormatError, SpaceMismatchError

logger = logging.getLogger(__name__)

HEMIS = {"lh": "left", "rh": "right"}
SURFACE_TYPES = CORTICAL_SURFACE_TYPES
DEFAULT_MASK_TYPE = "thick"
"""LeBel responses use the ``thick`` mask (voxels within 8 mm of the cortex) of ``<SUBJECT>_auto``."""
SUBJECT_SAMPLING = {"kind": "depth", "n_samples": 10, "interpolation": "linear"}
"""Default voxel -> vertex sampling on a subject's cortex: nilearn's "depth" kind, 10 depths from
the pial surface (0) to the white-matter surface (1), trilinear."""
#: pycortex's ``line_nearest`` sample positions as nilearn "depth" options (64 interior depths).
PYCORTEX_LINE_NEAREST = {"kind": "depth", "interpolation": "nearest",
                         "depth": tuple(np.linspace(0.0, 1.0, 66)[1:-1])}
#: (z, y, x) index -> (x, y, z) index: swaps the first and third voxel axes.
ZYX_TO_XYZ = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def _affine_4x4(value: Any, where: str) -> np.ndarray:
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PycortexFormatError(f"{where} is not a numeric 4x4 matrix.") from None
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise PycortexFormatError(f"{where} must be a finite 4x4 matrix, got shape {matrix.shape}.")
    if not np.allclose(matrix[3], (0, 0, 0, 1)) or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise PycortexFormatError(f"{where} must be an invertible affine with last row (0, 0, 0, 1).")
    return matrix


@dataclass(frozen=True)
class PycortexTransform:
    """One ``transforms/<name>/`` folder.

    coord: (4, 4) surface mm -> continuous (i, j, k) index of the reference NIfTI array.
    reference_shape: (x, y, z) of the NIfTI reference; ``volume_shape`` is pycortex's
    (z, y, x). reference_affine: the reference's voxel -> scanner mm. masks: type -> file.
    """

    name: str
    folder: Path
    coord: np.ndarray
    magnet: Optional[np.ndarray]
    reference_shape: tuple[int, int, int]
    reference_affine: np.ndarray
    masks: dict[str, Path] = field(default_factory=dict)

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        return tuple(reversed(self.reference_shape))

    def surface_affine(self) -> np.ndarray:
        """(4, 4) pycortex (z, y, x) voxel index -> surface mm (what projection needs)."""
        return np.linalg.inv(self.coord) @ ZYX_TO_XYZ

    def scanner_affine(self) -> np.ndarray:
        """(4, 4) pycortex (z, y, x) voxel index -> the reference's scanner mm."""
        return self.reference_affine @ ZYX_TO_XYZ

    def mask(self, mask_type: str = DEFAULT_MASK_TYPE) -> np.ndarray:
        """The ``mask_<type>.nii.gz`` mask as a (z, y, x) bool array (pycortex orientation)."""
        import nibabel

        if mask_type not in self.masks:
            raise PycortexFormatError(
                f"No mask_{mask_type}.nii.gz in {self.folder}; available mask types: {sorted(self.masks) or 'none'}.")
        path = self.masks[mask_type]
        try:
            data = np.asanyarray(nibabel.load(path).dataobj)
        except Exception as exc:  # noqa: BLE001 - any nibabel failure is a bad file
            raise PycortexFormatError(f"Cannot read mask {path}: {exc}") from None
        data = data.reshape(data.shape[:3]) if data.ndim == 4 and data.shape[3] == 1 else data
        if data.shape != self.reference_shape:
            raise PycortexFormatError(
                f"Mask {path} has shape {data.shape} but the reference {self.folder / 'reference.nii.gz'} "
                f"has {self.reference_shape}; the mask was made for another transform. Use the mask saved "
                "with this transform.")
        return data.T != 0

    def find_mask(self, n_columns: int, source: str = "the response data",
                  prefer: str = DEFAULT_MASK_TYPE) -> tuple[str, np.ndarray]:
        """The (type, (z, y, x) mask) whose voxel count equals ``n_columns`` (as pycortex picks
        a mask for masked data), trying ``prefer`` first."""
        counts = {}
        for mask_type in sorted(self.masks, key=lambda t: (t != prefer, t)):
            mask = self.mask(mask_type)
            counts[self.masks[mask_type].name] = int(mask.sum())
            if counts[self.masks[mask_type].name] == n_columns:
                return mask_type, mask
        raise SpaceMismatchError(
            f"{source} has {n_columns} voxel columns but no mask of transform {self.name!r} ({self.folder}) has "
            f"that many True voxels ({counts or 'no mask_*.nii.gz files'}); the responses belong to another subject "
            "or transform, so they cannot be drawn on this subject's cortex.")


def check_response_columns(mask: np.ndarray, n_columns: int, *, mask_source: str, data_source: str) -> None:
    """Raise SpaceMismatchError unless the mask has exactly ``n_columns`` True voxels."""
    n_mask = int(np.count_nonzero(mask))
    if n_mask != n_columns:
        raise SpaceMismatchError(
            f"{data_source} has {n_columns} voxel columns but {mask_source} has {n_mask} True voxels; "
            "responses and mask must come from the same subject, transform and mask type "
            "(LeBel responses use the <SUBJECT>_auto 'thick' mask).")


class PycortexSubject:
    """A subject folder ``<db>/<subject>/`` of a pycortex filestore."""

    def __init__(self, folder: PathLike):
        self.folder = Path(folder)
        self.name = self.folder.name
        surfaces = self.folder / "surfaces"
        if not surfaces.is_dir() or not (self.folder / "transforms").is_dir():
            raise PycortexFormatError(
                f"{self.folder} is not a pycortex subject folder: it needs surfaces/ and transforms/ "
                "(e.g. derivative/pycortex-db/UTS01 of ds003020).")
        self.surface_files: dict[str, dict[str, Path]] = {}
        self._surfaces: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        for path in sorted(surfaces.iterdir()):
            stem = path.name.split(".")[0]
            kind, _, hemi = stem.rpartition("_")
            if kind and hemi in HEMIS:
                self.surface_files.setdefault(kind, {})[hemi] = path

    def __repr__(self) -> str:
        return f"PycortexSubject({str(self.folder)!r}, surfaces={sorted(self.surface_files)})"

    # ---------------------------------------------------------------- surfaces
    def _surface_path(self, kind: str, hemi: str) -> Path:
        path = self.surface_files.get(kind, {}).get(hemi)
        if path is None:
            raise PycortexFormatError(
                f"No {kind}_{hemi} surface in {self.folder / 'surfaces'}; found {sorted(self.surface_files)}.")
        if not path.name.endswith((".gii", ".gii.gz")):
            raise PycortexFormatError(f"{path}: only GIfTI surfaces (.gii) are read; convert this file to GIfTI.")
        return path

    def surface_arrays(self, kind: str, hemi: str) -> tuple[np.ndarray, np.ndarray]:
        """One surface as ``(coordinates (n, 3) mm, faces (f, 3) int)``, read once and kept."""
        key = (kind, hemi)
        if key not in self._surfaces:
            from nilearn.surface import load_surf_mesh

            path = self._surface_path(kind, hemi)
            try:
                loaded = load_surf_mesh(path)
            except Exception as exc:  # noqa: BLE001 - nibabel/nilearn raise many types for bad files
                raise PycortexFormatError(f"Cannot read surface {path}: {exc}") from None
            coords, faces = np.asarray(loaded.coordinates), np.asarray(loaded.faces)
            if coords.ndim != 2 or coords.shape[1:] != (3,) or faces.ndim != 2 or faces.shape[1:] != (3,):
                raise PycortexFormatError(f"{path}: a surface needs coordinates (n, 3) and faces (f, 3), got "
                                          f"{coords.shape} and {faces.shape}.")
            if faces.size and (faces.min() < 0 or faces.max() >= len(coords)):
                raise PycortexFormatError(f"{path}: its faces index vertices outside 0..{len(coords) - 1}; "
                                          "the file is damaged.")
            self._surfaces[key] = (coords, faces)
        return self._surfaces[key]

    def hemisphere(self, kind: str, hemi: str):
        """One surface as a nilearn InMemoryMesh (coordinates in mm)."""
        from nilearn.surface import InMemoryMesh

        return InMemoryMesh(*self.surface_arrays(kind, hemi))

    def mesh(self, kind: str = "inflated"):
        """Both hemispheres of one surface type as a nilearn PolyMesh (left = lh, right = rh)."""
        from nilearn.surface import PolyMesh

        return PolyMesh(left=self.hemisphere(kind, "lh"), right=self.hemisphere(kind, "rh"))

    def check_surfaces(self, kinds=SURFACE_TYPES) -> dict[str, int]:
        """Check each hemisphere has one vertex count across ``kinds`` and that lh lies left of rh.

        Returns ``{"lh": n, "rh": n}``; raises PycortexFormatError naming the files.
        """
        counts = {}
        for hemi in HEMIS:
            per_kind = {kind: len(self.surface_arrays(kind, hemi)[0]) for kind in kinds}
            if len(set(per_kind.values())) != 1:
                listing = ", ".join(f"{self._surface_path(k, hemi).name}: {n}" for k, n in per_kind.items())
                raise PycortexFormatError(
                    f"The {HEMIS[hemi]} ({hemi}) surfaces in {self.folder / 'surfaces'} disagree on the vertex "
                    f"count ({listing}); all surface types of one hemisphere must come from the same FreeSurfer "
                    "reconstruction.")
            counts[hemi] = next(iter(per_kind.values()))
        for kind in [k for k in kinds if k in ("pia", "wm")]:  # folded surfaces keep the brain's left/right
            x_left = float(np.mean(self.surface_arrays(kind, "lh")[0][:, 0]))
            x_right = float(np.mean(self.surface_arrays(kind, "rh")[0][:, 0]))
            if not x_left < x_right:
                raise PycortexFormatError(
                    f"{self._surface_path(kind, 'lh')} lies right of {self._surface_path(kind, 'rh')} (mean x "
                    f"{x_left:.1f} mm vs {x_right:.1f} mm): the hemispheres look swapped. pycortex stores the left "
                    "hemisphere as *_lh and the right as *_rh, in RAS coordinates.")
        return counts

    def cortical_surfaces(self, *, transform: str = "", mask_type: str = "",
                          sampling: Optional[dict[str, Any]] = None) -> CorticalSurfaces:
        """pia, wm and inflated of both hemispheres (checked) as :class:`CorticalSurfaces`."""
        self.check_surfaces(SURFACE_TYPES)
        meshes = {kind: {HEMIS[h]: self.surface_arrays(kind, h) for h in HEMIS} for kind in SURFACE_TYPES}
        return CorticalSurfaces(subject=self.name, meshes=meshes, transform=transform, mask_type=mask_type,
                                source=str(self.folder), sampling=dict(sampling or SUBJECT_SAMPLING))

    # ---------------------------------------------------------------- transforms
    def transform_names(self) -> list[str]:
        return sorted(p.name for p in (self.folder / "transforms").iterdir() if p.is_dir())

    def transform(self, name: str) -> PycortexTransform:
        import nibabel

        folder = self.folder / "transforms" / name
        if not folder.is_dir():
            raise PycortexFormatError(f"No transform {name!r} in {self.folder / 'transforms'}; "
                                      f"available: {self.transform_names()}.")
        xfm_file, reference_file = folder / "matrices.xfm", folder / "reference.nii.gz"
        try:
            matrices = json.loads(xfm_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PycortexFormatError(f"{xfm_file} is missing.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PycortexFormatError(f"{xfm_file} is not a pycortex JSON transform file: {exc}") from None
        if not isinstance(matrices, dict):
            raise PycortexFormatError(f"{xfm_file} must hold a JSON object with 'coord' and 'magnet' matrices.")
        try:
            reference = nibabel.load(reference_file)
        except FileNotFoundError:
            raise PycortexFormatError(f"{reference_file} is missing; pycortex stores the functional reference "
                                      "volume of every transform there.") from None
        except Exception as exc:  # noqa: BLE001
            raise PycortexFormatError(f"Cannot read {reference_file}: {exc}") from None
        if len(reference.shape) < 3:
            raise PycortexFormatError(f"{reference_file} must be a 3-D (or 4-D) volume, got shape {reference.shape}.")
        reference_affine = _affine_4x4(reference.affine, f"the affine of {reference_file}")
        magnet = _affine_4x4(matrices["magnet"], f"'magnet' in {xfm_file}") if "magnet" in matrices else None
        if "coord" in matrices:
            coord = _affine_4x4(matrices["coord"], f"'coord' in {xfm_file}")
        elif magnet is not None:
            coord = np.linalg.inv(reference_affine) @ magnet  # pycortex's save_xfm relation
        else:
            raise PycortexFormatError(f"{xfm_file} has neither a 'coord' nor a 'magnet' matrix "
                                      f"(keys: {sorted(matrices)}).")
        masks = {p.name[len("mask_"):-len(".nii.gz")]: p for p in sorted(folder.glob("mask_*.nii.gz"))}
        return PycortexTransform(name=name, folder=folder, coord=coord, magnet=magnet,
                                 reference_shape=tuple(int(n) for n in reference.shape[:3]),
                                 reference_affine=reference_affine, masks=masks)

    # ---------------------------------------------------------------- projection
    def projection_matrix(self, xfm: Union[str, PycortexTransform], mask: Union[str, np.ndarray] = "thick", *,
                          outer: str = "pia", inner: str = "wm", kind: str = "depth",
                          cache_dir: Optional[PathLike] = None, **sampling: Any) -> sparse.csr_matrix:
        """Vertex x voxel matrix (n_lh + n_rh, n_mask_voxels) onto this subject's cortex.

        xfm: transform name or object. mask: a mask type of that transform, or a (z, y, x)
        bool array (pycortex orientation); its True voxels in C order are the columns.
        Samples between ``outer`` (depth 0) and ``inner`` (depth 1) surfaces; ``sampling``
        goes to :func:`encoding_core.assembly.projection.projection_matrix` (n_samples, depth, interpolation, ...,
        or ``**PYCORTEX_LINE_NEAREST``). Rows: lh vertices then rh vertices, so the result
        draws on ``self.mesh("inflated")``.
        """
        transform = xfm if isinstance(xfm, PycortexTransform) else self.transform(xfm)
        if isinstance(mask, str):
            mask = transform.mask(mask)
        mask = np.asarray(mask)
        if mask.shape != transform.volume_shape:
            raise SpaceMismatchError(
                f"mask has shape {mask.shape} but transform {transform.name!r} has (z, y, x) volume shape "
                f"{transform.volume_shape} (reference {transform.folder / 'reference.nii.gz'}); pass the mask "
                "in pycortex orientation (the NIfTI array transposed).")
        uses_inner = kind in ("depth", "auto")
        self.check_surfaces((outer, inner) if uses_inner else (outer,))
        inner_mesh = self.mesh(inner) if uses_inner else None
        return projection_matrix(mask, transform.surface_affine(), self.mesh(outer), inner_mesh=inner_mesh,
                                 kind=kind, cache_dir=cache_dir, **sampling)


def subject_surface_space(subject: PycortexSubject, transform: str, n_columns: int, *, data_source: str,
                          mask_type: Optional[str] = None,
                          sampling: Optional[dict[str, Any]] = None) -> Space:
    """The ``subject_surface`` Space of voxel data with ``n_columns`` columns in ``transform``'s volume.

    mask_type: the mask the columns come from; None picks the mask whose True-voxel count is
    ``n_columns``, ``thick`` first (as pycortex does). data_source names the data in errors.
    The space holds the (z, y, x) mask, the index -> surface mm affine and the checked pia, wm
    and inflated meshes, so maps can be projected and drawn without the filestore.
    Raises SpaceMismatchError when no mask fits the columns, PycortexFormatError for bad files.
    """
    xfm = subject.transform(transform)
    if mask_type is None:
        mask_type, mask = xfm.find_mask(n_columns, source=data_source)
    else:
        mask = xfm.mask(mask_type)
        check_response_columns(mask, n_columns, mask_source=str(xfm.masks[mask_type]), data_source=data_source)
    surfaces = subject.cortical_surfaces(transform=transform, mask_type=mask_type, sampling=sampling)
    return Space.subject_surface(subject.name, mask, xfm.surface_affine(), surfaces)


def open_pycortex_subject(db_dir: PathLike, subject: str) -> PycortexSubject:
    """The subject ``<db_dir>/<subject>/`` of a pycortex filestore (e.g. ds003020's pycortex-db)."""
    folder = Path(db_dir) / subject
    if not folder.is_dir():
        available = sorted(p.name for p in Path(db_dir).iterdir() if p.is_dir()) if Path(db_dir).is_dir() else []
        raise PycortexFormatError(f"No subject folder {folder}; subjects in {db_dir}: {available or 'none'}.")
    return PycortexSubject(folder)
