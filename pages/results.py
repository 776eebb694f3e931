"""Results: brain maps per layer, layer profile, histogram, comparison and downloads.

Maps are drawn on the surface the run's space knows (``studio.map_surface``): fsaverage5, an
MNI152 volume projected onto fsaverage5, or a subject's own cortex; a glass brain only as a
labelled last resort. Everything expensive is cached per plain key (results folder, run id,
run stamp, layer, thresholds, view), never by hashing arrays: the per-layer arrays, the
surface and its projection, the plotly surface figures (as dicts) and the download bytes.
PNG, CSV and NPZ downloads are generated only when the user clicks (deferred
``st.download_button`` data).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from encoding_core import viz
from encoding_core.studio import (
    EncodingCoreError,
    ExperimentConfig,
    RunStore,
    alpha_summary,
    best_layer_choice,
    ceiling_target_caption,
    comparison_matrix,
    comparison_table,
    demo_ground_truth_rows,
    fallback_caption,
    fdr_label,
    glass_brain_allowed,
    is_partition_run,
    layer_profile,
    list_groups,
    map_surface,
    no_map_reason,
    normalized_caption,
    partition_map_labels,
    partition_region_rows,
    per_voxel_csv,
    per_voxel_npz,
    planted_region_masks,
    region_masks_for_run,
    region_rows,
    significance_label,
)
from pages import _common as common

common.enter_through_app()  # a page URL opened directly: draw it through app.py's router

CORRELATION = "correlation r"
NORMALISED = "noise-ceiling-normalised r"


# --------------------------------------------------------------------------- cached loads and figures
def _run_stamp(run_path: Path) -> str:
    """Changes when the run folder is rewritten (status.json mtime), so cached entries go stale."""
    try:
        return str((run_path / "status.json").stat().st_mtime_ns)
    except OSError:
        return ""


def _load_run(results_dir: str, run_id: str):
    return RunStore(results_dir).load(run_id)


@st.cache_data(show_spinner=False, max_entries=16)
def _run_summary(results_dir: str, run_id: str, stamp: str) -> tuple[dict, tuple, bool, str]:
    """(metrics per layer, (space kind, name, template, glass brain allowed, no-map reason), simulated,
    config TOML) of one run."""
    run = _load_run(results_dir, run_id)
    space = run.space()
    metrics = {layer: run.metrics(layer) for layer in run.layers}
    facts = (space.kind, space.name, space.template, glass_brain_allowed(space), no_map_reason(space))
    return metrics, facts, run.simulated, run.config.to_toml()


@st.cache_resource(show_spinner=False, max_entries=2)
def _surface_map(results_dir: str, run_id: str, stamp: str, cache_dir: str):
    """The surface the run's maps are drawn on and its projection (None: no surface known)."""
    return map_surface(_load_run(results_dir, run_id).space(), cache_dir)


@st.cache_data(show_spinner=False, max_entries=32)
def _layer_arrays(results_dir: str, run_id: str, stamp: str, layer: int) -> dict[str, np.ndarray]:
    """The per-voxel arrays of one layer, each ``(n_voxels,)``."""
    return _load_run(results_dir, run_id).arrays(layer)


@st.cache_resource(show_spinner=False, max_entries=64)
def _layer_chart(results_dir: str, run_id: str, stamp: str, layer: int, chart: str, projector: bool) -> go.Figure:
    """One of a layer's small charts (``"profile"``, ``"histogram"``, ``"alpha"``) as a styled figure,
    built once per run, layer and style: switching back to a layer costs no figure building. For
    the profile, ``layer`` is the layer it marks.

    The figure caches on this page are shared, never-modified ``go.Figure`` objects: given a dict,
    ``st.plotly_chart`` validates it again by building a Figure (about 20 ms per chart and rerun);
    given a Figure, it only copies it out."""
    metrics = _run_summary(results_dir, run_id, stamp)[0]
    if chart == "profile":
        profile = layer_profile(metrics)
        figure = viz.layer_profile_figure(profile["layers"], profile["median_r"], profile["n_significant"],
                                          selected=layer)
    elif chart == "histogram":
        arrays = _layer_arrays(results_dir, run_id, stamp, layer)
        figure = viz.correlation_histogram(arrays["correlations"], arrays.get("significant_mask"))
    else:
        diagnostics = alpha_summary(metrics[layer])
        figure = viz.alpha_choice_figure(diagnostics["alphas"], diagnostics["counts"],
                                         diagnostics.get("mean_cv_score_per_alpha"))
    return viz.apply_style(figure, viz.figure_style(projector))


@st.cache_data(show_spinner=False, max_entries=4)
def _region_masks(results_dir: str, run_id: str, stamp: str) -> tuple:
    """({region: (n_voxels,) bool} or None, where they come from) of one run (demo: planted regions)."""
    return region_masks_for_run(_load_run(results_dir, run_id))


@st.cache_data(show_spinner=False, max_entries=2)
def _planted_regions() -> dict[str, np.ndarray]:
    """One outline per planted region, under its readable label (one legend entry each)."""
    return planted_region_masks()


def _map(results_dir: str, run_id: str, stamp: str, cache_dir: str, layer: int, kind: str, significant_only: bool,
         min_r: float) -> tuple[np.ndarray, float, str]:
    """(thresholded map with NaN where hidden, colour limit, title) of one layer: on the vertices of the
    run's surface, or (n_voxels,) when there is none (glass brain)."""
    arrays = _layer_arrays(results_dir, run_id, stamp, layer)
    values = arrays["correlations"] if kind == CORRELATION else arrays["normalized_correlations"]
    significant = arrays.get("significant_mask") if significant_only else None
    surface_map = _surface_map(results_dir, run_id, stamp, cache_dir)
    if surface_map is None:
        shown, full = viz.thresholded_map(values, significant, min_r), values
    else:
        shown, full = surface_map.thresholded(values, significant, min_r), surface_map.to_vertices(values)
    vmax = float(np.nanmax(np.abs(full))) if np.isfinite(full).any() else 1.0
    if kind == NORMALISED:
        vmax = 1.0  # its own scale: 0 (nothing of the explainable response) to 1 (all of it)
    return shown, vmax, viz.map_title(kind, layer=layer, threshold=_threshold_text(kind, significant_only, min_r))


def _threshold_text(kind: str, significant_only: bool, min_r: float) -> str:
    """What a map hides, for its title: ``FDR-significant, correlation r ≥ 0.10``."""
    return f"{'FDR-significant, ' if significant_only else ''}{kind} ≥ {min_r:.2f}"


def _brain_figure(values: np.ndarray, hemi: str, view: str, rotatable: bool, full_mesh: bool,
                  **options: Any) -> go.Figure:
    """One hemisphere of a surface map: a flat picture from the chosen view (the
    default: no 3-D scene for the browser to build, so it draws in a fraction of the time) or, when
    ``rotatable``, the 3-D figure, on the mesh one subdivision coarser unless ``full_mesh``."""
    if rotatable:
        return viz.surface_figure(values, hemi=hemi, view=view, coarse=not full_mesh, **options)
    return viz.surface_picture(values, hemi=hemi, view=view, **options)


@st.cache_resource(show_spinner=False, max_entries=64)
def _surface_figure(results_dir: str, run_id: str, stamp: str, cache_dir: str, layer: int, kind: str,
                    significant_only: bool, min_r: float, hemi: str, view: str, with_regions: bool,
                    full_mesh: bool = False, projector: bool = False, rotatable: bool = False) -> go.Figure:
    """The surface map of one hemisphere/view, keyed on run, layer, thresholds, view and drawing
    (:func:`_brain_figure`)."""
    shown, vmax, title = _map(results_dir, run_id, stamp, cache_dir, layer, kind, significant_only, min_r)
    regions = _planted_regions() if with_regions else None
    surface = _surface_map(results_dir, run_id, stamp, cache_dir).surface
    title = viz.map_title(kind, layer=layer, hemi=hemi, view=view,
                          threshold=_threshold_text(kind, significant_only, min_r))
    return _brain_figure(shown, hemi, view, rotatable, full_mesh, vmax=vmax, title=title, **_scale(kind),
                         regions=regions, surface=surface, colorbar_title=kind, style=viz.figure_style(projector))


def _scale(kind: str) -> dict[str, Any]:
    """Colour scale of a map: r is symmetric around 0 (blue-red); normalised r runs 0-1 (viridis)."""
    if kind == NORMALISED:
        return {"symmetric": False, "vmin": 0.0, "cmap": "viridis", "round_limits": False}
    return {"symmetric": True}


@st.cache_data(show_spinner=False, max_entries=16)
def _four_view_png(results_dir: str, run_id: str, stamp: str, cache_dir: str, layer: int, kind: str,
                   significant_only: bool, min_r: float, with_regions: bool) -> bytes:
    shown, vmax, title = _map(results_dir, run_id, stamp, cache_dir, layer, kind, significant_only, min_r)
    surface = _surface_map(results_dir, run_id, stamp, cache_dir).surface
    return viz.four_view_png(shown, vmax=vmax, title=title, regions=_planted_regions() if with_regions else None,
                             surface=surface, colorbar_title=kind, **_scale(kind))


@st.cache_data(show_spinner=False, max_entries=8)
def _glass_brain_png(results_dir: str, run_id: str, stamp: str, cache_dir: str, layer: int, kind: str,
                     significant_only: bool, min_r: float) -> bytes:
    shown, _, title = _map(results_dir, run_id, stamp, cache_dir, layer, kind, significant_only, min_r)
    space = _load_run(results_dir, run_id).space()
    return viz.glass_brain_png(np.nan_to_num(shown), space.mask, space.affine, title=f"{title} · glass brain")


@st.cache_resource(show_spinner=False, max_entries=32)
def _partition_figure(results_dir: str, run_id: str, stamp: str, cache_dir: str, layer: int, name: str, label: str,
                      hemi: str, view: str, with_regions: bool, full_mesh: bool = False,
                      projector: bool = False, rotatable: bool = False) -> go.Figure:
    """The surface map of one variance-partition map (r², negatives shown).

    The colour limit is the largest positive r² (at most 1): a few badly predicted voxels can
    reach r² of -1 or below, and a limit set by them would wash out the variance the spaces
    explain; more negative values show at the end of the scale (the caption says so)."""
    surface_map = _surface_map(results_dir, run_id, stamp, cache_dir)
    values = surface_map.to_vertices(_layer_arrays(results_dir, run_id, stamp, layer)[name])
    positive = values[np.isfinite(values) & (values > 0)]
    vmax = min(float(positive.max()), 1.0) if positive.size else 1.0
    return _brain_figure(values, hemi, view, rotatable, full_mesh, vmax=vmax,
                         title=f"{label} (r², test data) · layer {layer} · {hemi} {view}",
                         regions=_planted_regions() if with_regions else None, colorbar_title="r²",
                         surface=surface_map.surface, style=viz.figure_style(projector))


@st.cache_resource(show_spinner=False, max_entries=32)
def _difference_figure(results_dir: str, run_id: str, stamp: str, cache_dir: str, layer: int, other: str,
                       other_stamp: str, other_layer: int, hemi: Optional[str], view: Optional[str],
                       rotatable: bool = False) -> go.Figure:
    """r(run, layer) − r(other, other_layer): a surface map (hemi/view given) or a histogram."""
    diff = (_layer_arrays(results_dir, run_id, stamp, layer)["correlations"]
            - _layer_arrays(results_dir, other, other_stamp, other_layer)["correlations"])
    if hemi and view:
        surface_map = _surface_map(results_dir, run_id, stamp, cache_dir)
        return _brain_figure(surface_map.to_vertices(diff), hemi, view, rotatable, False,
                             title=f"difference in r · {hemi} {view}", surface=surface_map.surface,
                             colorbar_title="difference in r")
    return viz.correlation_histogram(diff, title="difference in r")


@st.cache_data(show_spinner=False, max_entries=8)
def _download_bytes(results_dir: str, run_id: str, stamp: str, layer: int, fmt: str) -> bytes:
    arrays = _layer_arrays(results_dir, run_id, stamp, layer)
    metrics = _run_summary(results_dir, run_id, stamp)[0][layer]
    return per_voxel_csv(arrays, metrics) if fmt == "csv" else per_voxel_npz(arrays, metrics)


# --------------------------------------------------------------------------- statistics panels (issue 13)
# Everything a scientist needs to judge the statistics: the test's label, the best-layer rule, the
# fallback threshold, alpha diagnostics and per-region tables. Logic lives in encoding_core.studio;
# these functions only lay it out, so page-layout changes can move them as blocks.
@st.cache_data(show_spinner=False, max_entries=16)
def _run_details(results_dir: str, run_id: str, stamp: str) -> dict[str, Any]:
    """The run's summary, per-region rows (and their source) and, for the demo, the ground-truth rows."""
    run = _load_run(results_dir, run_id)
    rows, source = region_rows(run)
    return {"summary": run.summary, "regions": rows, "region_source": source,
            "ground_truth": demo_ground_truth_rows(run)}


def _statistics_caption(metrics: dict, config: ExperimentConfig) -> None:
    where = ("pooled held-out predictions of every story (all stories, CV)" if metrics.get("mode") == "cv"
             else "held-out test story")
    st.caption(f"Pearson r per voxel on the {where} · p-values: {significance_label(metrics, config)} · "
               f"{fdr_label(metrics, config)}.")
    warnings = (metrics.get("significance") or {}).get("warnings") or []
    for warning in warnings:
        st.warning(f"Significance test: {warning}")


def _alpha_panel(metrics: dict, run: tuple) -> None:
    diagnostics = alpha_summary(metrics)
    if not diagnostics:
        return
    for warning in diagnostics.get("warnings", []):
        st.warning(f"Alpha grid: {warning}")
    # drawn only when asked: a chart hidden in a collapsed expander would still be redrawn on every layer
    if st.toggle("Ridge penalty: chosen alpha per voxel and mean inner-CV score per alpha", key="show_alpha"):
        st.plotly_chart(_layer_chart(*run, "alpha", common.projector_on()), key="alpha_choice")


def _region_panel(details: dict, simulated: bool) -> None:
    st.subheader("Per region: median r per layer")
    if not details["regions"]:
        st.caption(details["region_source"])
        return
    st.caption(f"Regions: {details['region_source']}. 'best layer' = the layer with the highest median r in "
               "that region.")
    st.dataframe(details["regions"], hide_index=True, key="region_table")
    if simulated and details["ground_truth"]:
        undefined = any(row.get("significant") == 0 for row in details["ground_truth"])
        st.caption("The demo against its ground truth (SIMULATED): of the voxels declared significant, the share "
                   "inside the planted regions (precision), and the share of each region found (recall)."
                   + (" Precision is empty for a layer with no significant voxel (nothing to be right or wrong "
                      "about)." if undefined else ""))
        st.dataframe(details["ground_truth"], hide_index=True, key="ground_truth_table")


# --------------------------------------------------------------------------- the map panel
OUTSIDE_VIEW_KEY = "results_outside_maps_view"


def _restore_view_widgets() -> None:
    """Hemisphere, view and 3-D toggle from the URL or the last visit (before their widgets exist)."""
    common.restore_widget("hemi", "hemi", str, ("left", "right").__contains__)
    common.restore_widget("view", "view", str, tuple(viz.VIEWS).__contains__)
    common.restore_widget("map_3d", "rotate", common.url_bool, lambda v: isinstance(v, bool))


def _panel_view() -> tuple:
    """(hemisphere, view, rotatable, full mesh) as the map panel's widgets hold them (the full mesh
    only counts for the rotatable map)."""
    _restore_view_widgets()
    state = st.session_state
    rotatable = bool(state.get("map_3d", False))
    return (state.get("hemi", "left"), state.get("view", "lateral"), rotatable,
            rotatable and bool(state.get("full_mesh", False)))


# URL query parameter -> widget: the view a link opens and a revisit restores (common.restore_widget).
# (A comment, not a string literal: Streamlit's magic would draw a bare string on the page.)
URL_VIEW = {"run": "run_pick", "layer": "layer_pick", "value": "map_kind", "fdr": "sig_only", "threshold": "min_r",
            "norm_threshold": "min_norm", "hemi": "hemi", "view": "view", "rotate": "map_3d"}


@st.fragment
def _map_panel(context: dict[str, Any]) -> None:
    """Value, FDR filter, threshold, hemisphere, view and the brain map (or glass brain): changing one
    of them reruns only this panel (a fragment), never the rest of the page. Each control starts
    from the URL or the last visit (``URL_VIEW``) and writes its value back to the URL."""
    kinds = context["kinds"]
    c1, c2, c3 = st.columns(3)
    common.restore_widget("map_kind", "value", str, kinds.__contains__)
    kind = c1.radio("Value", kinds, key="map_kind")
    common.restore_widget("sig_only", "fdr", common.url_bool, lambda v: isinstance(v, bool))
    significant_only = c2.checkbox("FDR-significant only", value=context["any_significant"], key="sig_only",
                                   help=context["fdr_help"])
    if kind == NORMALISED:  # its own scale: 0 (none of the explainable response) to 1 (all of it)
        common.restore_widget("min_norm", "norm_threshold", lambda text: round(float(text), 2),
                              lambda v: 0.0 <= v <= 1.0)
        min_value = float(c3.slider("Minimum r / noise ceiling", 0.0, 1.0, 0.0, 0.01, key="min_norm"))
    else:
        default_min_r = 0.0 if context["fallback_r"] is None else round(float(context["fallback_r"]), 2)
        common.restore_widget("min_r", "threshold", lambda text: round(float(text), 2), lambda v: -1.0 <= v <= 1.0)
        min_value = float(c3.slider("Minimum r", -1.0, 1.0, default_min_r, 0.01, key="min_r"))
    if not context["any_significant"]:
        st.caption(context["fallback_text"])
    map_key = (*context["run"], kind, significant_only, min_value)
    if context["surface"]:
        _restore_view_widgets()
        c1, c2, c3 = st.columns([2, 3, 2])
        hemi = c1.radio("Hemisphere", ["left", "right"], horizontal=True, key="hemi")
        view = c2.radio("View", list(viz.VIEWS), horizontal=True, key="view")
        rotatable = c3.toggle("Rotatable 3-D", key="map_3d",
                              help="Off: a picture of the brain from the chosen view, with every vertex; hover "
                                   "it to read values. On: a 3-D surface you can turn and zoom (your browser "
                                   "builds a 3-D scene, which takes longer on every change).")
        full_mesh = rotatable and c3.toggle(
            "Full-resolution mesh", key="full_mesh",
            help="Draw every vertex (four times the data, slower to load). By default the rotatable map shows "
                 "one vertex in four (the next coarser icosphere); the picture and the four-view PNG always "
                 "have every vertex.")
        outside = st.session_state.get(OUTSIDE_VIEW_KEY)
        if outside is not None and outside != (hemi, view, rotatable, full_mesh):
            st.rerun(scope="app")  # the partition / difference maps below follow the view too
    common.keep_widgets({name: key for name, key in URL_VIEW.items() if name not in ("run", "layer")})
    if context["surface"]:
        shown, _, _ = _map(*map_key)
        if not np.isfinite(shown).any():
            st.info("No voxel passes the threshold; untick 'FDR-significant only' or lower the minimum.")
        with st.spinner("Drawing the surface ..."):
            st.plotly_chart(_surface_figure(*map_key, hemi, view, context["with_regions"], full_mesh,
                                            common.projector_on(), rotatable),
                            key="surface_map", config={"displayModeBar": rotatable})
        st.download_button("Download the four-view PNG (left/right, lateral/medial)",
                           lambda: _four_view_png(*map_key, context["with_regions"]),
                           file_name=f"{context['file_stem']}.png", mime="image/png", key="download_png",
                           on_click="ignore", help="Drawn when you click (a few seconds the first time).")
    elif context["glass_brain"]:
        st.caption("**Glass brain (last resort)**: this run's volume records no template and no surface is known "
                   "for it, so its voxels are drawn at their affine's mm over the MNI152 outline. If the volume is "
                   "in MNI152 space, mark it so on the Assembly page to see the map on fsaverage5.")
        with st.spinner("Drawing the glass brain ..."):
            png = _glass_brain_png(*map_key)
        st.image(png)
        st.download_button("Download the glass-brain PNG", png, file_name=f"{context['file_stem']}.png",
                           mime="image/png", key="download_png", on_click="ignore")
    elif context["no_map"] is not None:
        st.info(f"{context['no_map']} The histogram and layer profile below still apply.")


# --------------------------------------------------------------------------- page
st.title("Results")
common.how_this_works("results")
store = common.run_store()
runs = []
with common.user_errors("Listing runs"):
    runs = [r for r in store.list() if r.is_complete]
if not runs:
    st.info("No finished runs yet. Train a model (or run the demo from Home) first.")
    st.page_link(common.PAGES["Train"], label="Go to Train", icon=":material/model_training:")
    st.stop()

ids = [r.run_id for r in runs]
by_id = {r.run_id: r for r in runs}
chosen = st.session_state.get(common.RUN_KEY)
if chosen in ids and st.session_state.get(common.KEPT_PREFIX + "run_pick", chosen) != chosen:
    st.session_state[common.KEPT_PREFIX + "run_pick"] = chosen  # another page chose it (Train's "Show the results")
common.restore_widget("run_pick", "run", str, ids.__contains__, chosen if chosen in ids else ids[0])
run_id = st.selectbox("Run", ids, key="run_pick",
                      format_func=lambda i: f"{i} · {by_id[i].name} · {by_id[i].model_name}"
                                            + (" · SIMULATED" if by_id[i].simulated else ""))
st.session_state[common.RUN_KEY] = run_id
results_dir = str(store.results_dir)
stamp = _run_stamp(by_id[run_id].path)

cache_dir = str(common.dirs().cache)
try:
    metrics, space_facts, simulated, config_toml = _run_summary(results_dir, run_id, stamp)
except EncodingCoreError as exc:
    st.error(f"Run {run_id} cannot be shown: {exc}")
    st.stop()
if not metrics:
    st.warning(f"Run {run_id} has no layers.")
    st.stop()
if simulated:
    common.simulated_banner("run's brain data", headline="SIMULATED RUN",
                            note="The planted regions are outlined, one colour per region; a good model recovers them.")

profile = layer_profile(metrics)
run_config = ExperimentConfig.from_toml(config_toml)
details = _run_details(results_dir, run_id, stamp)
best_layer, best_rule = best_layer_choice(details["summary"], metrics)
common.restore_widget("layer_pick", "layer", int, profile["layers"].__contains__)  # URL, last visit (URL_VIEW)
layer = st.selectbox("Layer", profile["layers"], index=profile["layers"].index(best_layer), key="layer_pick",
                     format_func=lambda x: (f"space {metrics[x]['feature_space']}" if "feature_space" in metrics[x]
                                            else f"layer {x}") + (" (best)" if x == best_layer else ""))
st.caption(f"Best layer {best_layer} by {best_rule}"
           + (" (the darker bar of the layer profile)." if len(profile["layers"]) > 1 else "."))
try:
    a = _layer_arrays(results_dir, run_id, stamp, layer)
except EncodingCoreError as exc:
    st.error(f"Run {run_id}, layer {layer} cannot be shown: {exc}")
    st.stop()
m = metrics[layer]
c = st.columns(4)
c[0].metric("Median r", f"{m.get('median_score', float('nan')):.3f}")
c[1].metric("Max r", f"{m.get('max_score', float('nan')):.3f}")
c[2].metric("Significant voxels", f"{m.get('n_significant', 0):,}")
c[3].metric("Significant", f"{m.get('percent_significant', 0):.1f} %")
_statistics_caption(m, run_config)

if len(profile["layers"]) > 1:
    # marks the best layer, not the chosen one: the same figure for every layer of a run, so that a
    # layer switch does not redraw it (Streamlit remounts a plotly chart whose figure changed)
    st.plotly_chart(_layer_chart(results_dir, run_id, stamp, best_layer, "profile", common.projector_on()),
                    key="layer_profile")

st.subheader("Map")
ceiling = a.get("normalized_correlations")
kinds = [CORRELATION]
if ceiling is not None and np.isfinite(ceiling).any():
    kinds.append(NORMALISED)
    st.caption(ceiling_target_caption(m))
    if normalized_caption(m):
        st.caption(normalized_caption(m))
any_significant = bool(np.any(a.get("significant_mask", np.zeros(1, dtype=bool))))
fallback_r, fallback_text = (None, "") if any_significant else fallback_caption(m, run_config)
common.keep_widgets({"run": "run_pick", "layer": "layer_pick"})
file_stem = f"{run_id}_layer{layer}"
space_kind, space_name, space_template, glass_brain_ok, no_map_text = space_facts

surface_map = None
map_failed = False
try:
    with st.spinner("Preparing the brain surface (a projection is built once, then cached) ..."):
        surface_map = _surface_map(results_dir, run_id, stamp, cache_dir)
except EncodingCoreError as exc:
    map_failed = True
    st.error(f"The brain map of run {run_id} cannot be drawn: {exc}")
if surface_map is not None and surface_map.projected:
    st.caption(f"Drawn on **{surface_map.label}**. {surface_map.note} Thresholds apply on the surface: a "
               f"vertex shows when most of its sampling weight comes from voxels that pass them.")
# The partition and difference maps sit outside the map panel's fragment but follow its hemisphere,
# view and 3-D toggle: record what this full run draws them with, so that a change made in the
# fragment reruns the whole page instead of leaving them on the old view.
_outside_maps = surface_map is not None and (is_partition_run(m) or bool(st.session_state.get("compare_show")))
st.session_state[OUTSIDE_VIEW_KEY] = _panel_view() if _outside_maps else None
_map_panel({
    "run": (results_dir, run_id, stamp, cache_dir, layer), "kinds": kinds, "any_significant": any_significant,
    "fdr_help": f"{fdr_label(m, run_config)}." if any_significant else
    "No voxel is FDR-significant in this layer; the map shows the voxels at or above the minimum.",
    "fallback_r": fallback_r, "fallback_text": fallback_text, "file_stem": file_stem,
    "surface": surface_map is not None, "with_regions": simulated and surface_map is not None
    and not surface_map.projected,  # the demo's planted regions live on fsaverage5
    "glass_brain": glass_brain_ok and not map_failed, "no_map": None if map_failed else no_map_text,
})
hemi, view, rotatable, full_mesh = _panel_view() if surface_map is not None else (None, None, False, False)

st.plotly_chart(_layer_chart(results_dir, run_id, stamp, layer, "histogram", common.projector_on()), key="histogram")
_alpha_panel(m, (results_dir, run_id, stamp, layer))
_region_panel(details, simulated)

if is_partition_run(m):
    st.subheader("Variance partition")
    partition_labels = partition_map_labels(m)
    negatives = m.get("n_negative", {})
    st.caption("r² on the test story from the joint banded model and every subset model (inclusion–exclusion). "
               "Negative estimates are kept, not clipped: " + "; ".join(
                   f"{partition_labels.get(k, k)}: {v:,} voxels" for k, v in negatives.items()) + ".")
    partition_pick = st.radio("Partition map", list(partition_labels), format_func=lambda k: partition_labels[k],
                              horizontal=True, key="partition_map")
    if surface_map is not None and hemi and view:
        with st.spinner("Drawing the partition map ..."):
            st.plotly_chart(_partition_figure(results_dir, run_id, stamp, cache_dir, layer, partition_pick,
                                              partition_labels[partition_pick], hemi, view,
                                              simulated and not surface_map.projected,
                                              full_mesh,
                                              common.projector_on(), rotatable),
                            key="partition_surface")
            st.caption("Colour scale: ± the largest positive r² of this map; more negative values show at "
                       "the blue end.")
    partition_masks, partition_source = _region_masks(results_dir, run_id, stamp)
    partition_rows = partition_region_rows(a, m, partition_masks) if partition_masks else []
    if partition_rows:
        st.caption(f"Mean r² per region; regions: {partition_source}.")
    else:
        st.caption(f"{partition_source} The bars show all voxels and those the joint model predicts (r² > 0).")
        partition_rows = partition_region_rows(a, m, {"all voxels": np.ones(a["joint_r2"].shape, dtype=bool),
                                                      "joint r² > 0": a["joint_r2"] > 0})
    common.chart(viz.partition_bar_figure(partition_rows, partition_labels), key="partition_bars")

st.subheader("Compare with another run")
others = [i for i in ids if i != run_id]
if not others:
    st.caption("Only one finished run: train another to compare.")
else:
    other = st.selectbox("Other run", others, key="compare_pick")
    other_stamp = _run_stamp(by_id[other].path)
    try:
        o_metrics = _run_summary(results_dir, other, other_stamp)[0]
        o_layer = layer if layer in o_metrics else max(o_metrics, key=lambda x: o_metrics[x].get("median_score", -1))
        o_r = _layer_arrays(results_dir, other, other_stamp, o_layer)["correlations"]
    except EncodingCoreError as exc:
        st.error(f"Run {other} cannot be loaded: {exc}")
    else:
        if by_id[other].simulated and not simulated:
            st.warning(f"Run {other} is a SIMULATED run (demo data): a difference from it says nothing about "
                       f"this recording.")
        if o_r.shape != a["correlations"].shape:
            st.warning(f"The runs have different numbers of voxels ({a['correlations'].size} vs {o_r.size}); "
                       f"they cannot be compared voxel by voxel.")
        else:
            st.caption(f"r(this run, layer {layer}) − r({other}, layer {o_layer}); median difference "
                       f"{float(np.nanmedian(a['correlations'] - o_r)):+.3f}.")
            if st.toggle("Show the difference map", key="compare_show",
                         help="Drawn on request: a second brain map doubles what the page sends."):
                figure = _difference_figure(results_dir, run_id, stamp, cache_dir, layer, other, other_stamp,
                                            o_layer, hemi, view, rotatable)
                st.plotly_chart(figure, key="difference_map" if hemi else "difference_hist")

groups = [g for g in list_groups(results_dir) if all(r in by_id for r in g.get("runs", {}).values())]
if groups:
    st.subheader("Model × layer comparison")
    group = st.selectbox("Run group", groups, key="group_pick",
                         format_func=lambda g: f"{g['group_id']} · {g.get('name', '')} · {len(g['models'])} models")
    with common.user_errors("Reading the run group"):
        group_rows = comparison_table(results_dir, group["group_id"])
        models, group_layers, matrix = comparison_matrix(group_rows)
        common.chart(viz.model_layer_heatmap(models, group_layers, matrix), key="model_layer_heatmap")
        st.dataframe(group_rows, hide_index=True, height=200)
        cells = [f"{row['model']} · layer {row['layer']}" for row in group_rows]

        def _open_cell(rows: list = group_rows, labels: list = cells) -> None:
            row = rows[labels.index(st.session_state["group_cell"])]
            st.session_state[common.RUN_KEY] = st.session_state["run_pick"] = row["run_id"]
            st.session_state["layer_pick"] = row["layer"]

        st.selectbox("Show the map of a cell", cells, index=None, key="group_cell", on_change=_open_cell,
                     placeholder="model · layer", help="Switches this page to that run and layer.")

st.subheader("Downloads")
c = st.columns(3)
c[0].download_button("Per-voxel values (CSV)", lambda: _download_bytes(results_dir, run_id, stamp, layer, "csv"),
                     file_name=f"{file_stem}.csv", mime="text/csv", key="download_csv", on_click="ignore")
c[1].download_button("Per-voxel values (NPZ)", lambda: _download_bytes(results_dir, run_id, stamp, layer, "npz"),
                     file_name=f"{file_stem}.npz", mime="application/octet-stream", key="download_npz",
                     on_click="ignore")
c[2].download_button("Config (TOML)", config_toml, file_name=f"{run_id}.toml", mime="application/toml",
                     key="download_config", on_click="ignore")
with st.expander("Config of this run"):
    st.code(config_toml, language="toml")
