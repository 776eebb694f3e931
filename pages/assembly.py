"""Assembly: pick a source (demo, .h5, reference .pkl, LeBel folder, upload); summary and checks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from encoding_core import viz
from encoding_core.studio import (
    MNI_TEMPLATE,
    MissingStoryFilesError,
    atomic_write_bytes,
    check_lebel_folder,
    check_upload_size,
    list_lebel_stories,
    list_lebel_subjects,
    load_settings,
    map_surface,
    project_assembly_to_file,
    safe_upload_name,
    save_assembly,
)
from pages import _common as common

common.enter_through_app()  # a page URL opened directly: draw it through app.py's router

st.title("Assembly")
st.caption("An assembly is one subject's fMRI responses to a set of stories, with TR times and transcripts.")
common.how_this_works("assembly")

cfg = common.config()
SOURCES = ["Demo (simulated)", "Native .h5 file", "Reference .pkl (safe import)", "LeBel (ds003020) folder",
           "Upload .h5 / .pkl"]
source = st.radio("Source", SOURCES, horizontal=True, key="assembly_source_kind")


MISSING_FILES_KEY = "lebel_missing_files"  # the folder whose last load failed for missing files


def _load(path: str, subject: str = "", stories: tuple[str, ...] = (), skip_missing: bool = False) -> None:
    with common.user_errors(f"Loading {path}"), st.spinner(f"Loading {path} ..."):
        try:
            loaded = common.load_assembly_into_session(path, subject, stories,
                                                       skip_missing=skip_missing if Path(path).is_dir() else None)
        except MissingStoryFilesError:
            st.session_state[MISSING_FILES_KEY] = path
            raise
        st.session_state.pop(MISSING_FILES_KEY, None)
        st.success(f"Loaded {len(loaded.stories)} stories from {path}.")


if source == SOURCES[0]:
    if st.button("Load the demo assembly", key="load_demo"):
        _load("demo")
elif source in (SOURCES[1], SOURCES[2]):
    suffix = ".h5" if source == SOURCES[1] else ".pkl"
    text = st.text_input(f"Path of the {suffix} file", key=f"assembly_path{suffix}",
                         placeholder=f"/data/assembly{suffix}")
    if st.button("Load", key=f"load{suffix}") and text:
        path = common.user_path(text, "Assembly file")
        if path is not None:
            if path.suffix.lower() not in (".h5", ".hdf5", ".pkl", ".pickle"):
                st.error(f"{path.name} is not an .h5 or .pkl file; pick an assembly file.")
            else:
                _load(str(path))
elif source == SOURCES[3]:
    root_text = st.text_input("LeBel dataset folder (contains derivative/ and stimuli/)", key="lebel_root",
                              placeholder="/data/ds003020")
    if root_text:
        root = common.user_path(root_text, "LeBel folder")
        if root is not None:
            with common.user_errors("Reading the LeBel folder"):
                subjects = list_lebel_subjects(root)
                subject = st.selectbox("Subject", subjects, key="lebel_subject")
                if subject:
                    stories = list_lebel_stories(root, subject)
                    chosen = st.multiselect("Stories (the last one is the test story by default)", stories,
                                            default=stories, key="lebel_stories")
                    if st.button("Load", key="load_lebel") and chosen:
                        skip = bool(st.session_state.get("lebel_skip_missing", cfg.assembly.skip_missing))
                        _load(str(root), subject, tuple(chosen), skip_missing=skip)
                    if st.session_state.get(MISSING_FILES_KEY) == str(root) or cfg.assembly.skip_missing:
                        st.checkbox("Skip stories with missing files (they are listed in a warning and in the "
                                    "run's provenance), then press Load again", value=bool(cfg.assembly.skip_missing),
                                    key="lebel_skip_missing")
            with st.expander("Check this folder (run this first on a fresh ds003020 download)"):
                st.caption("Per story: TextGrid format, words, duration, TR count in respdict.json, response rows, "
                           "and whether the audio matches the span of the TRs. Same as "
                           "`python -m encoding_core check-data PATH`.")
                if st.button("Check the folder", key="check_lebel"):
                    with common.user_errors("Checking the folder"), st.spinner("Reading every TextGrid ..."):
                        report = check_lebel_folder(root, subject=subject or None)
                        n_ok = sum(row.status == "ok" for row in report.rows)
                        if report.ok:
                            st.success(f"{n_ok} stories can be loaded; none has a problem "
                                       f"(layout {report.layout}/).")
                        else:
                            st.error(f"{len(report.failed)} stories cannot load: "
                                     + "; ".join(f"{r.story}: {'; '.join(r.problems)}" for r in report.failed))
                        st.dataframe(report.as_rows(), hide_index=True)
                        messages = [f"{r.story}: {w}" for r in report.rows for w in r.warnings] + report.warnings
                        if messages:
                            st.markdown("**Warnings**\n\n" + "\n".join(f"- {m}" for m in messages))
else:
    settings = load_settings()
    upload = st.file_uploader(f"Assembly file (.h5 or .pkl, at most {settings.max_upload_mb:g} MB)",
                              type=["h5", "hdf5", "pkl", "pickle"], key="assembly_upload")
    if upload is not None:
        with common.user_errors("Saving the upload"):
            check_upload_size(upload.name, upload.size, settings.max_upload_mb)
            name = safe_upload_name(upload.name, [".h5", ".hdf5", ".pkl", ".pickle"])
            target = common.dirs().uploads / name
            atomic_write_bytes(target, upload.getvalue())
            _load(str(target))

current = common.require_assembly()
if current is None:
    st.stop()

st.subheader("Summary")
durations = [s.tr_times[-1] - s.tr_times[0] + current.tr for s in current.stories_list]
cols = st.columns(5)
cols[0].metric("Stories", len(current.stories))
cols[1].metric("TRs", sum(s.n_trs for s in current.stories_list))
cols[2].metric("Voxels", current.n_voxels)
cols[3].metric("Span", f"{sum(durations) / 60:.1f} min")
cols[4].metric("TR", f"{current.tr:g} s")
st.caption(f"Subject **{current.subject}** · space: {current.space.describe()}")
if current.provenance.get("tr_times"):
    st.caption(f"TR times: {current.provenance['tr_times']}")
st.dataframe(current.summary_rows(), hide_index=True)
skipped = current.provenance.get("skipped_stories") or {}
if skipped:
    st.warning(f"{len(skipped)} stories were skipped because files are missing: "
               + "; ".join(f"{name}: {why}" for name, why in skipped.items()))
load_warnings = current.provenance.get("warnings") or []
if load_warnings:
    with st.expander(f"Loading warnings ({len(load_warnings)})"):
        st.markdown("\n".join(f"- {w}" for w in load_warnings))

if not Path(str(cfg.assembly.path)).is_dir():  # LeBel folders choose their stories above
    everything = common.all_story_names()
    chosen = st.multiselect("Stories in the experiment (fewer stories = a faster run)", everything,
                            default=current.stories, key="story_subset")
    if chosen and chosen != current.stories and st.button("Use these stories", key="use_stories"):
        with common.user_errors("Selecting stories"):
            path, subject, _ = st.session_state[common.ASSEMBLY_KEY]
            common.load_assembly_into_session(path, subject, tuple(chosen) if chosen != everything else ())
            st.rerun()

test_story = st.selectbox("Test story (held out in train/test mode)", current.stories,
                          index=current.stories.index(current.effective_test_story()), key="test_story_pick")
cfg.assembly.test_story = test_story

if current.provenance.get("format") == "reference-pickle" or str(cfg.assembly.path).endswith((".pkl", ".pickle")):
    st.info("This assembly came from a reference pickle. Save it as .h5 for fast, safe loading next time.")
    out = st.text_input("Save as (.h5 path)", value=str(cfg.assembly.path).rsplit(".", 1)[0] + ".h5",
                        key="save_as_h5")
    if st.button("Save as .h5", key="save_h5"):
        target = common.user_path(out, "Save as", must_exist=False)
        if target is not None:
            with common.user_errors("Saving the assembly"), st.spinner("Writing HDF5 ..."):
                save_assembly(current, target)
                st.success(f"Saved {target}.")

if current.space.kind == "volume":
    st.subheader("Volume → fsaverage5")
    space = current.space
    declared = False
    if space.is_mni:
        st.caption(f"This volume is in {space.template} space. Project it onto fsaverage5 before fitting, as the "
                   "reference does (nilearn's vol_to_surf sampling on the pial surface, as one sparse matrix); "
                   "the new assembly records where it came from. Without projecting, the Results page draws the "
                   "volume's maps on fsaverage5.")
    elif space.template:
        st.caption(f"This volume is in {space.template} space, not MNI152: it cannot be projected onto fsaverage.")
    else:
        st.caption("This volume records no template. fsaverage projection needs MNI152 space; tick the box only if "
                   "the volume is in MNI152 space (its geometry is checked too).")
        declared = st.checkbox("This volume is in MNI152 space", key="declare_mni")
    if space.is_mni or declared:
        source_path = Path(str(st.session_state[common.ASSEMBLY_KEY][0]))
        default_out = (source_path.with_name(f"{source_path.stem}_fsaverage5.h5") if source_path.is_file()
                       else common.dirs().uploads / f"{current.subject}_fsaverage5.h5")
        out = st.text_input("Save the fsaverage5 assembly as (.h5 path)", value=str(default_out),
                            key="projected_path")
        if st.button("Project onto fsaverage5 and load it", key="project_fsaverage"):
            target = common.user_path(out, "Save as", must_exist=False)
            if target is not None:
                with common.user_errors("Projecting the assembly"), st.spinner("Projecting onto fsaverage5 ..."):
                    project_assembly_to_file(current, target, source_template=MNI_TEMPLATE if declared else None,
                                             cache_dir=str(common.dirs().cache))
                    common.load_assembly_into_session(str(target))
                    st.rerun()  # the page redraws with the fsaverage5 assembly (its summary names the space)

st.subheader("Mean response per story")
common.chart(viz.story_timecourse_figure(current.stories, current.get_brain_data(), current.tr), key="timecourse")

st.subheader("Temporal SNR (mean / std per voxel)")
snr = viz.tsnr(current.get_brain_data())


@st.cache_resource(show_spinner=False, max_entries=2)
def _assembly_surface(source: tuple, mtime: float, cache_dir: str, _space):
    """The surface the loaded assembly's maps are drawn on (None: no surface known), per source."""
    return map_surface(_space, cache_dir)


surface_map = None
if current.space.kind in ("surface", "volume", "subject_surface"):
    source = st.session_state[common.ASSEMBLY_KEY]
    try:
        mtime = Path(source[0]).stat().st_mtime if source[0] != "demo" else 0.0
    except OSError:
        mtime = 0.0
    with common.user_errors("Preparing the brain surface"), st.spinner("Preparing the brain surface ..."):
        surface_map = _assembly_surface(tuple(source), mtime, str(common.dirs().cache), current.space)
if surface_map is not None:
    hemi = st.radio("Hemisphere", ["left", "right"], horizontal=True, key="tsnr_hemi")
    if surface_map.projected:
        st.caption(f"Drawn on **{surface_map.label}**. {surface_map.note}")
    common.chart(viz.surface_figure(surface_map.to_vertices(snr), hemi=hemi, view="lateral", cmap="viridis",
                                    symmetric=False, vmin=0.0, surface=surface_map.surface, colorbar_title="tSNR",
                                    coarse=True,
                                    title=viz.map_title("temporal SNR (mean / std over time)", hemi=hemi,
                                                        view="lateral"), style=common.figure_style()),
                 key="tsnr_map")
else:
    st.caption(f"No brain surface is known for this space ({current.space.describe()}); "
               f"median tSNR {float(np.nanmedian(snr)):.2f}.")
