"""Results: brain maps per layer, layer profile, histogram, comparison and downloads."""
from __future__ import annotations

import numpy as np
import streamlit as st

from encoding_core import viz
from encoding_core.errors import EncodingCoreError
from encoding_core.studio import layer_profile, per_voxel_csv, per_voxel_npz
from pages import _common as common

st.title("Results")
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
run_id = st.selectbox("Run", ids, index=ids.index(chosen) if chosen in ids else 0, key="run_pick",
                      format_func=lambda i: f"{i} · {by_id[i].name} · {by_id[i].model_name}"
                                            + (" · SIMULATED" if by_id[i].simulated else ""))
st.session_state[common.RUN_KEY] = run_id


@st.cache_data(show_spinner=False, max_entries=8)
def _run_tables(results_dir: str, run_id: str):
    """(metrics per layer, arrays per layer, space, simulated, config TOML) of one run."""
    from encoding_core.runstore import RunStore

    run = RunStore(results_dir).load(run_id)
    metrics = {layer: run.metrics(layer) for layer in run.layers}
    arrays = {layer: run.arrays(layer) for layer in run.layers}
    space = run.space()
    return metrics, arrays, (space.kind, space.name, space.mask, space.affine), run.simulated, run.config.to_toml()


@st.cache_data(show_spinner=False, max_entries=2)
def _planted_regions() -> dict[str, np.ndarray]:
    from encoding_core.demo import ground_truth_maps

    return {name: np.asarray(values) > 0 for name, values in ground_truth_maps().items()}


@st.cache_data(show_spinner=False, max_entries=16)
def _four_view(values: np.ndarray, title: str, vmax: float, with_regions: bool) -> bytes:
    return viz.four_view_png(values, vmax=vmax, title=title, regions=_planted_regions() if with_regions else None)


try:
    metrics, arrays, (space_kind, space_name, mask, affine), simulated, config_toml = _run_tables(
        str(store.results_dir), run_id)
except EncodingCoreError as exc:
    st.error(f"Run {run_id} cannot be shown: {exc}")
    st.stop()
if not metrics:
    st.warning(f"Run {run_id} has no layers.")
    st.stop()
if simulated:
    st.error("**SIMULATED RUN** – this run used the demo's simulated brain data. The planted regions are outlined "
             "in black; a good model recovers them. Nothing here is a finding about real brains.", icon=":material/science:")

profile = layer_profile(metrics)
best_layer = profile["layers"][int(np.nanargmax(profile["median_r"]))]
layer = st.selectbox("Layer", profile["layers"], index=profile["layers"].index(best_layer), key="layer_pick",
                     format_func=lambda x: f"layer {x}" + (" (best median r)" if x == best_layer else ""))
m, a = metrics[layer], arrays[layer]
c = st.columns(4)
c[0].metric("Median r", f"{m.get('median_score', float('nan')):.3f}")
c[1].metric("Max r", f"{m.get('max_score', float('nan')):.3f}")
c[2].metric("Significant voxels", f"{m.get('n_significant', 0):,}")
c[3].metric("Significant", f"{m.get('percent_significant', 0):.1f} %")
st.caption("Test-set Pearson r per voxel · block permutation p-values · Benjamini–Hochberg FDR q "
           "(settings in the run's config below).")

if len(profile["layers"]) > 1:
    st.plotly_chart(viz.layer_profile_figure(profile["layers"], profile["median_r"], profile["n_significant"],
                                             selected=layer), key="layer_profile")

st.subheader("Map")
ceiling = a.get("normalized_correlations")
kinds = ["correlation r"]
if ceiling is not None and np.isfinite(ceiling).any():
    kinds.append("noise-ceiling-normalised r")
c1, c2, c3 = st.columns(3)
kind = c1.radio("Value", kinds, key="map_kind")
any_significant = bool(np.any(a.get("significant_mask", np.zeros(1, dtype=bool))))
significant_only = c2.checkbox("FDR-significant only", value=any_significant, key="sig_only",
                               help="Benjamini–Hochberg FDR over all voxels." if any_significant else
                               "No voxel is FDR-significant in this layer; the map shows all voxels above the "
                               "minimum r.")
min_r = c3.slider("Minimum r", -1.0, 1.0, 0.0 if any_significant else 0.1, 0.01, key="min_r")
if not any_significant:
    st.caption("No voxel survives Benjamini–Hochberg FDR in this layer (with few permutations the smallest "
               "possible p-value is 1/(permutations+1)); showing r ≥ the minimum instead.")
values = a["correlations"] if kind == "correlation r" else ceiling
shown = viz.thresholded_map(values, a.get("significant_mask") if significant_only else None, min_r)
vmax = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
title = f"{run_id} · layer {layer} · {kind}"

if space_kind == "surface" and space_name == "fsaverage5":
    regions = _planted_regions() if simulated else None
    c1, c2 = st.columns(2)
    hemi = c1.radio("Hemisphere", ["left", "right"], horizontal=True, key="hemi")
    view = c2.radio("View", list(viz.VIEWS), horizontal=True, key="view")
    if not np.isfinite(shown).any():
        st.info("No voxel passes the threshold; untick 'FDR-significant only' or lower the minimum r.")
    with st.spinner("Drawing the surface ..."):
        st.plotly_chart(viz.surface_figure(shown, hemi=hemi, view=view, vmax=vmax, title=title, regions=regions),
                        key="surface_map")
    png = _four_view(shown, title, vmax, simulated)
    st.image(png, caption="Four views (left/right, lateral/medial)")
    st.download_button("Download the four-view PNG", png, file_name=f"{run_id}_layer{layer}.png",
                       mime="image/png", key="download_png")
elif space_kind == "volume" and mask is not None and affine is not None:
    with st.spinner("Drawing the glass brain ..."):
        png = viz.glass_brain_png(np.nan_to_num(shown), mask, affine, title=title)
    st.image(png)
    st.download_button("Download the glass-brain PNG", png, file_name=f"{run_id}_layer{layer}.png",
                       mime="image/png", key="download_png")
else:
    st.info(f"This run's space is {space_kind} ({space_name}) without a known surface or a volume mask and affine, "
            f"so there is no brain map; the histogram and layer profile below still apply.")

st.plotly_chart(viz.correlation_histogram(a["correlations"], a.get("significant_mask")), key="histogram")

st.subheader("Compare with another run")
others = [i for i in ids if i != run_id]
if not others:
    st.caption("Only one finished run: train another to compare.")
else:
    other = st.selectbox("Other run", others, key="compare_pick")
    try:
        o_metrics, o_arrays, o_space, _, _ = _run_tables(str(store.results_dir), other)
    except EncodingCoreError as exc:
        st.error(f"Run {other} cannot be loaded: {exc}")
    else:
        o_layer = layer if layer in o_arrays else max(o_metrics, key=lambda x: o_metrics[x].get("median_score", -1))
        o_r = o_arrays[o_layer]["correlations"]
        if o_r.shape != a["correlations"].shape:
            st.warning(f"The runs have different numbers of voxels ({a['correlations'].size} vs {o_r.size}); "
                       f"they cannot be compared voxel by voxel.")
        else:
            diff = a["correlations"] - o_r
            st.caption(f"r(this run, layer {layer}) − r({other}, layer {o_layer}); median difference "
                       f"{float(np.nanmedian(diff)):+.3f}.")
            if space_kind == "surface" and space_name == "fsaverage5":
                st.plotly_chart(viz.surface_figure(diff, hemi=hemi, view=view, title="difference in r"),
                                key="difference_map")
            else:
                st.plotly_chart(viz.correlation_histogram(diff, title="difference in r"), key="difference_hist")

st.subheader("Downloads")
c = st.columns(3)
c[0].download_button("Per-voxel values (CSV)", per_voxel_csv(a), file_name=f"{run_id}_layer{layer}.csv",
                     mime="text/csv", key="download_csv")
c[1].download_button("Per-voxel values (NPZ)", per_voxel_npz(a), file_name=f"{run_id}_layer{layer}.npz",
                     mime="application/octet-stream", key="download_npz")
c[2].download_button("Config (TOML)", config_toml, file_name=f"{run_id}.toml", mime="application/toml",
                     key="download_config")
with st.expander("Config of this run"):
    st.code(config_toml, language="toml")
