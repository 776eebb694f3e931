"""Surface figures on any mesh (a subject's cortex), checked against the mesh and numpy."""
from __future__ import annotations

import io

import numpy as np
import pytest

from app_helpers import as_array
from encoding_core import viz
from encoding_core.common.errors import InputError


@pytest.fixture(scope="module")
def other_surface():
    """fsaverage5's inflated mesh with the right hemisphere cut to 9000 vertices and scaled: not fsaverage5."""
    base = viz.fsaverage5_surface()
    left = base.meshes["left"]
    coords, faces = base.meshes["right"]
    keep = faces.max(axis=1) < 9000
    right = (coords[:9000] * 1.2, faces[keep])
    shading = {"left": np.linspace(-1, 1, len(left[0])), "right": np.linspace(1, -1, 9000)}
    return viz.BrainSurface("S01's cortex (inflated)", {"left": left, "right": right}, shading)


def test_figure_draws_the_given_mesh(other_surface):
    values = np.random.default_rng(0).uniform(-1, 1, 10242 + 9000)
    figure = viz.surface_figure(values, hemi="right", view="lateral", surface=other_surface)
    meshes = [t for t in figure.data if t.type == "mesh3d" and len(t.x) == 9000]
    assert len(meshes) == 1
    np.testing.assert_allclose(as_array(meshes[0].x), other_surface.meshes["right"][0][:, 0], rtol=1e-6)
    with pytest.raises(InputError, match=r"S01's cortex \(inflated\) needs 19242 values.*got 20484"):
        viz.surface_figure(np.zeros(20484), surface=other_surface)
    assert viz.split_hemispheres(values, other_surface)["right"].size == 9000


def test_region_outline_and_png_on_another_mesh(other_surface):
    coords, faces = other_surface.meshes["right"]
    mask = coords[:, 2] > np.percentile(coords[:, 2], 70)
    expected = set()
    for face in faces:  # a plain loop over the faces
        for i in range(3):
            a, b = face[i], face[(i + 1) % 3]
            if mask[a] != mask[b]:
                expected.add(int(a if mask[a] else b))
    assert set(viz.region_boundary(mask, "right", other_surface).tolist()) == expected
    from PIL import Image

    before = {h: other_surface.meshes[h][0].copy() for h in ("left", "right")}
    png = viz.four_view_png(np.random.default_rng(1).uniform(-1, 1, 19242), dpi=30, surface=other_surface)
    assert Image.open(io.BytesIO(png)).format == "PNG"
    for hemi, coords in before.items():  # drawing never moves the surface's own coordinates
        np.testing.assert_array_equal(other_surface.meshes[hemi][0], coords)


def test_default_surface_is_fsaverage5():
    surface = viz.fsaverage5_surface()
    assert surface.name == "fsaverage5" and surface.n_vertices("left") == surface.n_vertices("right") == 10242
    np.testing.assert_array_equal(surface.meshes["left"][0], viz.fsaverage_mesh("inflated").parts["left"].coordinates)
    np.testing.assert_array_equal(surface.background("right"), viz.fsaverage_sulcal_depth("inflated")["right"])
