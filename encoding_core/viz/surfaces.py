"""Brain maps: surfaces to draw on, interactive surface figures, four-view and glass-brain PNGs.

A surface map is a per-vertex array, left hemisphere then right, of a :class:`BrainSurface`:
by default nilearn's fsaverage5 inflated mesh with its sulcal depth ``(20484,)``, loaded once
per process; any other mesh (a subject's own inflated cortex) works the same way. Every
function returns a plotly ``Figure`` or PNG ``bytes``; none touches a UI.
"""
from __future__ import annotations

import functools
import io
import logging
import threading
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np

from encoding_core.common.errors import InputError
from encoding_core.viz.style import (SCREEN, FigureStyle, apply_style, colour_ticks, nice_limit, region_style,
                                     tick_format, title_layout, title_margin)

logger = logging.getLogger(__name__)

N_VERTICES_FSAVERAGE5 = 10242
HEMISPHERES = ("left", "right")
VIEWS = ("lateral", "medial", "ventral")
FOUR_VIEWS = (("left", "lateral"), ("right", "lateral"), ("left", "medial"), ("right", "medial"))


@dataclass(frozen=True, eq=False)
class BrainSurface:
    """A surface to draw maps on: per hemisphere ``(coordinates (n, 3) mm, faces (f, 3))`` and a
    per-vertex shading ``(n,)`` (sulcal depth, positive in sulci; None: plain grey).

    name: shown in error messages and captions (e.g. ``"fsaverage5"``, ``"UTS01's cortex (inflated)"``).
    """

    name: str
    meshes: Mapping[str, tuple[np.ndarray, np.ndarray]]
    shading: Optional[Mapping[str, np.ndarray]] = None

    def n_vertices(self, hemi: str) -> int:
        return int(len(self.meshes[hemi][0]))

    def split(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Split a ``(n_left + n_right,)`` map into ``{"left": (n_left,), "right": (n_right,)}``."""
        values = np.asarray(values, dtype=np.float64).ravel()
        n_left, n_right = self.n_vertices("left"), self.n_vertices("right")
        if values.size != n_left + n_right:
            raise InputError(
                f"A map on {self.name} needs {n_left + n_right} values (left {n_left} then right {n_right} "
                f"vertices), got {values.size}; pass a map of a run on this surface."
            )
        return {"left": values[:n_left], "right": values[n_left:]}

    def mesh(self, hemi: str):
        """One hemisphere as a nilearn InMemoryMesh of copied coordinates (nilearn's matplotlib
        engine shifts the coordinates it is given in place)."""
        from nilearn.surface import InMemoryMesh

        coords, faces = self.meshes[hemi]
        return InMemoryMesh(np.array(coords, copy=True), faces)

    def background(self, hemi: str) -> Optional[np.ndarray]:
        return None if self.shading is None else np.asarray(self.shading[hemi], dtype=np.float64)


def fsaverage5_surface() -> BrainSurface:
    """nilearn's fsaverage5 inflated mesh with its sulcal depth, built once per process."""
    with _mesh_lock:
        return _load_fsaverage5_surface()


@functools.lru_cache(maxsize=1)
def _load_fsaverage5_surface() -> BrainSurface:
    mesh = fsaverage_mesh("inflated")
    meshes = {h: (np.asarray(mesh.parts[h].coordinates), np.asarray(mesh.parts[h].faces)) for h in HEMISPHERES}
    return BrainSurface("fsaverage5", meshes, fsaverage_sulcal_depth("inflated"))


# --------------------------------------------------------------------------- meshes
_mesh_lock = threading.RLock()  # one load per process even when a warm-up thread and a page ask together


def fsaverage_mesh(mesh_type: str = "inflated"):
    """The fsaverage5 ``PolyMesh`` (parts ``left``/``right``), loaded once per process (offline)."""
    with _mesh_lock:
        return _load_fsaverage_mesh(mesh_type)


@functools.lru_cache(maxsize=4)
def _load_fsaverage_mesh(mesh_type: str):
    from nilearn import datasets

    return datasets.load_fsaverage("fsaverage5")[mesh_type]


def fsaverage_sulcal_depth(mesh_type: str = "inflated") -> dict[str, np.ndarray]:
    """Sulcal depth per hemisphere, ``{"left": (10242,), "right": (10242,)}``, for shading."""
    with _mesh_lock:
        return _load_sulcal_depth(mesh_type)


@functools.lru_cache(maxsize=2)
def _load_sulcal_depth(mesh_type: str) -> dict[str, np.ndarray]:
    from nilearn import datasets

    image = datasets.load_fsaverage_data("fsaverage5", mesh_type=mesh_type, data_type="sulcal")
    return {h: np.asarray(image.data.parts[h], dtype=np.float64).ravel() for h in HEMISPHERES}


_import_lock = threading.Lock()


def import_plotting_libraries() -> None:
    """Import pandas, plotly and nilearn's plotting completely, one thread at a time.

    Call it at the start of every script run (cheap once imported): two threads importing pandas
    through different entry points at the same time can see it partially initialised ("module
    'pandas' has no attribute 'Series'"); 20 sessions opening the app at once did. The lock makes
    the first caller import everything while the others wait.
    """
    with _import_lock:
        import pandas  # noqa: F401
        import plotly.graph_objects  # noqa: F401
        from nilearn import plotting  # noqa: F401


def load_meshes() -> None:
    """Import the plotting libraries and load the fsaverage5 meshes, sulcal depth and mesh edges now
    (about 3 s cold; see :func:`~encoding_core.viz.pictures.warm_up`)."""
    import_plotting_libraries()
    fsaverage5_surface()
    for hemi in HEMISPHERES:
        _mesh_edges(hemi)


def _mesh_edges(hemi: str) -> np.ndarray:
    """Unique undirected edges ``(n_edges, 2)`` of one hemisphere's triangles."""
    with _mesh_lock:
        return _load_mesh_edges(hemi)


@functools.lru_cache(maxsize=2)
def _load_mesh_edges(hemi: str) -> np.ndarray:
    return _edges(np.asarray(fsaverage_mesh("inflated").parts[hemi].faces))


def _edges(faces: np.ndarray) -> np.ndarray:
    faces = np.asarray(faces, dtype=np.int64)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(edges, axis=1), axis=0)


def split_hemispheres(values: np.ndarray, surface: Optional[BrainSurface] = None) -> dict[str, np.ndarray]:
    """Split a map into ``{"left": ..., "right": ...}``: ``(20484,)`` -> two ``(10242,)`` on fsaverage5
    (default), or the hemisphere sizes of ``surface``."""
    if surface is not None:
        return surface.split(values)
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size != 2 * N_VERTICES_FSAVERAGE5:
        raise InputError(
            f"A surface map needs {2 * N_VERTICES_FSAVERAGE5} values (fsaverage5, left then right), "
            f"got {values.size}; pass a map from an fsaverage5 run."
        )
    return {"left": values[:N_VERTICES_FSAVERAGE5], "right": values[N_VERTICES_FSAVERAGE5:]}


def region_boundary(mask: np.ndarray, hemi: str, surface: Optional[BrainSurface] = None) -> np.ndarray:
    """Indices of vertices of ``mask`` (one hemisphere, (n,) bool) that touch a vertex outside it
    (fsaverage5 unless ``surface`` is given)."""
    mask = np.asarray(mask, dtype=bool).ravel()
    edges = _mesh_edges(hemi) if surface is None else _edges(surface.meshes[hemi][1])
    inside = mask[edges]
    crossing = edges[inside[:, 0] != inside[:, 1]]
    touched = np.zeros(mask.size, dtype=bool)
    touched[crossing.ravel()] = True
    return np.flatnonzero(touched & mask)


def thresholded_map(values: np.ndarray, significant_mask: Optional[np.ndarray] = None,
                    min_value: Optional[float] = None) -> np.ndarray:
    """Copy of ``values`` with NaN where not significant or below ``min_value`` (shape kept)."""
    out = np.asarray(values, dtype=np.float64).copy()
    if significant_mask is not None:
        out[~np.asarray(significant_mask, dtype=bool)] = np.nan
    if min_value is not None:
        out[~(out >= min_value)] = np.nan
    return out


# --------------------------------------------------------------------------- a coarser mesh for interactive views
def parent_icosphere(faces: np.ndarray, n_vertices: int) -> Optional[tuple[int, np.ndarray]]:
    """The mesh one subdivision coarser than an icosahedral mesh whose parent vertices come first.

    An icosphere of order k (fsaverage5: k = 5, 10242 vertices per hemisphere) is made by splitting
    every triangle of order k-1 into four at its edge midpoints; FreeSurfer numbers the kept
    (parent) vertices first. Each parent triangle (a, b, c) is recovered from a corner child
    triangle (a, m_ab, m_ca): b and c are the other parents of the midpoints. Returns
    ``(n_parent_vertices, parent_faces (f, 3))`` with the child's orientation, or None when the
    mesh is not such a subdivision (a subject's own cortex). Vectorised over faces.
    """
    faces = np.asarray(faces, dtype=np.int64)
    k = np.log((n_vertices - 2) / 10.0) / np.log(4.0) if n_vertices > 12 else -1.0
    if k < 1 or abs(k - round(k)) > 1e-9:
        return None
    n_parent = 10 * 4 ** (int(round(k)) - 1) + 2
    edges = _edges(faces)
    mixed = edges[(edges[:, 0] < n_parent) != (edges[:, 1] < n_parent)]
    child, parent = np.where(mixed[:, 0] >= n_parent, mixed[:, 0], mixed[:, 1]), mixed.min(axis=1)
    order = np.argsort(child, kind="stable")
    child, parent = child[order], parent[order]
    if child.size != 2 * (n_vertices - n_parent) or np.any(child[0::2] != child[1::2]) \
            or np.any(child[0::2] != np.arange(n_parent, n_vertices)):
        return None  # every midpoint touches exactly two parents, or this is not a subdivision
    ends = parent.reshape(-1, 2)  # ends[m - n_parent] = the two parents of midpoint m
    is_parent = faces < n_parent
    corner = faces[is_parent.sum(axis=1) == 1]
    first = np.argmax(corner < n_parent, axis=1)
    rolled = np.take_along_axis(corner, (first[:, None] + np.arange(3)[None, :]) % 3, axis=1)
    a = rolled[:, 0]

    def other_end(midpoints: np.ndarray) -> np.ndarray:
        pair = ends[midpoints - n_parent]
        return np.where(pair[:, 0] == a, pair[:, 1], pair[:, 0])

    triangles = np.stack([a, other_end(rolled[:, 1]), other_end(rolled[:, 2])], axis=1)
    _, keep = np.unique(np.sort(triangles, axis=1), axis=0, return_index=True)
    parent_faces = triangles[np.sort(keep)]
    if len(parent_faces) != 2 * n_parent - 4:  # a closed triangulated sphere: F = 2V - 4
        return None
    return n_parent, parent_faces


@dataclass(frozen=True, eq=False)
class CoarseSurface:
    """A surface one subdivision coarser, for interactive views: ``surface`` (meshes of the kept
    vertices) and, per hemisphere, the indices ``keep`` of those vertices in the full mesh."""

    surface: BrainSurface
    keep: Mapping[str, np.ndarray]


_coarse_cache: dict[int, tuple[BrainSurface, Optional[CoarseSurface]]] = {}


def coarse_surface(surface: BrainSurface) -> Optional[CoarseSurface]:
    """:func:`parent_icosphere` of both hemispheres of ``surface`` (fsaverage5 -> 2562 vertices per
    hemisphere, a quarter of the figure's data), built once per surface; None for other meshes."""
    with _mesh_lock:
        cached = _coarse_cache.get(id(surface))
        if cached is not None and cached[0] is surface:
            return cached[1]
        meshes, keep, shading = {}, {}, {}
        result: Optional[CoarseSurface] = None
        for hemi in HEMISPHERES:
            coords, faces = surface.meshes[hemi]
            parent = parent_icosphere(faces, len(coords))
            if parent is None:
                break
            n_parent, parent_faces = parent
            keep[hemi] = np.arange(n_parent)
            meshes[hemi] = (np.asarray(coords)[:n_parent], parent_faces)
            if surface.shading is not None:
                shading[hemi] = np.asarray(surface.shading[hemi])[:n_parent]
        else:
            result = CoarseSurface(BrainSurface(f"{surface.name} (one level coarser)", meshes,
                                                shading if surface.shading is not None else None), keep)
        _coarse_cache[id(surface)] = (surface, result)
        return result


# --------------------------------------------------------------------------- surface figures
def colour_limits(values: np.ndarray, vmax: Optional[float] = None, symmetric: bool = True,
                  vmin: Optional[float] = None, round_limits: bool = True) -> tuple[float, float]:
    """``(low, high)`` colour limits of a map: high is ``vmax`` or the largest finite |value| (1 when
    there is none), rounded up to a readable number with ``round_limits``; low is ``-high`` when
    ``symmetric``, else ``vmin`` (default 0)."""
    if vmax is None:
        finite = np.asarray(values, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        vmax = float(np.abs(finite).max()) if finite.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
    if round_limits:
        vmax = nice_limit(vmax)
    return (-vmax if symmetric else (0.0 if vmin is None else float(vmin))), float(vmax)


def _region_items(regions: Optional[Mapping[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    return list((regions or {}).items())


def surface_figure(values: np.ndarray, hemi: str = "left", view: str = "lateral",
                   vmax: Optional[float] = None, cmap: str = "RdBu_r", title: str = "",
                   regions: Optional[dict[str, np.ndarray]] = None, symmetric: bool = True,
                   surface: Optional[BrainSurface] = None, *, colorbar_title: str = "",
                   vmin: Optional[float] = None, round_limits: bool = True, style: Optional[FigureStyle] = None,
                   height: Optional[int] = None, coarse: bool = False):
    """Interactive plotly brain map of one hemisphere of a surface map.

    values: one value per vertex of ``surface`` (default fsaverage5: ``(20484,)``), left then
    right; NaN vertices are left uncoloured (only the sulcal background shows). Colour limits:
    ``[-vmax, vmax]`` when ``symmetric`` (vmax rounded up to a readable number with
    ``round_limits``), else ``[vmin or 0, vmax]``; the colour bar is labelled ``colorbar_title``.
    regions: optional readable label -> bool mask of the same length, each outlined in its own
    colour and marker (:func:`~encoding_core.viz.style.region_style`) and listed once in a
    horizontal legend under the brain (never over the colour bar). style: screen or projector
    sizes. coarse: draw on the mesh one subdivision coarser (:func:`coarse_surface`; fsaverage5:
    the 2562 vertices per hemisphere of fsaverage4, each showing its own value), a quarter of the
    data for a browser to receive and draw; ignored for meshes that are not icospheres.
    Returns a plotly ``Figure``.
    """
    from nilearn import plotting
    import plotly.graph_objects as go

    if hemi not in HEMISPHERES:
        raise InputError(f"hemi must be 'left' or 'right', got {hemi!r}.")
    if view not in VIEWS:
        raise InputError(f"view must be one of {VIEWS}, got {view!r}.")
    style = style or SCREEN
    surface = surface or fsaverage5_surface()
    parts = surface.split(values)
    data = parts[hemi]
    coarser = coarse_surface(surface) if coarse else None
    if coarser is not None:  # the kept vertices' own values and region masks on the coarser mesh
        keep = coarser.keep
        data = data[keep[hemi]]
        regions = {name: np.concatenate([surface.split(mask)[h][keep[h]] for h in HEMISPHERES]) > 0
                   for name, mask in (regions or {}).items()} or None
        surface = coarser.surface
    finite = np.isfinite(data)
    low, vmax = colour_limits(data, vmax, symmetric, vmin, round_limits)
    # nilearn thresholds |value| < threshold; NaN becomes 0 and is hidden by a tiny threshold.
    shown = np.where(finite, data, 0.0)
    threshold = 1e-12 if not finite.all() or np.any(shown == 0) else None
    mesh = surface.mesh(hemi)
    display = plotting.plot_surf_stat_map(
        mesh, shown, bg_map=surface.background(hemi), hemi=hemi, view=view,
        engine="plotly", cmap=cmap, threshold=threshold, vmax=vmax,
        vmin=low, symmetric_cbar=symmetric, title=title or None,
    )
    figure = display.figure
    ticks = colour_ticks(low, vmax)
    for trace in figure.data:
        if trace.type == "mesh3d" and trace.intensity is not None:
            trace.update(cmin=low, cmax=vmax, colorbar={
                "title": {"text": colorbar_title, "side": "right"}, "tickvals": ticks,
                "tickformat": tick_format(low, vmax), "len": 0.6})
    coords = np.asarray(mesh.coordinates)
    for index, (name, mask) in enumerate(_region_items(regions)):
        edge = region_boundary(surface.split(mask)[hemi] > 0, hemi,
                               None if surface.name == "fsaverage5" else surface)
        if edge.size == 0:
            continue
        look = region_style(index)
        figure.add_trace(go.Scatter3d(
            x=coords[edge, 0], y=coords[edge, 1], z=coords[edge, 2], mode="markers", meta="outline",
            marker={"size": style.outline_size, "color": look["colour"], "symbol": look["symbol"]},
            name=name, showlegend=True, hoverinfo="name",
        ))
    figure.update_layout(height=(height or 440) + max(title_margin(title, style) - 50, 0),
                         margin={"l": 0, "r": 0, "t": title_margin(title, style), "b": 0})
    if title:
        figure.update_layout(title=title_layout(title, style))
    if any(trace.showlegend for trace in figure.data):
        legend_below_brain(figure, style)
    return apply_style(figure, style)


def legend_below_brain(figure, style: FigureStyle) -> None:
    """Put a brain map's region legend below the brain, centred and horizontal (the colour bar keeps
    the right edge to itself), 60 px taller to make room."""
    figure.update_layout(
        height=figure.layout.height + 60, margin={"b": 60},
        legend={"orientation": "h", "x": 0.5, "xanchor": "center", "y": 0.0, "yanchor": "top",
                "title": {"text": "outlined:"}, "font": {"size": style.font_size}, "itemsizing": "constant"},
    )


FOUR_VIEW_WIDTH_PX = 2600


def four_view_png(values: np.ndarray, vmax: Optional[float] = None, title: str = "",
                  cmap: str = "RdBu_r", regions: Optional[dict[str, np.ndarray]] = None,
                  dpi: int = 100, surface: Optional[BrainSurface] = None, *, colorbar_title: str = "",
                  symmetric: bool = True, vmin: Optional[float] = None, round_limits: bool = True,
                  width_px: int = FOUR_VIEW_WIDTH_PX, style: Optional[FigureStyle] = None) -> bytes:
    """A static PNG (bytes) of a surface map: left/right lateral and medial views, for slides.

    values: one per vertex of ``surface`` (default fsaverage5, ``(20484,)``). NaN vertices show
    only the sulcal background. The four brains get equal axes; the colour bar (labelled
    ``colorbar_title``, limits as in :func:`surface_figure`) has its own axis on the right, and
    regions (readable label -> bool mask) are drawn as contours in distinct colours
    with one legend entry each (contours in colour only). The image is ``width_px`` pixels wide (>= 2400 for a projector;
    ``dpi`` only sets how large text is relative to it).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from nilearn import plotting

    style = style or SCREEN
    surface = surface or fsaverage5_surface()
    parts = surface.split(values)
    low, vmax = colour_limits(np.concatenate([parts[h] for h in HEMISPHERES]), vmax, symmetric, vmin, round_limits)
    dpi = max(int(dpi), 100)
    width_in = width_px / dpi
    fig = plt.figure(figsize=(width_in, width_in * 0.30), dpi=dpi)
    scale = width_in / 13.0 * (style.font_size / SCREEN.font_size)  # text keeps its size relative to the brains
    items = _region_items(regions)
    bottom = 0.16 if items else 0.05
    brain_w, left0, gap = 0.205, 0.01, 0.005
    axes = [fig.add_axes((left0 + k * (brain_w + gap), bottom, brain_w, 0.78 - bottom + 0.05), projection="3d")
            for k in range(4)]
    colorbar_axis = fig.add_axes((left0 + 4 * (brain_w + gap) + 0.02, bottom + 0.08, 0.012, 0.62 - bottom + 0.05))
    try:
        for ax, (hemi, view) in zip(axes, FOUR_VIEWS):
            mesh = surface.mesh(hemi)
            data = parts[hemi]
            shown = np.where(np.isfinite(data), data, 0.0)
            plotting.plot_surf_stat_map(
                mesh, shown, bg_map=surface.background(hemi), hemi=hemi, view=view,
                axes=ax, figure=fig, colorbar=False, cmap=cmap,
                threshold=1e-12, vmax=vmax, vmin=low, symmetric_cbar=symmetric,
            )
            ax.set_title(f"{hemi} {view}", fontsize=9 * scale)
            for index, (name, mask) in enumerate(items):
                roi = surface.split(mask)[hemi] > 0
                if roi.any():
                    look = region_style(index)
                    plotting.plot_surf_contours(mesh, roi.astype(int), hemi=hemi, levels=[1], colors=[look["colour"]],
                                                axes=ax, figure=fig)
        mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(low, vmax), cmap=cmap)
        bar = fig.colorbar(mappable, cax=colorbar_axis, ticks=colour_ticks(low, vmax))
        bar.ax.tick_params(labelsize=8 * scale)
        if colorbar_title:
            bar.set_label(colorbar_title, fontsize=9 * scale)
        if items:
            handles = [Line2D([0], [0], color=region_style(i)["colour"], linewidth=style.contour_width * 2, label=name)
                       for i, (name, _) in enumerate(items)]
            fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), frameon=False,
                       fontsize=8 * scale, title="outlined", title_fontsize=8 * scale)
        if title:
            fig.suptitle(title, fontsize=11 * scale)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()
    finally:
        plt.close(fig)


def glass_brain_png(values: np.ndarray, mask: np.ndarray, affine: np.ndarray, threshold: float = 0.0,
                    title: str = "") -> bytes:
    """Glass-brain PNG (bytes) of a volume map: values ``(n_voxels,)`` in the True voxels of
    ``mask`` (3-D bool, C order), ``affine`` 4x4 voxel-to-mm. The outline is the MNI152 brain:
    a last resort for volumes with no known surface (the caller says so)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import nibabel
    from nilearn import plotting

    mask = np.asarray(mask, dtype=bool)
    values = np.asarray(values, dtype=np.float32).ravel()
    if values.size != int(mask.sum()):
        raise InputError(f"The map has {values.size} values but the mask has {int(mask.sum())} voxels.")
    volume = np.zeros(mask.shape, dtype=np.float32)
    volume[mask] = np.nan_to_num(values)
    image = nibabel.Nifti1Image(volume, np.asarray(affine, dtype=np.float64))
    fig = plt.figure(figsize=(10, 3.5))
    try:
        plotting.plot_glass_brain(image, figure=fig, threshold=threshold, colorbar=True, plot_abs=False,
                                  cmap="RdBu_r", symmetric_cbar=True, title=title or None)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        return buf.getvalue()
    finally:
        plt.close(fig)
