"""Results page caching: figures follow the thresholds (no stale cache entry), downloads are
generated only on click and hold the run's numbers (read back with numpy / csv / PIL)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager

from encoding_core import viz
from app_helpers import as_array, make_run, new_app, open_page, picture_samples, plotly_specs

N_FSAVERAGE5 = 20484


@pytest.fixture
def deferred(monkeypatch) -> dict:
    """file id -> the callable a deferred download button registered (called as a click would)."""
    registered: dict = {}
    original = MediaFileManager.add_deferred

    def recording(self, data_callable, *args, **kwargs):
        file_id = original(self, data_callable, *args, **kwargs)
        registered[file_id] = data_callable
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", recording)
    return registered


def voxels(results_dir: Path, run_id: str, layer: int) -> dict[str, np.ndarray]:
    """The layer's arrays straight from the run folder's npz (no app code)."""
    with np.load(results_dir / run_id / "layers" / str(layer) / "voxels.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def mesh_colours(figure: dict) -> list:
    """Per-vertex colours of the hemisphere mesh that carries them (nilearn's plotly engine)."""
    mesh = [t for t in figure["data"] if t["type"] == "mesh3d" and "vertexcolor" in t]
    assert len(mesh) == 1
    return list(as_array(mesh[0]["vertexcolor"]))


def test_map_follows_thresholds_and_downloads_are_deferred(studio, deferred, monkeypatch):
    run_id = make_run(studio / "results", seed=5, layers=(0, 1))
    drawn = []
    original_png = viz.four_view_png
    monkeypatch.setattr(viz, "four_view_png", lambda *a, **k: drawn.append(1) or original_png(*a, dpi=30, **k))

    at = new_app()
    at.run()
    open_page(at, "results")
    at.selectbox(key="layer_pick").set_value(1).run()
    at.checkbox(key="sig_only").uncheck().run()
    at.slider(key="min_r").set_value(0.25).run()
    r = voxels(studio / "results", run_id, 1)["correlations"].astype(np.float64)
    # the default picture: every value it shows is a left-hemisphere r >= 0.25 of layer 1, and a lower
    # threshold shows more (another cache entry, not the old figure again)
    picture = picture_samples(plotly_specs(at)["surface_map"])
    shown = picture[np.isfinite(picture)]
    left = r[:N_FSAVERAGE5 // 2].astype(np.float32)
    assert shown.size and shown.min() >= 0.25 - 1e-6 and np.isin(shown, left[left >= 0.25]).all()
    at.slider(key="min_r").set_value(0.1).run()
    lower = picture_samples(plotly_specs(at)["surface_map"])
    assert np.isfinite(lower).sum() > np.isfinite(picture).sum() and np.nanmin(lower) >= 0.1 - 1e-6
    at.slider(key="min_r").set_value(0.25).run()

    at.toggle(key="map_3d").set_value(True).run()  # the rotatable 3-D map
    at.toggle(key="full_mesh").set_value(True).run()  # every vertex, to compare with a full figure
    vmax = float(np.abs(r).max())
    expected = viz.surface_figure(np.where(r >= 0.25, r, np.nan), hemi="left", view="lateral", vmax=vmax,
                                  title=f"{run_id} · layer 1 · correlation r")
    shown = json.loads(at.get("plotly_chart")[[e.key for e in at.get("plotly_chart")].index("surface_map")].proto.spec)
    assert mesh_colours(shown) == mesh_colours(expected.to_dict())
    # a lower threshold is another cache entry: more vertices coloured, not the old figure again
    at.slider(key="min_r").set_value(0.1).run()
    specs = {e.key: json.loads(e.proto.spec) for e in at.get("plotly_chart")}
    lower = viz.surface_figure(np.where(r >= 0.1, r, np.nan), hemi="left", view="lateral", vmax=vmax,
                               title=f"{run_id} · layer 1 · correlation r")
    assert mesh_colours(specs["surface_map"]) == mesh_colours(lower.to_dict()) != mesh_colours(shown)
    at.radio(key="hemi").set_value("right").run()
    right = {e.key: json.loads(e.proto.spec) for e in at.get("plotly_chart")}["surface_map"]
    assert len(mesh_colours(right)) == N_FSAVERAGE5 // 2 and mesh_colours(right) != mesh_colours(specs["surface_map"])

    # nothing was drawn or serialised for the downloads while rendering
    assert drawn == []
    buttons = {b.proto.label: b.proto for b in at.get("download_button")}
    png_button = buttons["Download the four-view PNG (left/right, lateral/medial)"]
    for proto in (png_button, buttons["Per-voxel values (CSV)"], buttons["Per-voxel values (NPZ)"]):
        assert proto.deferred_file_id in deferred and not proto.url

    # clicking runs the callables: the files hold this run's layer-1 numbers at the chosen threshold
    from PIL import Image

    image = Image.open(io.BytesIO(deferred[png_button.deferred_file_id]()))
    assert image.format == "PNG" and image.size[0] > 2 * image.size[1] and drawn == [1]
    rows = list(csv.reader(io.StringIO(deferred[buttons["Per-voxel values (CSV)"].deferred_file_id]().decode())))
    header, body = rows[0], np.asarray(rows[1:], dtype=np.float64)
    assert body.shape[0] == N_FSAVERAGE5 and header[0] == "voxel"
    np.testing.assert_array_equal(body[:, 0], np.arange(N_FSAVERAGE5))
    np.testing.assert_allclose(body[:, header.index("correlations")], r, rtol=1e-6)
    npz = np.load(io.BytesIO(deferred[buttons["Per-voxel values (NPZ)"].deferred_file_id]()), allow_pickle=False)
    for name, values in voxels(studio / "results", run_id, 1).items():
        np.testing.assert_array_equal(npz[name], values)


def test_rewritten_run_is_not_served_from_the_cache(studio):
    """The cache key includes the run folder's stamp: a run rewritten on disk is read again."""
    run_id = make_run(studio / "results", seed=6, layers=(0,))
    at = new_app()
    at.run()
    open_page(at, "results")
    before = at.metric[0].value
    metrics_path = studio / "results" / run_id / "layers" / "0" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["median_score"] = 0.777
    metrics_path.write_text(json.dumps(metrics))
    status = studio / "results" / run_id / "status.json"
    status.write_text(status.read_text())  # a rewrite (new mtime), as RunWriter.finish does
    at.run()
    assert before != "0.777" and at.metric[0].value == "0.777"
