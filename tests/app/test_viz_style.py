"""Figures fit to project: rounded symmetric colour limits with a labelled colour bar, one legend
entry per region with its own colour, integer count axes, word labels that never overlap, a
four-view PNG at least 2400 px wide with equal-size brains, a projector style."""
from __future__ import annotations

import io

import numpy as np
import pytest

from encoding_core import viz
from encoding_core.viz.style import colour_ticks, nice_limit, tick_format


@pytest.mark.parametrize("value, expected", [(0.437, 0.5), (0.5, 0.5), (0.0123, 0.015), (7.2, 8.0), (0.26, 0.3),
                                             (1.0, 1.0), (0.0, 1.0), (float("nan"), 1.0), (-0.21, 0.25)])
def test_nice_limit_rounds_up_to_a_readable_number(value, expected):
    assert nice_limit(value) == pytest.approx(expected)
    if np.isfinite(value) and value:
        assert nice_limit(value) >= abs(value)


def test_ticks_are_shown_exactly():
    assert colour_ticks(-0.5, 0.5) == [-0.5, -0.25, 0.0, 0.25, 0.5] and tick_format(-0.5, 0.5) == ".2f"
    assert colour_ticks(0.0, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_map_title_says_what_is_shown():
    assert viz.map_title("correlation r", 3, "left", "medial", "FDR q = 0.05") == \
        "correlation r · layer 3 · left hemisphere medial view · FDR q = 0.05"


def test_surface_figure_colour_bar_legend_and_regions():
    values = np.random.default_rng(0).normal(0, 0.2, 2 * viz.N_VERTICES_FSAVERAGE5)
    values[:10] = 0.437  # the largest |value| on the left
    regions = {"Auditory cortex": np.arange(values.size) < 300, "Superior temporal sulcus":
               (np.arange(values.size) >= 1000) & (np.arange(values.size) < 1400)}
    figure = viz.surface_figure(values, "left", "lateral", title="t", regions=regions, colorbar_title="r (test set)",
                                vmax=float(np.nanmax(np.abs(values[:10242]))))
    stat = [t for t in figure.data if t.type == "mesh3d" and t.intensity is not None][0]
    limit = nice_limit(np.abs(values[:10242]).max())
    assert stat.cmin == -limit and stat.cmax == limit and stat.colorbar.title.text == "r (test set)"
    outlines = [t for t in figure.data if t.type == "scatter3d"]
    assert [t.name for t in outlines] == list(regions)  # one entry each, readable labels
    assert len({t.marker.color for t in outlines}) == 2 and len({t.marker.symbol for t in outlines}) == 2
    # normalised maps: their own 0-1 scale
    figure = viz.surface_figure(np.clip(values, 0, 1), symmetric=False, vmin=0.0, vmax=1.0,
                                colorbar_title="normalised r")
    stat = [t for t in figure.data if t.type == "mesh3d" and t.intensity is not None][0]
    assert (stat.cmin, stat.cmax) == (0.0, 1.0) and list(stat.colorbar.tickvals) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_four_view_png_is_wide_with_equal_brains():
    from PIL import Image

    values = np.random.default_rng(1).normal(0, 0.2, 2 * viz.N_VERTICES_FSAVERAGE5)
    surface = viz.fsaverage5_surface()
    front = [surface.meshes[h][0][:, 1] > np.quantile(surface.meshes[h][0][:, 1], 0.9) for h in viz.HEMISPHERES]
    regions = {"Frontal pole": np.concatenate(front)}  # a contiguous patch in each hemisphere
    png = viz.four_view_png(values, title="correlation r · layer 1", regions=regions, colorbar_title="r")
    image = Image.open(io.BytesIO(png))
    assert image.width >= 2400
    # the four brains sit in equal-width columns: the grey background covers each quarter alike
    grey = np.asarray(image.convert("L"))
    columns = (grey < 250).any(axis=0)  # anything drawn
    quarter = int(image.width * 0.215)
    spans = [columns[int(image.width * (0.01 + k * 0.21)): int(image.width * (0.01 + k * 0.21)) + quarter].sum()
             for k in range(4)]
    assert max(spans) - min(spans) < 0.15 * max(spans), spans


def test_count_axes_are_integers_from_zero():
    figure = viz.layer_profile_figure([0, 1, 2], [0.1, 0.2, 0.15], [0, 2, 1], selected=1)
    axis = figure.layout.yaxis2
    assert axis.rangemode == "nonnegative" and axis.tickformat == ",d" and axis.dtick == 1
    assert figure.layout.yaxis2.range[0] == 0
    # larger counts: a whole-number step, so every tick label sits at its own value
    for top, step in ((179, 50), (12, 5), (6, 2), (1000, 250), (4100, 2000)):
        axis = viz.layer_profile_figure([0, 1], [0.1, 0.2], [top, 3]).layout.yaxis2
        assert axis.dtick == step and float(axis.dtick).is_integer() and axis.range[1] >= top, (top, axis.dtick)
    histogram = viz.correlation_histogram(np.random.default_rng(2).normal(size=500))
    assert histogram.layout.yaxis.rangemode == "nonnegative" and histogram.layout.yaxis.tickformat == ",d"


def test_word_labels_never_overlap():
    rng = np.random.default_rng(3)
    onsets = np.sort(rng.uniform(0, 300, 900))  # a 5-minute story, 3 words a second
    words = [("w" * int(n)) for n in rng.integers(2, 12, onsets.size)]
    keep = viz.non_overlapping_labels(onsets, words, 300.0, width_px=1100, font_size=10)
    assert 10 < keep.size < onsets.size
    # an independent check: every pair of neighbouring labels, as pixel intervals
    px = onsets[keep] / 300.0 * 1100
    half = np.array([len(words[i]) for i in keep]) * 0.62 * 10 / 2
    assert np.all(px[1:] - half[1:] >= px[:-1] + half[:-1])
    figure = viz.waveform_figure(np.zeros(16000 * 300, dtype=np.float32), 16000, onsets, words)
    ticks = [t for t in figure.data if t.name == "word onsets"][0]
    labels = [t for t in figure.data if t.name == "word labels"][0]
    assert len(ticks.x) == onsets.size and len(labels.x) == keep.size


def test_projector_style_is_larger():
    figure = viz.apply_style(viz.kernel_figure(np.linspace(-3, 3, 20), np.ones(20), "lanczos", 2.0),
                             viz.PROJECTOR)
    assert figure.layout.font.size == viz.PROJECTOR.font_size > viz.SCREEN.font_size
    assert figure.layout.xaxis.tickfont.size == figure.layout.yaxis.title.font.size == viz.PROJECTOR.font_size
    profile = viz.apply_style(viz.layer_profile_figure([0, 1], [0.1, 0.2], [30, 3]), viz.PROJECTOR)
    assert profile.layout.yaxis2.tickfont.size == viz.PROJECTOR.font_size  # the overlaid count axis too
    assert figure.data[0].line.width == viz.PROJECTOR.line_width


def test_long_map_titles_wrap_at_their_separators():
    from encoding_core.viz.style import title_layout, title_margin, wrap_title

    title = "correlation r · layer 2 · left hemisphere lateral view · FDR-significant, correlation r ≥ 0.01"
    wrapped = wrap_title(title)
    lines = wrapped.split("<br>")
    assert len(lines) == 2 and all(len(line) <= 60 for line in lines)
    assert wrapped.replace("<br>", " · ") == title  # nothing lost, only broken at " · "
    assert wrap_title("r · layer 0") == "r · layer 0"
    assert title_margin(title) > title_margin("r · layer 0") > title_margin("")
    layout = title_layout(title)  # first line the title, the rest its subtitle
    assert (layout["text"], layout["subtitle"]["text"]) == tuple(lines)
    assert "subtitle" not in title_layout("r · layer 0")
