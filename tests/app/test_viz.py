"""Figures of encoding_core.viz, checked against independent references."""
from __future__ import annotations

import io

import numpy as np
import pytest

from encoding_core import viz
from encoding_core.common.errors import InputError

N = viz.N_VERTICES_FSAVERAGE5


def test_split_hemispheres_and_bad_length():
    values = np.arange(2 * N, dtype=float)
    parts = viz.split_hemispheres(values)
    assert parts["left"][0] == 0 and parts["right"][0] == N and parts["right"].size == N
    with pytest.raises(InputError, match="20484"):
        viz.split_hemispheres(np.zeros(100))


def test_region_boundary_matches_loop_over_faces():
    mesh = viz.fsaverage_mesh("inflated").parts["left"]
    coords = np.asarray(mesh.coordinates)
    mask = coords[:, 1] > np.percentile(coords[:, 1], 80)  # a frontal cap
    expected = set()
    for face in np.asarray(mesh.faces):
        for i in range(3):
            a, b = face[i], face[(i + 1) % 3]
            if mask[a] != mask[b]:
                expected.add(a if mask[a] else b)
    got = viz.region_boundary(mask, "left")
    assert set(got.tolist()) == expected
    assert len(expected) > 10


def test_thresholded_map():
    values = np.array([0.5, 0.1, -0.2, 0.3])
    sig = np.array([True, True, False, False])
    out = viz.thresholded_map(values, sig, 0.2)
    assert np.isnan(out[1]) and np.isnan(out[2]) and np.isnan(out[3]) and out[0] == 0.5
    assert np.array_equal(viz.thresholded_map(values), values)


def test_tsnr_matches_concatenated_numpy(rng):
    stories = [rng.normal(5, 2, (30, 7)), rng.normal(5, 2, (20, 7))]
    stories[0][:, 3] = 1.0
    stories[1][:, 3] = 1.0  # constant voxel -> NaN
    both = np.concatenate(stories)
    with np.errstate(divide="ignore"):
        expected = both.mean(0) / both.std(0, ddof=1)
    got = viz.tsnr(stories)
    assert np.isnan(got[3])
    keep = np.arange(7) != 3
    np.testing.assert_allclose(got[keep], expected[keep], rtol=1e-10)


def test_surface_figure_is_plotly_mesh_with_outline():
    rng = np.random.default_rng(1)
    values = rng.uniform(-0.5, 0.5, 2 * N)
    values[:100] = np.nan
    region = np.zeros(2 * N, dtype=bool)
    region[:N] = np.asarray(viz.fsaverage_mesh().parts["left"].coordinates)[:, 2] > 40
    fig = viz.surface_figure(values, hemi="left", view="medial", regions={"planted": region})
    meshes = [t for t in fig.data if t.type == "mesh3d" and len(t.x) == N]  # nilearn adds a colorbar dummy
    assert len(meshes) == 1
    outline = [t for t in fig.data if t.type == "scatter3d"]
    assert len(outline) == 1 and 0 < len(outline[0].x) < region[:N].sum()
    with pytest.raises(InputError):
        viz.surface_figure(values, hemi="both")


def _vertical_extent(y: float, length: float, anchor: str) -> tuple[float, float]:
    """(bottom, top) in paper coordinates of a box at ``y`` of height ``length`` with a y anchor."""
    bottom = {"top": y - length, "middle": y - length / 2, "bottom": y}[anchor]
    return bottom, bottom + length


def test_region_legend_sits_below_the_brain_clear_of_the_colour_bar():
    values = np.random.default_rng(3).uniform(-0.5, 0.5, 2 * N)
    region = np.zeros(2 * N, dtype=bool)
    region[:N] = np.asarray(viz.fsaverage_mesh().parts["left"].coordinates)[:, 2] > 40
    fig = viz.surface_figure(values, hemi="left", regions={"planted": region, "other": region})
    layout = fig.layout
    assert layout.legend.orientation == "h"
    # the legend hangs from the bottom edge of the plot area (y <= 0, anchored at its top) ...
    assert layout.legend.yanchor == "top" and layout.legend.y <= 0
    # ... and every colour bar lies inside the plot's height (plotly defaults: y 0.5, middle, len 1)
    colour_bars = [t.colorbar for t in fig.data if t.type == "mesh3d" and t.colorbar.len is not None]
    assert colour_bars
    for bar in colour_bars:
        bottom, _ = _vertical_extent(bar.y if bar.y is not None else 0.5, bar.len,
                                     bar.yanchor if bar.yanchor not in (None, "auto") else "middle")
        assert bottom >= layout.legend.y, "the legend would overlap the colour bar"
    assert layout.margin.b > 0  # room under the brain for the legend
    # no regions: no legend settings needed, the layout stays compact
    plain = viz.surface_figure(values, hemi="left")
    assert not any(t.showlegend for t in plain.data) and plain.layout.height == 440


def test_four_view_png_is_an_image():
    from PIL import Image

    values = np.random.default_rng(2).uniform(-1, 1, 2 * N)
    png = viz.four_view_png(values, title="t", dpi=40)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] > 2 * image.size[1]


def test_histogram_counts_match_numpy():
    rng = np.random.default_rng(3)
    r = rng.normal(0.1, 0.1, 500)
    sig = r > 0.2
    fig = viz.correlation_histogram(r, sig, n_bins=20)
    edges = np.linspace(r.min(), r.max(), 21)
    np.testing.assert_array_equal(fig.data[0].y, np.histogram(r[~sig], edges)[0])
    np.testing.assert_array_equal(fig.data[1].y, np.histogram(r[sig], edges)[0])
    assert sum(fig.data[0].y) + sum(fig.data[1].y) == r.size


def test_waveform_envelope_matches_block_loop():
    rng = np.random.default_rng(4)
    audio = rng.normal(size=10_001).astype(np.float32)
    fig = viz.waveform_figure(audio, 1000, word_onsets=[0.5, 2.0], words=["a", "b"], tr_times=[-2, 0, 2, 4, 20],
                              max_points=100)
    block = int(np.ceil(audio.size / 100))
    maxima = [audio[i:i + block].max() if i + block <= audio.size else max(audio[i:].max(), audio[-1])
              for i in range(0, audio.size, block)]
    y = np.asarray(fig.data[0].y)
    np.testing.assert_allclose(y[:len(maxima)], maxima)
    ticks = [t for t in fig.data if t.name == "TR times"][0]
    assert list(ticks.x) == [0, 2, 4]  # only TRs inside the audio
    words = [t for t in fig.data if t.name == "word onsets"][0]
    assert list(words.text) == ["a", "b"]


def test_spectrogram_shape():
    audio = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    fig = viz.spectrogram_figure(audio, 16000, n_mels=32)
    z = np.asarray(fig.data[0].z)
    assert z.shape[0] == 32
    assert z.max() == pytest.approx(0.0)  # dB relative to the maximum


def test_window_diagram_spans():
    fig = viz.window_diagram(0.5, 2.0, include_early=True, n_windows=6)
    bars = fig.data[0]
    ends = np.array([0.5 * (i + 1) for i in range(6)])
    base, width = np.asarray(bars.base, dtype=float), np.asarray(bars.x, dtype=float)
    np.testing.assert_allclose(base, np.maximum(ends - 2.0, 0))
    np.testing.assert_allclose(base + width, ends)
    late = viz.window_diagram(0.5, 2.0, include_early=False, n_windows=3)
    np.testing.assert_allclose(np.asarray(late.data[1].x, dtype=float), [2.0, 2.5, 3.0])
    with pytest.raises(InputError):
        viz.window_diagram(0, 2.0)


def test_layer_profile_and_length_preview():
    fig = viz.layer_profile_figure([0, 1, 2], [0.1, 0.3, 0.2], [5, 50, 20], selected=1)
    assert list(fig.data[1].y) == [0.1, 0.3, 0.2]
    assert fig.data[0].marker.color[1] != fig.data[0].marker.color[0]
    preview = viz.length_preview_figure([{"story": "a", "features": 5, "targets": 5, "match": True},
                                         {"story": "b", "features": 4, "targets": 5, "match": False}])
    assert preview.data[0].marker.color[1] == "#d7301f"


def test_glass_brain_png():
    from PIL import Image

    mask = np.zeros((10, 12, 10), dtype=bool)
    mask[3:7, 3:9, 3:7] = True
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-20, -24, -20]
    png = viz.glass_brain_png(np.linspace(-1, 1, mask.sum()), mask, affine)
    assert Image.open(io.BytesIO(png)).format == "PNG"
    with pytest.raises(InputError, match="mask has"):
        viz.glass_brain_png(np.zeros(3), mask, affine)
