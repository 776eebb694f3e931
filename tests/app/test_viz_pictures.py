"""Brain pictures (viz.pictures): the rasteriser against a plain per-pixel loop, the camera against
nilearn's plotly figure, and what a picture shows (values, colours, outlines, colour bar)."""
from __future__ import annotations

import numpy as np
import pytest

from encoding_core import viz
from encoding_core.viz import pictures
from app_helpers import colour_limits, picture_image, picture_samples


def _ellipsoid(subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A closed, outward-wound triangle mesh of an ellipsoid (an icosahedron subdivided)."""
    t = (1 + 5 ** 0.5) / 2
    vertices = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
                (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11),
             (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    coords = [np.asarray(v, dtype=np.float64) / np.linalg.norm(v) for v in vertices]
    for _ in range(subdivisions):
        middle: dict = {}
        new_faces = []
        for a, b, c in faces:
            ids = []
            for u, v in ((a, b), (b, c), (c, a)):
                key = (min(u, v), max(u, v))
                if key not in middle:
                    point = coords[u] + coords[v]
                    coords.append(point / np.linalg.norm(point))
                    middle[key] = len(coords) - 1
                ids.append(middle[key])
            ab, bc, ca = ids
            new_faces += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new_faces
    return np.asarray(coords) * np.array([30.0, 50.0, 40.0]), np.asarray(faces)


def _loop_raster(coords, faces, hemi, view, width_px):
    """Reference: for every pixel centre, every triangle; the one nearest the eye that contains the
    centre wins and the pixel shows that triangle's corner nearest the centre."""
    right, up, eye = pictures.view_axes(hemi, view)
    sx, sy, depth = coords @ right, coords @ up, coords @ eye
    margin = 0.02 * max(np.ptp(sx), np.ptp(sy))
    scale = (width_px - 1) / (np.ptp(sx) + 2 * margin)
    height_px = int(np.ceil((np.ptp(sy) + 2 * margin) * scale)) + 1
    px, py = (sx - (sx.min() - margin)) * scale, ((sy.max() + margin) - sy) * scale
    out = np.full((height_px, width_px), -1)
    for row in range(height_px):
        for col in range(width_px):
            best, best_depth = -1, -np.inf
            for face in faces:
                (ax, bx, cx), (ay, by, cy) = px[face], py[face]
                area = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay)
                if abs(area) < 1e-12:
                    continue
                wb = ((col - ax) * (cy - ay) - (cx - ax) * (row - ay)) / area
                wc = ((bx - ax) * (row - ay) - (col - ax) * (by - ay)) / area
                w = np.array([1 - wb - wc, wb, wc])
                if (w >= -1e-9).all() and w @ depth[face] > best_depth:
                    best_depth, best = w @ depth[face], face[int(np.argmax(w))]
            out[row, col] = best
    return out


@pytest.mark.parametrize("hemi,view", [("left", "lateral"), ("right", "medial"), ("left", "ventral")])
def test_raster_matches_a_per_pixel_loop(hemi, view):
    coords, faces = _ellipsoid(2)
    raster = pictures.rasterize(coords, faces, hemi, view, width_px=40)
    reference = _loop_raster(coords, faces, hemi, view, 40)
    assert raster.vertex.shape == reference.shape
    np.testing.assert_array_equal(raster.vertex, reference)
    assert (raster.vertex >= 0).mean() > 0.5  # the ellipse fills most of its box


def test_the_nearer_triangle_wins_whatever_the_face_order():
    # two triangles seen from the left (eye at -x): the one at x = -5 is nearer the eye than x = +5
    coords = np.array([[-5, -10, -10], [-5, 10, -10], [-5, 0, 10], [5, -10, -10], [5, 10, -10], [5, 0, 10]], float)
    for faces in (np.array([[0, 1, 2], [3, 4, 5]]), np.array([[3, 4, 5], [0, 1, 2]])):
        raster = pictures.rasterize(coords, faces, "left", "lateral", width_px=30)
        covered = raster.vertex[raster.vertex >= 0]
        assert covered.size and set(np.unique(covered)) <= {0, 1, 2}


def test_culling_hidden_triangles_changes_no_pixel(monkeypatch):
    surface = viz.fsaverage5_surface()
    coords, faces = surface.meshes["left"]
    assert pictures._outward_sign(coords, faces) == 1
    culled = pictures.rasterize(coords, faces, "left", "lateral", width_px=300)
    monkeypatch.setattr(pictures, "_outward_sign", lambda *_: 0)
    np.testing.assert_array_equal(pictures.rasterize(coords, faces, "left", "lateral", width_px=300).vertex,
                                  culled.vertex)
    open_mesh = faces[1:]  # a hole: not closed, nothing is culled
    assert pictures._outward_sign(coords, open_mesh) == 0


@pytest.mark.parametrize("hemi", viz.HEMISPHERES)
@pytest.mark.parametrize("view", viz.VIEWS)
def test_camera_is_the_one_of_the_rotatable_figure(hemi, view):
    values = np.zeros(2 * viz.N_VERTICES_FSAVERAGE5)
    camera = viz.surface_figure(values, hemi=hemi, view=view, coarse=True).layout.scene.camera
    eye = np.array([camera.eye.x, camera.eye.y, camera.eye.z], dtype=float)
    up = np.array([camera.up.x, camera.up.y, camera.up.z], dtype=float)
    _, picture_up, picture_eye = pictures.view_axes(hemi, view)
    np.testing.assert_allclose(picture_eye, eye / np.linalg.norm(eye))
    np.testing.assert_allclose(picture_up, up / np.linalg.norm(up))


def test_lateral_pictures_put_the_front_of_the_brain_outwards():
    surface = viz.fsaverage5_surface()
    for hemi, front_on_left in (("left", True), ("right", False)):
        raster = pictures.surface_raster(surface, hemi, "lateral")
        y = surface.meshes[hemi][0][:, 1]  # mm, anterior positive
        cols = np.broadcast_to(np.arange(raster.shape[1]), raster.shape)
        on = raster.vertex >= 0
        front = cols[on][y[raster.vertex[on]] > 20].mean()
        back = cols[on][y[raster.vertex[on]] < -40].mean()
        assert (front < back) == front_on_left


def test_picture_shows_the_values_with_their_colours_and_outlines():
    surface = viz.fsaverage5_surface()
    n = viz.N_VERTICES_FSAVERAGE5
    values = np.full(2 * n, np.nan)
    left_y = surface.meshes["left"][0][:, 1]
    values[:n][left_y > 0] = 0.4  # the front half of the left hemisphere shows +0.4, the back -0.4
    values[:n][left_y < -30] = -0.4
    region = np.zeros(2 * n, dtype=bool)
    region[:n][(left_y > -20) & (left_y < 0)] = True
    figure = viz.surface_picture(values, hemi="left", view="lateral", vmax=0.37, regions={"band": region},
                                 colorbar_title="r").to_dict()
    assert colour_limits(figure) == [(-0.4, 0.4)]  # rounded up to a readable limit, symmetric
    samples = picture_samples(figure)
    assert set(np.unique(samples[np.isfinite(samples)]).round(6)) == {-0.4, 0.4}
    image = picture_image(figure).astype(int)
    raster = pictures.surface_raster(surface, "left", "lateral")
    on = raster.vertex >= 0
    shown_y = left_y[raster.vertex[on]]
    red, blue = image[on][shown_y > 5], image[on][shown_y < -35]
    assert (red[:, 0] > red[:, 2] + 60).mean() > 0.95 and (blue[:, 2] > blue[:, 0] + 60).mean() > 0.95
    grey = image[on][(shown_y > -25) & (shown_y < -5)]  # nothing shown: the sulcal background, grey
    assert (np.ptp(grey, axis=1) <= 2).mean() > 0.6  # (the band's outline is coloured)
    black = (image == [0, 0, 0]).all(axis=2)  # the first region's outline colour
    assert black.sum() > 100 and region[:n][raster.vertex[black]].all()
    legend = [t for t in figure["data"] if t.get("meta") == "outline"]
    assert [t["name"] for t in legend] == ["band"]
    assert figure["layout"]["yaxis"]["scaleanchor"] == "x"  # square pixels
