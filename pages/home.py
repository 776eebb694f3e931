"""Home: what the app does, the demo button, the experiment checklist and recent runs."""
from __future__ import annotations

import streamlit as st

from encoding_core.studio import (
    demo_config,
    demo_preset_config,
    experiment_checklist,
    map_audio,
)
from pages import _common as common

common.enter_through_app()  # a page URL opened directly: draw it through app.py's router

st.title("Encoding Studio")
st.markdown(
    "Fit **voxelwise encoding models**: predict fMRI responses to spoken stories from the hidden layers "
    "of a speech model (Whisper, HuBERT, wav2vec 2.0, WavLM).  \n"
    "Load an assembly, map its audio, pick a model and layers, set trimming and ridge options, train in "
    "the background, and browse brain maps layer by layer.  \n"
    "Everything runs on this machine; results are saved under the results folder and survive a reload."
)

common.how_this_works("home")
cfg = common.config()


def _run_demo() -> None:
    with st.spinner("Loading the simulated demo assembly and starting the job..."):
        demo = demo_preset_config(demo_config())
        d = common.dirs()
        demo.results_dir, demo.cache_dir = str(d.results), str(d.cache)
        common.set_config(demo)
        current = common.load_assembly_into_session("demo", stories=tuple(demo.assembly.stories))
        if demo.assembly.audio_dir:  # the demo loader sets its audio paths itself

            common.set_audio_matches(map_audio(current, demo.assembly.audio_dir, demo.assembly.audio_pattern,
                                               overrides=demo.assembly.audio_overrides or None))
        job_id = common.jobs().start(demo)
        st.session_state[common.JOB_KEY] = job_id
    st.switch_page(common.PAGES["Train"])


left, right = st.columns([1, 2])
with left:
    st.subheader("Try it")
    st.caption("The demo is **simulated data**: planted speech-responsive regions on fsaverage5, real audio, "
               "the bundled Whisper tiny.en. It runs the whole pipeline in the background.")
    if st.button("Run the demo", type="primary", key="run_demo"):
        with common.user_errors("Starting the demo"):
            _run_demo()

with right:
    st.subheader("Your experiment")
    current = common.assembly()
    if current is not None and current.simulated:
        common.simulated_banner("assembly")
    runs = []
    with common.user_errors("Listing runs"):
        runs = common.run_store().list()
    audio_found = common.stories_with_audio(current) if current is not None else None
    for step in experiment_checklist(cfg, current, audio_found, runs):
        mark = ":material/check_box:" if step.done else ":material/check_box_outline_blank:"
        st.page_link(common.PAGES[step.page], label=f"{mark} {step.title} — {step.detail}")

st.subheader("Recent runs")
if not runs:
    st.caption("No runs yet. Click **Run the demo** or set up an experiment.")
else:
    st.dataframe(
        [{"run": r.run_id, "name": r.name, "status": r.status, "model": r.model_name, "subject": r.subject,
          "best layer": r.best_layer, "best median r": r.best_median_r,
          "data": "SIMULATED" if r.simulated else "recorded"} for r in runs[:10]],
        hide_index=True,
    )
