"""Encoding Studio: voxelwise fMRI encoding models from speech-model features.

Run with ``streamlit run app.py``. This file is only the router and the sidebar; the
pages in ``pages/`` are thin views over ``encoding_core``. Folders are configured with
``ENCODING_STUDIO_*`` environment variables (see ``encoding_core/common/paths.py``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from encoding_core import viz
from pages._common import PAGES, freeze_long_lived_objects, routed_page, sidebar_state, start_figure_warm_up

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

# A local file: a material-icon favicon would be fetched from fonts.gstatic.com (nothing leaves the machine).
FAVICON = Path(__file__).resolve().parent / "assets" / "favicon.png"
st.set_page_config(page_title="Encoding Studio", page_icon=str(FAVICON), layout="wide")

ICONS = {"Home": ":material/home:", "Assembly": ":material/folder_open:", "Audio": ":material/graphic_eq:",
         "Model & layer": ":material/layers:", "Setup": ":material/tune:", "Train": ":material/model_training:",
         "Results": ":material/neurology:"}


def _page(title: str) -> st.Page:
    return st.Page(PAGES[title], title=title, icon=ICONS[title], default=title == "Home")


navigation = st.navigation({
    "Start": [_page("Home")],
    "1 · Data": [_page("Assembly"), _page("Audio")],
    "2 · Model": [_page("Model & layer"), _page("Setup")],
    "3 · Run": [_page("Train"), _page("Results")],
})
# Every session, before any page draws: the plotting libraries are imported by one thread at a time
# (concurrent first imports of pandas leave it half-initialised); a no-op once they are loaded.
viz.import_plotting_libraries()
start_figure_warm_up()
freeze_long_lived_objects()  # once modules were imported: see its docstring (0.2-0.4 s per rerun saved)
sidebar_state()
with routed_page():
    navigation.run()
