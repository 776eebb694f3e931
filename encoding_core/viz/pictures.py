"""Brain pictures: a surface map drawn as a flat image of one hemisphere from one fixed view.

The browser draws an image in a tenth of the time it needs to set up a WebGL scene for the same
mesh (bench/bench_map_draw.py), so the Results page shows these pictures by default and draws
the rotatable 3-D figure (:func:`~encoding_core.viz.surfaces.surface_figure`) only on request.

How: the hemisphere is projected orthographically with the camera nilearn's plotly engine uses
for the view, and rasterised once per (surface, hemisphere, view, width) into a pixel -> vertex
image (the front-most triangle at each pixel centre, then its vertex nearest that centre) and a
shaded sulcal background. Drawing a map is then one lookup, ``values[pixel_vertex]``: each pixel
shows the value of its nearest vertex, and hovering a pixel reports that value.
"""
from __future__ import annotations

import base64
import io
import logging
import threading
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from encoding_core.common.errors import InputError
from encoding_core.viz.style import (SCREEN, FigureStyle, apply_style, colour_ticks, region_style,
                                     tick_format, title_layout, title_margin)
from encoding_core.viz.surfaces import (HEMISPHERES, VIEWS, BrainSurface, colour_limits, fsaverage5_surface,
                                       legend_below_brain, load_meshes)

logger = logging.getLogger(__name__)

PICTURE_WIDTH_PX = 760
"""Width of the picture (pixels); its height follows the hemisphere's shape in the view."""
HOVER_STEP_PX = 5
"""One hover sample per block of HOVER_STEP_PX x HOVER_STEP_PX pixels (a 25th of the picture's pixels)."""

# Camera of each view as nilearn's plotly engine sets it: (direction towards the eye, screen up).
_CAMERAS = {
    ("left", "lateral"): ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    ("right", "lateral"): ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    ("left", "medial"): ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    ("right", "medial"): ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    ("left", "ventral"): ((0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),
    ("right", "ventral"): ((0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),
}


@dataclass(frozen=True)
class SurfaceRaster:
    """One hemisphere rasterised from one view.

    vertex: ``(height, width)`` int32, the vertex each pixel shows, -1 outside the brain.
    background: ``(height, width)`` float32 grey level in [0, 1] (sulcal depth, darker in sulci,
    times a diffuse light from the eye), 1 outside the brain.
    light: ``(height, width)`` float32 diffuse light in [0, 1] of the triangle under each pixel.
    """

    vertex: np.ndarray
    background: np.ndarray
    light: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.vertex.shape)  # type: ignore[return-value]


def view_axes(hemi: str, view: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors ``(screen right, screen up, towards the eye)`` of a view, in the mesh's mm axes."""
    if hemi not in HEMISPHERES:
        raise InputError(f"hemi must be 'left' or 'right', got {hemi!r}.")
    if view not in VIEWS:
        raise InputError(f"view must be one of {VIEWS}, got {view!r}.")
    eye, up = (np.asarray(v, dtype=np.float64) for v in _CAMERAS[(hemi, view)])
    right = np.cross(-eye, up)
    return right, up, eye


def rasterize(coords: np.ndarray, faces: np.ndarray, hemi: str, view: str, width_px: int = PICTURE_WIDTH_PX,
              shading: Optional[np.ndarray] = None) -> SurfaceRaster:
    """Rasterise one hemisphere ``(coords (n, 3) mm, faces (f, 3))`` from ``view`` into a picture
    ``width_px`` pixels wide, with the z-buffer over all triangles computed at once (no loop per
    triangle or pixel). ``shading``: per-vertex sulcal depth (positive in sulci) or None."""
    coords = np.asarray(coords, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    right, up, eye = view_axes(hemi, view)
    screen_x, screen_y, depth = coords @ right, coords @ up, coords @ eye
    margin = 0.02 * max(np.ptp(screen_x), np.ptp(screen_y))
    x_low, y_high = screen_x.min() - margin, screen_y.max() + margin
    scale = (width_px - 1) / (np.ptp(screen_x) + 2 * margin)
    height_px = int(np.ceil((np.ptp(screen_y) + 2 * margin) * scale)) + 1
    px, py = (screen_x - x_low) * scale, (y_high - screen_y) * scale  # pixel units, rows downwards

    normals = np.cross(coords[faces[:, 1]] - coords[faces[:, 0]], coords[faces[:, 2]] - coords[faces[:, 0]])
    facing_sign = _outward_sign(coords, faces)
    if facing_sign:  # a closed mesh: triangles turned away from the eye are hidden, skip them
        front = facing_sign * (normals @ eye) >= 0
        faces, normals = faces[front], normals[front]
    corner_x, corner_y = px[faces], py[faces]  # (f, 3)
    x0 = np.clip(np.floor(corner_x.min(1)).astype(np.int64), 0, width_px - 1)
    x1 = np.clip(np.ceil(corner_x.max(1)).astype(np.int64), 0, width_px - 1)
    y0 = np.clip(np.floor(corner_y.min(1)).astype(np.int64), 0, height_px - 1)
    y1 = np.clip(np.ceil(corner_y.max(1)).astype(np.int64), 0, height_px - 1)
    span_x, span_y = x1 - x0 + 1, y1 - y0 + 1
    counts = span_x * span_y
    triangle = np.repeat(np.arange(len(faces)), counts)  # one row per (triangle, pixel of its box)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    col = x0[triangle] + offset % span_x[triangle]
    row = y0[triangle] + offset // span_x[triangle]

    # barycentric coordinates of each pixel centre in its triangle
    ax, ay = corner_x[triangle, 0], corner_y[triangle, 0]
    bx, by = corner_x[triangle, 1], corner_y[triangle, 1]
    cx, cy = corner_x[triangle, 2], corner_y[triangle, 2]
    sx, sy = col.astype(np.float64), row.astype(np.float64)  # pixel centres sit on integer coordinates
    area = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay)
    usable = np.abs(area) > 1e-12
    area = np.where(usable, area, 1.0)
    weight_b = ((sx - ax) * (cy - ay) - (cx - ax) * (sy - ay)) / area
    weight_c = ((bx - ax) * (sy - ay) - (sx - ax) * (by - ay)) / area
    weight_a = 1.0 - weight_b - weight_c
    tolerance = -1e-9
    inside = usable & (weight_a >= tolerance) & (weight_b >= tolerance) & (weight_c >= tolerance)
    triangle, col, row = triangle[inside], col[inside], row[inside]
    weights = np.stack([weight_a[inside], weight_b[inside], weight_c[inside]], axis=1)
    pixel_depth = (weights * depth[faces[triangle]]).sum(1)

    pixel = row * width_px + col
    order = np.lexsort((-pixel_depth, pixel))  # per pixel, the nearest to the eye first
    sorted_pixel = pixel[order]
    first = np.flatnonzero(np.r_[True, sorted_pixel[1:] != sorted_pixel[:-1]])
    chosen = order[first]
    pixel = sorted_pixel[first]
    nearest_corner = weights[chosen].argmax(1)
    vertex = np.full(height_px * width_px, -1, dtype=np.int32)
    vertex[pixel] = faces[triangle[chosen], nearest_corner]

    lengths = np.linalg.norm(normals, axis=1)
    facing = np.abs(normals @ eye) / np.where(lengths > 0, lengths, 1.0)
    light = np.ones(height_px * width_px, dtype=np.float32)
    light[pixel] = 0.45 + 0.55 * facing[triangle[chosen]]
    grey = np.full(height_px * width_px, 0.82, dtype=np.float64)
    if shading is not None:
        sulcal = np.asarray(shading, dtype=np.float64)
        in_sulcus = (sulcal > 0).astype(np.float64)
        grey[pixel] = 0.78 - 0.28 * in_sulcus[vertex[pixel]]
    background = np.ones(height_px * width_px, dtype=np.float32)
    background[pixel] = grey[pixel] * light[pixel]
    shape = (height_px, width_px)
    return SurfaceRaster(vertex.reshape(shape), background.reshape(shape), light.reshape(shape))


def _outward_sign(coords: np.ndarray, faces: np.ndarray) -> int:
    """+1 (-1) when ``faces`` of a closed mesh wind outwards (inwards) by the signed volume they
    enclose; 0 for a mesh with holes or edges shared by more than two faces (no culling then)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, uses = np.unique(edges[:, 0] * (int(edges.max()) + 1) + edges[:, 1], return_counts=True)
    if not np.all(uses == 2):
        return 0
    a, b, c = coords[faces[:, 0]], coords[faces[:, 1]], coords[faces[:, 2]]
    volume = float(np.einsum("ij,ij->", a - a.mean(0), np.cross(b - a.mean(0), c - a.mean(0)))) / 6.0
    return int(np.sign(volume))


_raster_lock = threading.Lock()
_raster_cache: dict[tuple, tuple[BrainSurface, SurfaceRaster]] = {}


def surface_raster(surface: BrainSurface, hemi: str, view: str, width_px: int = PICTURE_WIDTH_PX) -> SurfaceRaster:
    """:func:`rasterize` of one hemisphere of ``surface``, built once per process and view."""
    key = (id(surface), hemi, view, int(width_px))
    with _raster_lock:  # held while building: a page asking during the app's warm-up waits, never builds twice
        cached = _raster_cache.get(key)
        if cached is not None and cached[0] is surface:
            return cached[1]
        coords, faces = surface.meshes[hemi]
        raster = rasterize(coords, faces, hemi, view, width_px, surface.background(hemi))
        if len(_raster_cache) > 48:
            _raster_cache.clear()
        _raster_cache[key] = (surface, raster)
        return raster


def _colormap(name: str):
    from matplotlib import colormaps

    return colormaps[name]


def plotly_colorscale(cmap: str, n_stops: int = 11) -> list[list]:
    """The matplotlib colour map ``cmap`` as a plotly colour scale of ``n_stops`` stops."""
    colours = _colormap(cmap)(np.linspace(0.0, 1.0, n_stops))
    return [[float(at), f"rgb({int(round(r * 255))},{int(round(g * 255))},{int(round(b * 255))})"]
            for at, (r, g, b, _) in zip(np.linspace(0.0, 1.0, n_stops), colours)]


def picture_rgb(values_hemi: np.ndarray, raster: SurfaceRaster, low: float, high: float, cmap: str = "RdBu_r",
                outlines: Optional[list[tuple[np.ndarray, str]]] = None, outline_px: int = 2) -> np.ndarray:
    """``(height, width, 3)`` uint8 picture of one hemisphere's map (``values_hemi``: one per vertex,
    NaN: not shown, only the shaded background). Colours span ``[low, high]`` (values beyond
    saturate); shown colours keep a little of the light so the folds stay visible. outlines:
    ``(bool mask per vertex, "#rrggbb")`` drawn as ``outline_px``-pixel region borders."""
    values_hemi = np.asarray(values_hemi, dtype=np.float64)
    on_brain = raster.vertex >= 0
    shown = np.full(raster.shape, np.nan)
    shown[on_brain] = values_hemi[raster.vertex[on_brain]]
    picture = np.repeat(raster.background[..., None], 3, axis=2).astype(np.float64)
    coloured = np.isfinite(shown)
    if coloured.any():
        position = np.clip((shown[coloured] - low) / (high - low if high > low else 1.0), 0.0, 1.0)
        rgb = _colormap(cmap)(position)[:, :3]
        picture[coloured] = rgb * (0.7 + 0.3 * raster.light[coloured][:, None])
    for mask, colour in outlines or []:
        border = _border_pixels(np.asarray(mask, dtype=bool), raster, outline_px)
        picture[border] = [int(colour[k:k + 2], 16) / 255.0 for k in (1, 3, 5)]
    return np.clip(np.round(picture * 255.0), 0, 255).astype(np.uint8)


def _border_pixels(mask: np.ndarray, raster: SurfaceRaster, width_px: int) -> np.ndarray:
    """Pixels of the region ``mask`` (per vertex) within ``width_px`` of a pixel outside it."""
    on_brain = raster.vertex >= 0
    inside = np.zeros(raster.shape, dtype=bool)
    inside[on_brain] = mask[raster.vertex[on_brain]]
    near_outside = ~inside
    for _ in range(max(int(width_px), 1)):
        grown = near_outside.copy()
        grown[1:, :] |= near_outside[:-1, :]
        grown[:-1, :] |= near_outside[1:, :]
        grown[:, 1:] |= near_outside[:, :-1]
        grown[:, :-1] |= near_outside[:, 1:]
        near_outside = grown
    return inside & near_outside


def png_data_uri(picture: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI of an ``(h, w, 3)`` uint8 picture."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def surface_picture(values: np.ndarray, hemi: str = "left", view: str = "lateral", vmax: Optional[float] = None,
                    cmap: str = "RdBu_r", title: str = "", regions: Optional[dict[str, np.ndarray]] = None,
                    symmetric: bool = True, surface: Optional[BrainSurface] = None, *, colorbar_title: str = "",
                    vmin: Optional[float] = None, round_limits: bool = True, style: Optional[FigureStyle] = None,
                    width_px: int = PICTURE_WIDTH_PX):
    """A plotly figure of one hemisphere of a surface map as a flat picture from one view.

    Same arguments and colour limits as :func:`~encoding_core.viz.surfaces.surface_figure`
    (values: one per vertex of ``surface``, default fsaverage5 ``(20484,)``, NaN: not shown).
    The figure holds the picture as a PNG (every vertex of the mesh, ``width_px`` wide), an
    invisible hover grid (one sample per ``HOVER_STEP_PX`` pixels: the shown value, labelled
    ``colorbar_title``), a labelled colour bar, and one legend entry per region,
    each outlined in its own colour. Returns a plotly ``Figure``.
    """
    import plotly.graph_objects as go

    style = style or SCREEN
    surface = surface or fsaverage5_surface()
    data = surface.split(values)[hemi]
    raster = surface_raster(surface, hemi, view, width_px)
    low, vmax = colour_limits(data, vmax, symmetric, vmin, round_limits)
    region_items = list((regions or {}).items())
    outlines = [(surface.split(mask)[hemi] > 0, region_style(index)["colour"])
                for index, (_, mask) in enumerate(region_items)]
    outline_px = max(int(round(style.outline_size * 0.8)), 2)
    picture = picture_rgb(data, raster, low, vmax, cmap, outlines, outline_px)
    height_px, width = raster.shape

    step = HOVER_STEP_PX
    centre = step // 2
    hover_vertex = raster.vertex[centre::step, centre::step]
    on_brain = hover_vertex >= 0
    hover_value = np.full(hover_vertex.shape, np.nan, dtype=np.float32)
    hover_value[on_brain] = data[hover_vertex[on_brain]]
    transparent = [[0.0, "rgba(0,0,0,0)"], [1.0, "rgba(0,0,0,0)"]]
    ticks = colour_ticks(low, vmax)
    figure = go.Figure()
    figure.add_trace(go.Image(source=png_data_uri(picture), x0=0, dx=1, y0=0, dy=1, hoverinfo="skip",
                              name="picture"))
    figure.add_trace(go.Heatmap(
        z=hover_value, x0=centre, dx=step, y0=centre, dy=step, colorscale=transparent,
        showscale=False, zmin=low, zmax=vmax, name="hover", hoverongaps=False,
        hovertemplate=f"{colorbar_title or 'value'} %{{z:.3f}}<extra></extra>"))
    figure.add_trace(go.Scatter(
        x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip", name="colour bar",
        marker={"colorscale": plotly_colorscale(cmap), "cmin": low, "cmax": vmax, "color": [low], "showscale": True,
                "colorbar": {"title": {"text": colorbar_title, "side": "right"}, "tickvals": ticks,
                             "tickformat": tick_format(low, vmax), "len": 0.6,
                             "tickfont": {"size": style.font_size}}}))
    for index, (name, _) in enumerate(region_items):
        look = region_style(index)
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name, meta="outline", showlegend=True,
                                    line={"color": look["colour"], "width": outline_px + 2}, hoverinfo="skip"))
    axis = {"visible": False, "showgrid": False, "zeroline": False}
    top = title_margin(title, style)
    figure.update_layout(
        height=max(int(round(560 * height_px / width)) + top, 300), margin={"l": 0, "r": 0, "t": top, "b": 0},
        xaxis={**axis, "range": [-0.5, width - 0.5], "constrain": "domain"},
        yaxis={**axis, "range": [height_px - 0.5, -0.5], "scaleanchor": "x", "constrain": "domain"},
        plot_bgcolor="rgba(0,0,0,0)", paper_bgcolor="rgba(0,0,0,0)", dragmode=False,
    )
    if title:
        figure.update_layout(title=title_layout(title, style))
    if region_items:
        legend_below_brain(figure, style)
    return apply_style(figure, style)


def warm_up() -> float:
    """Import the plotting libraries and load the fsaverage5 meshes, sulcal depth, mesh edges and the
    rasters of every hemisphere and view's picture now.

    For a background thread at app start, so the first brain map does not pay for them
    (about 3 s cold). Returns the seconds spent; failures are logged, never raised (the
    page that needs the mesh reports the problem itself).
    """
    start = time.perf_counter()
    try:
        load_meshes()
        surface = fsaverage5_surface()
        for hemi in HEMISPHERES:
            for view in VIEWS:  # the Results page's pictures (lateral first: the default)
                surface_raster(surface, hemi, view)
    except Exception:  # noqa: BLE001 - a warm-up must never take the app down
        logger.warning("Warming up the fsaverage5 meshes failed; they load on first use.", exc_info=True)
    seconds = time.perf_counter() - start
    logger.info("fsaverage5 meshes, pictures and plotting libraries ready in %.1f s", seconds)
    return seconds
