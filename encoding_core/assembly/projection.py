"""Volume -> surface projection as one sparse matrix, with nilearn's ``vol_to_surf`` semantics.

nilearn's :func:`nilearn.surface.vol_to_surf` is linear in the image for its ``"linear"``
interpolation: each vertex value is the mean, over the vertex's *kept* sample points, of
the trilinear interpolation of the image at that point. Only the geometry decides the
weights, so the whole map is a fixed ``(n_vertices, n_voxels)`` matrix. We build that
matrix once (cached on disk by content) and project a map, or a whole story of TRs, with
one sparse product instead of one ``vol_to_surf`` call per TR and hemisphere.

Behaviour reproduced (read from nilearn 0.14.1, ``nilearn/surface/surface.py``; the
functions named are nilearn's private helpers):

* Sample points (``_sample_locations``), ``kind``:
  ``"line"``: ``n_samples`` points (default 10) on the vertex's outer normal, from
  ``+radius`` to ``-radius`` mm; with ``depth`` the points are at ``-radius * depth``
  (positive depth goes inwards). The normal is the unit sum of the unit normals of the
  faces around the vertex (right-hand rule). An ``inner_mesh`` is ignored by this kind.
  ``"ball"``: ``n_samples`` points (default 20) of a fixed cloud filling the unit ball,
  scaled by ``radius`` mm (nilearn ships the cloud for 10/20/40/80/160 points and
  computes a seeded k-means cloud otherwise); ``depth`` is refused.
  ``"depth"``: points from the outer mesh (depth 0) to ``inner_mesh`` (depth 1), at
  ``linspace(0, 1, n_samples)`` (default 10) or at the given ``depth`` fractions.
  ``"auto"``: ``"depth"`` when ``inner_mesh`` is given, else ``"line"``.
  Points are mapped to continuous voxel coordinates with the inverse affine.
* A sample is *kept* when every voxel coordinate is ``>= 0`` and ``< size`` of that axis
  (continuous coordinates, not rounded), and, with ``mask_img``, when the voxel holding
  ``floor(coordinate)`` is in ``mask_img`` (``_masked_indices``).
* ``interpolation="linear"`` (``_interpolation_sampling``): scipy's
  ``RegularGridInterpolator`` on the voxel grid, ``fill_value=None``. Its cell is
  ``i = clip(floor(x), 0, size - 2)`` with ``t = x - i``, so a kept point in the last
  half-open voxel ``(size - 1, size)`` is linearly *extrapolated* (weights ``1 - t < 0``
  and ``t > 1``); we reproduce that. A vertex value is ``nanmean`` over samples: every
  kept sample weighs ``1 / n_kept`` (weights are renormalised by the count of kept
  samples, not by interpolation weights). Voxels outside the data ``mask`` enter the
  interpolation as 0 (``vol_to_surf`` of the zero-filled volume).
* ``interpolation="nearest"``: not an option of ``vol_to_surf`` in 0.14.1 (it accepts
  ``"linear"`` and ``"nearest_most_frequent"``; the latter is a mode, not linear, so no
  matrix exists for it). We still offer nilearn's nearest-voxel averaging, which is what
  ``_nearest_voxel_sampling`` / ``_projection_matrix`` compute: round points with
  ``np.round`` (half to even), keep rounded points inside the grid and ``mask_img``,
  average the kept voxels (a voxel hit twice counts twice).
* NaN: a vertex with no kept sample gets NaN in every image (``nanmean`` of nothing /
  an all-zero row). With ``empty_vertices="nan"`` (default) such rows hold a single
  stored NaN, so ``matrix @ data`` gives NaN exactly where ``vol_to_surf`` does.
  Non-finite *data* are not reproducible by a matrix (``vol_to_surf`` drops NaN samples
  from the mean); :func:`project` refuses them.
* ``mask_img``: ``vol_to_surf`` resamples a mask image to the data grid (nearest); here it
  must already be on the grid (a 3-D array of the mask's shape), or ``"data_mask"`` to
  use the data ``mask`` itself.

Data columns are the True voxels of ``mask`` in C order, as in ``Space.volume``.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
from scipy import ndimage, sparse

from encoding_core.common.errors import CacheError, InputError, SpaceMismatchError
from encoding_core.common.storage import atomic_output

logger = logging.getLogger(__name__)

#: Bump when the numbers a cached matrix holds would change (part of the cache key).
MATRIX_FORMAT = "vol_to_surf-nilearn-0.14.1/v1"
KINDS = ("auto", "line", "ball", "depth")
INTERPOLATIONS = ("linear", "nearest")
DEFAULT_N_SAMPLES = {"line": 10, "ball": 20, "depth": 10}
CACHED_BALL_SIZES = (10, 20, 40, 80, 160)
HEMISPHERES = ("left", "right")

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------- inputs
def _check_grid(mask: Any, affine: Any, name: str = "mask") -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise InputError(f"{name} must be a 3-D boolean array (the voxel grid), got shape {mask.shape}.")
    if mask.dtype != bool:
        if not np.isin(np.unique(mask), (0, 1)).all():
            raise InputError(f"{name} must be boolean (or 0/1); got values other than 0 and 1.")
        mask = mask.astype(bool)
    if not mask.any():
        raise InputError(f"{name} has no True voxel: there is nothing to project.")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InputError(f"affine must be a finite 4x4 voxel-to-mm matrix, got shape {affine.shape}.")
    if not np.allclose(affine[3], (0, 0, 0, 1)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError("affine must be an invertible voxel-to-mm matrix with last row (0, 0, 0, 1).")
    return mask, affine


def _mesh_parts(mesh: Any, name: str) -> list[tuple[Optional[str], np.ndarray, np.ndarray]]:
    """``[(hemisphere or None, coords (n, 3), faces (f, 3))]``; a PolyMesh gives left then right."""
    from nilearn.surface import PolyMesh, load_surf_mesh

    if isinstance(mesh, PolyMesh):
        parts = [(h, mesh.parts[h]) for h in HEMISPHERES if h in mesh.parts]
    else:
        parts = [(None, mesh)]
    out = []
    for hemi, part in parts:
        try:
            loaded = load_surf_mesh(part)
        except (ValueError, TypeError, OSError) as exc:
            label = f"{name}[{hemi!r}]" if hemi else name
            raise InputError(f"{label} is not a surface mesh nilearn can read ({exc}); pass a .gii path, "
                             "a (coords, faces) tuple, an InMemoryMesh or a PolyMesh.") from None
        coords, faces = np.asarray(loaded.coordinates), np.asarray(loaded.faces)
        if coords.ndim != 2 or coords.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
            raise InputError(f"{name}: coordinates must be (n, 3) and faces (f, 3); got {coords.shape}, {faces.shape}.")
        out.append((hemi, coords, faces))
    return out


def _resolve_sampling(kind: str, inner_mesh: Any, radius: float, n_samples: Optional[int],
                      depth: Optional[Sequence[float]], interpolation: str,
                      empty_vertices: str) -> dict[str, Any]:
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}.")
    if interpolation == "nearest_most_frequent":
        raise InputError("interpolation='nearest_most_frequent' takes the most frequent value around each "
                         "vertex; it is not linear, so no projection matrix exists. Use 'linear' or 'nearest'.")
    if interpolation not in INTERPOLATIONS:
        raise InputError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}.")
    if empty_vertices not in ("nan", "zero"):
        raise InputError(f"empty_vertices must be 'nan' or 'zero', got {empty_vertices!r}.")
    if kind == "depth" and inner_mesh is None:
        raise InputError("kind='depth' needs inner_mesh (e.g. the white-matter mesh under a pial mesh).")
    resolved = ("depth" if inner_mesh is not None else "line") if kind == "auto" else kind
    if resolved == "ball" and depth is not None:
        raise InputError("kind='ball' does not take depth; set depth=None or use kind='line'/'depth'.")
    if inner_mesh is not None and resolved != "depth":
        logger.warning("inner_mesh is ignored with kind=%r (as in nilearn's vol_to_surf).", resolved)
    if not np.isfinite(radius) or radius < 0:
        raise InputError(f"radius must be a finite distance in mm >= 0, got {radius!r}.")
    if depth is not None:
        depth = [float(d) for d in np.atleast_1d(np.asarray(depth, dtype=np.float64))]
        if not depth or not np.isfinite(depth).all():
            raise InputError("depth must be a non-empty sequence of finite fractions.")
        n_points = len(depth)
    else:
        n_points = DEFAULT_N_SAMPLES[resolved] if n_samples is None else int(n_samples)
        if n_points < 1:
            raise InputError(f"n_samples must be >= 1, got {n_samples!r}.")
    return {"kind": resolved, "radius": float(radius), "n_points": n_points, "depth": depth,
            "interpolation": interpolation, "empty_vertices": empty_vertices}


def resolved_sampling(*, kind: str = "auto", inner_mesh: Any = None, radius: float = 3.0,
                      n_samples: Optional[int] = None, depth: Optional[Sequence[float]] = None,
                      interpolation: str = "linear", empty_vertices: str = "nan", **other: Any) -> dict[str, Any]:
    """The sampling :func:`projection_matrix` applies for these options, resolved as a plain dict:
    kind ("line" / "ball" / "depth"), radius (mm), n_points, depth, interpolation, empty_vertices.
    Other options (mask_img, cache_dir, ...) do not change the sampling and are ignored."""
    return _resolve_sampling(kind, inner_mesh, radius, n_samples, depth, interpolation, empty_vertices)


# --------------------------------------------------------------------------- geometry
def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms < 10 * np.finfo(norms.dtype).eps] = 1.0  # degenerate rows stay zero (as scikit-learn's normalize)
    return x / norms[:, None]


def vertex_normals(coords: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit outer normals (n_vertices, 3): unit sum of the unit normals of the surrounding faces."""
    corners = coords[faces]
    face_normals = _unit_rows(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]))
    n_faces = len(faces)
    incidence = sparse.csr_matrix(
        (np.ones(3 * n_faces), (faces.ravel(), np.repeat(np.arange(n_faces), 3))),
        shape=(len(coords), n_faces))
    return _unit_rows(incidence @ face_normals)


def _to_voxels(points_mm: np.ndarray, inverse_affine: np.ndarray) -> np.ndarray:
    """mm points (..., 3) -> continuous voxel coordinates (..., 3), float64."""
    flat = points_mm.reshape(-1, 3)
    homogeneous = np.concatenate([flat, np.ones((len(flat), 1), dtype=flat.dtype)], axis=1)
    return np.dot(inverse_affine, homogeneous.T)[:3].T.reshape(points_mm.shape)


@functools.lru_cache(maxsize=8)
def _ball_cloud(n_points: int) -> np.ndarray:
    """The unit-ball sample cloud nilearn uses (its shipped CSV, else its seeded k-means)."""
    import nilearn.surface

    stored = Path(nilearn.surface.__file__).parent / "data" / f"ball_cloud_{n_points}_samples.csv"
    if stored.is_file():
        return np.loadtxt(stored)
    from sklearn.cluster import k_means

    logger.warning("kind='ball' with n_samples=%d computes a k-means cloud (slow); nilearn ships %s.",
                   n_points, CACHED_BALL_SIZES)
    cube = np.random.RandomState(0).uniform(-1, 1, size=(50000, 3))
    centroids, *_ = k_means(cube[(cube ** 2).sum(axis=1) <= 1.0], n_clusters=n_points, random_state=0)
    return centroids


def _sample_points(coords: np.ndarray, faces: np.ndarray, inner: Optional[np.ndarray],
                   affine: np.ndarray, s: Mapping[str, Any]) -> np.ndarray:
    """Sample points of every vertex in voxel coordinates, (n_vertices, n_points, 3) float64."""
    inverse = np.linalg.inv(affine)
    depth = None if s["depth"] is None else np.asarray(s["depth"], dtype=np.float64)
    if s["kind"] == "line":
        offsets = (np.linspace(s["radius"], -s["radius"], s["n_points"]) if depth is None
                   else -s["radius"] * depth)
        points = coords[None] + vertex_normals(coords, faces) * offsets[:, None, None]
        return _to_voxels(np.ascontiguousarray(points.transpose(1, 0, 2)), inverse)
    if s["kind"] == "depth":
        steps = np.linspace(0, 1, s["n_points"]) if depth is None else depth
        points = coords[None] + steps[:, None, None] * (inner - coords)[None]
        return _to_voxels(np.ascontiguousarray(points.transpose(1, 0, 2)), inverse)
    linear_part = np.eye(4)
    linear_part[:3, :3] = affine[:3, :3]
    offsets = _to_voxels(_ball_cloud(s["n_points"]) * s["radius"], np.linalg.inv(linear_part))
    return _to_voxels(coords, inverse)[:, None, :] + offsets[None]


# --------------------------------------------------------------------------- matrix
def _weights(points: np.ndarray, mask: np.ndarray, mask_img: Optional[np.ndarray],
             s: Mapping[str, Any]) -> sparse.csr_matrix:
    """Sparse (n_vertices, n_mask_voxels) weights from the sample points of one mesh."""
    shape = np.asarray(mask.shape)
    n_vertices, n_points, _ = points.shape
    flat = points.reshape(-1, 3)
    vertex_of = np.repeat(np.arange(n_vertices), n_points)
    column_of = np.full(mask.size, -1, dtype=np.int64)
    column_of[np.flatnonzero(mask)] = np.arange(int(mask.sum()))

    if s["interpolation"] == "nearest":
        flat = np.round(flat).astype(np.int64)
    kept = (flat >= 0).all(axis=1) & (flat < shape).all(axis=1)
    if mask_img is not None:
        cell = np.floor(flat[kept]).astype(np.int64)
        kept[kept] = mask_img[cell[:, 0], cell[:, 1], cell[:, 2]]
    n_kept = np.bincount(vertex_of[kept], minlength=n_vertices)
    rows, share = vertex_of[kept], 1.0 / n_kept[vertex_of[kept]]
    kept_points = flat[kept]

    if s["interpolation"] == "nearest":
        corners = [(kept_points, share)]
    else:
        base = np.clip(np.floor(kept_points).astype(np.int64), 0, shape - 2)
        t = kept_points - base
        corners = []
        for offset in itertools.product((0, 1), repeat=3):
            weight = np.ones(len(t))
            for axis, o in enumerate(offset):
                weight = weight * (t[:, axis] if o else 1 - t[:, axis])
            corners.append((base + np.asarray(offset), weight * share))
    all_rows, all_cols, all_vals = [], [], []
    for voxel, value in corners:
        cols = column_of[np.ravel_multi_index(voxel.T, mask.shape)]
        inside = cols >= 0  # voxels outside the data mask are zeros of the image
        all_rows.append(rows[inside])
        all_cols.append(cols[inside])
        all_vals.append(value[inside])
    if s["empty_vertices"] == "nan":
        empty = np.flatnonzero(n_kept == 0)
        all_rows.append(empty)
        all_cols.append(np.zeros(len(empty), dtype=np.int64))
        all_vals.append(np.full(len(empty), np.nan))
    matrix = sparse.csr_matrix(
        (np.concatenate(all_vals), (np.concatenate(all_rows), np.concatenate(all_cols))),
        shape=(n_vertices, int(mask.sum())))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix


def _mask_img_array(mask_img: Any, mask: np.ndarray) -> Optional[np.ndarray]:
    if mask_img is None:
        return None
    if isinstance(mask_img, str):
        if mask_img != "data_mask":
            raise InputError(f"mask_img must be None, 'data_mask' or a 3-D array, got {mask_img!r}.")
        return mask
    mask_img = np.asarray(mask_img)
    if mask_img.shape != mask.shape:
        raise InputError(f"mask_img has shape {mask_img.shape} but the voxel grid is {mask.shape}; "
                         "resample it to the data grid first (nearest neighbour).")
    return mask_img != 0


def _cache_key(mask: np.ndarray, affine: np.ndarray, parts, inner_parts, mask_img, s) -> str:
    digest = hashlib.sha256()
    digest.update(MATRIX_FORMAT.encode())
    digest.update(json.dumps(s, sort_keys=True).encode())
    digest.update(json.dumps(list(mask.shape)).encode())
    digest.update(np.packbits(mask.ravel()).tobytes())
    digest.update(np.ascontiguousarray(affine, dtype=np.float64).tobytes())
    digest.update(b"-" if mask_img is None else np.packbits(mask_img.ravel()).tobytes())
    for hemi, coords, faces in list(parts) + list(inner_parts or []):
        # dtype matters: nilearn computes in the mesh's own precision
        digest.update(f"{hemi}|{coords.dtype.str}|{coords.shape}|{faces.shape}".encode())
        digest.update(np.ascontiguousarray(coords).tobytes())
        digest.update(np.ascontiguousarray(faces, dtype=np.int64).tobytes())
    if s["kind"] == "ball":
        digest.update(np.ascontiguousarray(_ball_cloud(s["n_points"])).tobytes())
    return digest.hexdigest()[:32]


_cache_lock = threading.Lock()


def _load_cached(path: Path, shape: tuple[int, int]) -> Optional[sparse.csr_matrix]:
    try:
        matrix = sparse.load_npz(path)  # numpy arrays only, allow_pickle=False
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a broken entry is rebuilt, never trusted
        logger.warning("%s", CacheError(f"Projection cache entry {path} is unreadable ({exc}); rebuilding it."))
        return None
    if matrix.shape != shape:
        logger.warning("Projection cache entry %s has shape %s, expected %s; rebuilding it.",
                       path, matrix.shape, shape)
        return None
    return matrix.tocsr()


def _save_cached(path: Path, matrix: sparse.csr_matrix) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object, so numpy does not append ".npz" to the temp name
            sparse.save_npz(fh, matrix, compressed=False)


def projection_matrix(mask: Any, affine: Any, mesh: Any, *, inner_mesh: Any = None, kind: str = "auto",
                      radius: float = 3.0, n_samples: Optional[int] = None,
                      depth: Optional[Sequence[float]] = None, interpolation: str = "linear",
                      mask_img: Any = None, empty_vertices: str = "nan",
                      cache_dir: Optional[PathLike] = None) -> sparse.csr_matrix:
    """The linear map of nilearn's ``vol_to_surf`` as a sparse matrix.

    mask: (X, Y, Z) bool; its True voxels in C order are the data columns. affine: (4, 4)
    voxel index -> mm, in the mesh's coordinate space. mesh: a .gii path, (coords, faces),
    an InMemoryMesh, or a PolyMesh (rows = its left then right vertices); inner_mesh the
    same kind (e.g. white matter under a pial mesh). kind / radius (mm) / n_samples /
    depth / interpolation / mask_img: as ``vol_to_surf`` (see the module docstring).
    empty_vertices: ``"nan"`` stores one NaN in rows of vertices without a kept sample
    (matches ``vol_to_surf``), ``"zero"`` leaves them empty. cache_dir: reuse/store the
    matrix as ``<cache_dir>/<content hash>.npz``.

    Returns csr_matrix (n_vertices, n_mask_voxels), float64; ``matrix @ column_data``
    (n_mask_voxels,) equals ``vol_to_surf`` of the zero-filled volume.
    """
    mask, affine = _check_grid(mask, affine)
    s = _resolve_sampling(kind, inner_mesh, radius, n_samples, depth, interpolation, empty_vertices)
    if s["interpolation"] == "linear" and min(mask.shape) < 2:
        raise InputError(f"Linear interpolation needs at least 2 voxels along every axis; grid is {mask.shape}.")
    mask_img_array = _mask_img_array(mask_img, mask)
    parts = _mesh_parts(mesh, "mesh")
    inner_parts = None
    if s["kind"] == "depth":
        inner_parts = _mesh_parts(inner_mesh, "inner_mesh")
        if [(h, c.shape) for h, c, _ in inner_parts] != [(h, c.shape) for h, c, _ in parts]:
            raise SpaceMismatchError(
                "inner_mesh must have the same hemispheres and vertex counts as mesh: "
                f"{[(h, len(c)) for h, c, _ in parts]} vs {[(h, len(c)) for h, c, _ in inner_parts]}.")
    n_rows = sum(len(c) for _, c, _ in parts)
    shape = (n_rows, int(mask.sum()))

    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{_cache_key(mask, affine, parts, inner_parts, mask_img_array, s)}.npz"
        with _cache_lock:
            cached = _load_cached(path, shape)
        if cached is not None:
            logger.info("Projection matrix %s read from the cache.", path.name)
            return cached

    blocks = []
    for i, (hemi, coords, faces) in enumerate(parts):
        inner = inner_parts[i][1] if inner_parts is not None else None
        points = _sample_points(coords, faces, inner, affine, s)
        blocks.append(_weights(points, mask, mask_img_array, s))
    matrix = blocks[0] if len(blocks) == 1 else sparse.vstack(blocks, format="csr")
    matrix.sort_indices()
    if path is not None:
        with _cache_lock:
            _save_cached(path, matrix)
    return matrix


# --------------------------------------------------------------------------- projecting data
def project(matrix: sparse.spmatrix, data: Any, *, dtype: Any = np.float64, chunk_trs: int = 16) -> np.ndarray:
    """Project column data with a projection matrix: ``(matrix @ data.T).T``.

    data: (n_voxels,) one map, or (n_trs, n_voxels). Returns (n_vertices,) or
    (n_trs, n_vertices) of ``dtype``, computed in float64. TRs go through in blocks of
    ``chunk_trs`` (the sparse kernel wants voxels x TRs; small blocks keep that transposed
    float64 copy in cache and in memory bounds).
    """
    data = np.asarray(data)
    n_vertices, n_voxels = matrix.shape
    if data.ndim not in (1, 2) or data.shape[-1] != n_voxels:
        raise SpaceMismatchError(
            f"data has shape {data.shape} but the projection matrix expects (..., {n_voxels}) columns "
            "(one per True voxel of the mask); check that the data and the mask belong together.")
    if not np.isfinite(data).all():
        raise InputError("data holds NaN or infinite values. vol_to_surf drops such samples from a vertex "
                         "mean, which no fixed matrix can do; replace them first (e.g. np.nan_to_num).")
    if data.ndim == 1:
        return np.asarray(matrix @ data.astype(np.float64), dtype=dtype)
    matrix = sparse.csr_matrix(matrix)
    out = np.empty((data.shape[0], n_vertices), dtype=dtype)
    step = max(1, int(chunk_trs))
    buffer = np.empty((n_voxels, min(step, data.shape[0])), dtype=np.float64)
    for start in range(0, data.shape[0], step):
        block = data[start:start + step]
        columns = buffer[:, :len(block)]
        columns[...] = block.T  # transpose + float64 in one pass
        out[start:start + len(block)] = (matrix @ columns).T
    return out


# --------------------------------------------------------------------------- MNI / fsaverage
#: Thresholds of :func:`check_mni_space` (documented there).
MNI_MAX_OBLIQUE_DEG = 10.0
MNI_VOXEL_MM = (0.5, 6.0)
MNI_FOOTPRINT_MM, MNI_MIN_FOOTPRINT = 6.0, 0.90
MNI_COVERAGE_MM, MNI_MIN_COVERAGE = 10.0, 0.50
MNI_FULL_GRID = 0.90
MNI_MAX_CENTRE_MM = 30.0


@functools.lru_cache(maxsize=1)
def _mni_brain() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(brain mask bool, affine, distance to the brain in mm) of nilearn's 2 mm MNI152 brain mask."""
    from nilearn.datasets import load_mni152_brain_mask

    image = load_mni152_brain_mask(resolution=2)
    brain = np.asarray(image.get_fdata()) > 0
    return brain, np.asarray(image.affine), _distance_mm(brain, image.affine)


def _distance_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Distance (mm) of every voxel of the grid to the nearest True voxel of ``mask``."""
    return ndimage.distance_transform_edt(~mask, sampling=np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))


def _fraction_near(points: np.ndarray, to_grid: np.ndarray, distance: np.ndarray, limit_mm: float) -> float:
    """Share of voxel ``points`` (n, 3) that land (via ``to_grid``) within ``limit_mm`` of a mask."""
    index = np.round(_to_voxels(points.astype(np.float64), to_grid)).astype(np.int64)
    inside = ((index >= 0) & (index < distance.shape)).all(axis=1)
    near = np.zeros(len(index), dtype=bool)
    near[inside] = distance[tuple(index[inside].T)] <= limit_mm
    return float(near.mean())


def check_mni_space(mask: Any, affine: Any, *, source: str = "the volume space") -> None:
    """Raise SpaceMismatchError unless ``(mask, affine)`` plausibly lies in MNI152 space.

    No geometry proves that a grid is MNI (a native scanner grid can sit near the origin).
    This catches the frequent mistakes, against nilearn's 2 mm MNI152 brain mask:

    1. a non-finite or non-invertible affine; voxel sizes outside 0.5-6 mm;
    2. oblique voxel axes (an axis more than 10 degrees off x/y/z): MNI template grids are
       axis-aligned (flips allowed), native EPI grids usually are not;
    3. for a real mask (under 90% of its grid): fewer than 90% of its voxels within 6 mm
       of the MNI brain (wrong origin, identity affine, (z, y, x) array with an (x, y, z)
       affine, cm/mm mix-ups, shifts of ~20 mm or more), or less than half of the MNI brain
       within 10 mm of a mask voxel (a cortex-only mask passes);
    4. for a (nearly) full grid: less than 90% of the MNI brain inside the grid, or a grid
       centre more than 30 mm from the MNI brain's centre.

    The reliable guard is provenance: record which template a volume is in.
    """
    mask, affine = _check_grid(mask, affine)
    hint = (" fsaverage projection needs data in MNI152 space; for a subject's own volume use that "
            "subject's surfaces (pycortex filestore) instead, or pass check_space=False if you are sure.")
    sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if sizes.min() < MNI_VOXEL_MM[0] or sizes.max() > MNI_VOXEL_MM[1]:
        raise SpaceMismatchError(f"{source}: voxel sizes {np.round(sizes, 3).tolist()} mm are outside "
                                 f"{MNI_VOXEL_MM[0]}-{MNI_VOXEL_MM[1]} mm; the affine looks wrong." + hint)
    cosines = np.abs(affine[:3, :3]) / sizes
    oblique = float(np.degrees(np.arccos(np.clip(cosines.max(axis=0), -1, 1))).max())
    if oblique > MNI_MAX_OBLIQUE_DEG:
        raise SpaceMismatchError(f"{source}: the voxel axes are {oblique:.1f} degrees off the x/y/z axes; MNI "
                                 "template grids are axis-aligned, so this looks like a native scanner grid." + hint)
    brain, brain_affine, brain_distance = _mni_brain()
    brain_voxels = np.argwhere(brain)
    to_data = np.linalg.inv(affine) @ brain_affine
    if mask.mean() >= MNI_FULL_GRID:  # no brain outline to compare: judge the field of view
        inside = _fraction_near(brain_voxels, to_data, np.zeros(mask.shape), 0.0)
        centre = affine @ np.r_[(np.asarray(mask.shape) - 1) / 2, 1]
        brain_centre = brain_affine @ np.r_[brain_voxels.mean(axis=0), 1]
        offset = float(np.linalg.norm((centre - brain_centre)[:3]))
        if inside < MNI_MIN_FOOTPRINT or offset > MNI_MAX_CENTRE_MM:
            raise SpaceMismatchError(
                f"{source}: the grid holds {inside:.0%} of the MNI152 brain (need {MNI_MIN_FOOTPRINT:.0%}) and its "
                f"centre is {offset:.0f} mm from the brain's (limit {MNI_MAX_CENTRE_MM:g} mm); the affine does not "
                "place this volume in MNI space." + hint)
        return
    footprint = _fraction_near(np.argwhere(mask), np.linalg.inv(brain_affine) @ affine, brain_distance,
                               MNI_FOOTPRINT_MM)
    if footprint < MNI_MIN_FOOTPRINT:
        raise SpaceMismatchError(
            f"{source}: only {footprint:.0%} of the mask's voxels lie within {MNI_FOOTPRINT_MM:g} mm of the MNI152 "
            f"brain (need {MNI_MIN_FOOTPRINT:.0%}); the affine does not place this volume in MNI space." + hint)
    coverage = _fraction_near(brain_voxels, to_data, _distance_mm(mask, affine), MNI_COVERAGE_MM)
    if coverage < MNI_MIN_COVERAGE:
        raise SpaceMismatchError(
            f"{source}: the mask reaches only {coverage:.0%} of the MNI152 brain (need {MNI_MIN_COVERAGE:.0%} within "
            f"{MNI_COVERAGE_MM:g} mm); it is not a whole-brain MNI volume or its affine is wrong." + hint)


def fsaverage_mesh(name: str = "fsaverage5", mesh_type: str = "pial"):
    """nilearn's fsaverage PolyMesh (``left``/``right``); fsaverage5 ships with nilearn (offline)."""
    from nilearn.datasets import load_fsaverage

    meshes = load_fsaverage(name)
    if mesh_type not in meshes:
        raise InputError(f"mesh_type must be one of {sorted(k for k in meshes if k != 'description')}, "
                         f"got {mesh_type!r}.")
    return meshes[mesh_type]


def fsaverage_matrix(mask: Any, affine: Any, *, mesh_type: str = "pial", inner_mesh_type: Optional[str] = None,
                     fsaverage: str = "fsaverage5", check_space: bool = True, source: str = "the volume space",
                     cache_dir: Optional[PathLike] = None, **sampling: Any) -> sparse.csr_matrix:
    """Projection matrix (2 * n_vertices_per_hemisphere, n_mask_voxels) onto fsaverage, left then right.

    Defaults (pial mesh, no inner mesh, so kind "line", radius 3 mm, 10 samples, linear)
    are those of the reference, which calls ``vol_to_surf(img, pial)`` per hemisphere.
    ``inner_mesh_type="white_matter"`` samples between pial and white (nilearn's advice).
    """
    mask, affine = _check_grid(mask, affine)
    if check_space:
        check_mni_space(mask, affine, source=source)
    inner = fsaverage_mesh(fsaverage, inner_mesh_type) if inner_mesh_type else None
    return projection_matrix(mask, affine, fsaverage_mesh(fsaverage, mesh_type), inner_mesh=inner,
                             cache_dir=cache_dir, **sampling)


def project_dataset_to_fsaverage(datasets: Sequence[Any], mask: Any, affine: Any, *,
                                 names: Optional[Sequence[str]] = None, dtype: Any = np.float32,
                                 **options: Any) -> list[np.ndarray]:
    """Project every (n_trs_i, n_mask_voxels) array of a volume dataset onto fsaverage.

    Returns a list of (n_trs_i, 20484) arrays (fsaverage5; left then right hemisphere)
    of ``dtype``, equal to the reference's per-TR ``vol_to_surf`` of the zero-filled
    volumes. ``names`` (e.g. story names) label error messages. ``options`` go to
    :func:`fsaverage_matrix` (mesh_type, inner_mesh_type, kind, radius, n_samples, depth,
    interpolation, mask_img, check_space, cache_dir, ...).
    """
    mask, affine = _check_grid(mask, affine)
    n_voxels = int(mask.sum())
    labels = list(names) if names is not None else [f"item {i}" for i in range(len(datasets))]
    if len(labels) != len(datasets):
        raise InputError(f"names has {len(labels)} entries for {len(datasets)} arrays.")
    arrays = []
    for label, data in zip(labels, datasets):
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[1] != n_voxels:
            raise SpaceMismatchError(
                f"{label}: brain data of shape {data.shape} does not fit the mask ({n_voxels} True voxels); "
                "expected (n_trs, n_voxels) with columns = the mask's True voxels in C order.")
        arrays.append(data)
    matrix = fsaverage_matrix(mask, affine, **options)
    return [project(matrix, data, dtype=dtype) for data in arrays]
