"""The coarser mesh of the interactive brain view: one icosphere subdivision undone, checked against
a subdivision built here with a plain loop, and on fsaverage5 (outward faces on its sphere)."""
from __future__ import annotations

import numpy as np

from encoding_core import viz
from encoding_core.viz.surfaces import coarse_surface, parent_icosphere


def _icosahedron() -> tuple[np.ndarray, np.ndarray]:
    t = (1 + 5 ** 0.5) / 2
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
                  [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], dtype=float)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
                  [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
                  [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    return v / np.linalg.norm(v, axis=1, keepdims=True), f


def _subdivide(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split every triangle into four at its edge midpoints, parents first (a plain loop)."""
    vertices = [tuple(v) for v in vertices]
    midpoint: dict[tuple[int, int], int] = {}

    def mid(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in midpoint:
            m = (np.array(vertices[a]) + np.array(vertices[b])) / 2
            vertices.append(tuple(m / np.linalg.norm(m)))
            midpoint[key] = len(vertices) - 1
        return midpoint[key]

    out = []
    for a, b, c in faces:
        ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
        out += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
    return np.array(vertices), np.array(out)


def _canonical(faces: np.ndarray) -> set[tuple[int, int, int]]:
    """Faces as a set, each rotated to start at its smallest vertex (orientation kept)."""
    result = set()
    for face in faces:
        i = int(np.argmin(face))
        result.add(tuple(int(x) for x in np.roll(face, -i)))
    return result


def test_one_subdivision_is_undone_exactly():
    vertices, faces = _icosahedron()
    v1, f1 = _subdivide(vertices, faces)
    v2, f2 = _subdivide(v1, f1)
    rng = np.random.default_rng(0)
    shuffled = f2[rng.permutation(len(f2))]
    n_parent, parent = parent_icosphere(shuffled, len(v2))
    assert n_parent == len(v1) == 42
    assert _canonical(parent) == _canonical(f1)


def test_a_mesh_that_is_no_subdivision_is_left_alone():
    vertices, faces = _icosahedron()
    v1, f1 = _subdivide(vertices, faces)
    assert parent_icosphere(f1[:, ::-1][np.argsort(f1[:, 0])], 41) is None   # wrong vertex count
    scrambled = np.random.default_rng(1).permutation(len(v1))  # parents no longer first
    assert parent_icosphere(scrambled[f1], len(v1)) is None


def test_fsaverage5_coarse_mesh_is_fsaverage4_sized_and_outward():
    from nilearn import datasets

    coarse = coarse_surface(viz.fsaverage5_surface())
    sphere = datasets.load_fsaverage("fsaverage5")["sphere"]
    for hemi in ("left", "right"):
        coords, faces = coarse.surface.meshes[hemi]
        assert coords.shape == (2562, 3) and faces.shape == (5120, 3)
        points = np.asarray(sphere.parts[hemi].coordinates)
        normal = np.cross(points[faces[:, 1]] - points[faces[:, 0]], points[faces[:, 2]] - points[faces[:, 0]])
        assert np.all((normal * points[faces].mean(axis=1)).sum(axis=1) > 0)


def test_coarse_figure_is_a_quarter_of_the_data_with_the_kept_values():
    values = np.random.default_rng(2).uniform(-0.5, 0.5, 20484)
    full = viz.surface_figure(values, hemi="right", vmax=0.5)
    coarse = viz.surface_figure(values, hemi="right", vmax=0.5, coarse=True)
    full_mesh = next(t for t in full.data if t.type == "mesh3d")
    coarse_mesh = next(t for t in coarse.data if t.type == "mesh3d")
    assert len(coarse_mesh.x) == 2562 and len(full_mesh.x) == 10242
    assert len(coarse_mesh.i) == 5120
    assert len(coarse.to_json()) < 0.3 * len(full.to_json())
