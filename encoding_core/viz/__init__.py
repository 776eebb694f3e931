"""Step 7, views: figures for the app and for reports (plotly, nilearn, matplotlib; no streamlit).

- :mod:`~encoding_core.viz.surfaces`: brain maps on fsaverage5 or any :class:`BrainSurface` (interactive,
  four-view PNG), glass brain;
- :mod:`~encoding_core.viz.pictures`: the same maps as flat pictures from one view (rasterised once, no WebGL);
- :mod:`~encoding_core.viz.plots`: histograms, layer profiles, alpha choices, audio and settings pictures;
- :mod:`~encoding_core.viz.style`: screen/projector styles, rounded colour limits, titles, region colours;
- :mod:`~encoding_core.viz.atlas`: anatomical regions (nilearn's Destrieux atlas, when on disk).

Imports only :mod:`encoding_core.common`.
"""

from encoding_core.viz.surfaces import (
    FOUR_VIEWS,
    FOUR_VIEW_WIDTH_PX,
    BrainSurface,
    HEMISPHERES,
    N_VERTICES_FSAVERAGE5,
    VIEWS,
    four_view_png,
    fsaverage5_surface,
    fsaverage_mesh,
    fsaverage_sulcal_depth,
    glass_brain_png,
    import_plotting_libraries,
    region_boundary,
    split_hemispheres,
    surface_figure,
    thresholded_map,
)
from encoding_core.viz.pictures import PICTURE_WIDTH_PX, surface_picture, surface_raster, warm_up
from encoding_core.viz.style import (
    PROJECTOR,
    SCREEN,
    FigureStyle,
    apply_style,
    figure_style,
    map_title,
    nice_limit,
    region_style,
)
from encoding_core.viz.plots import (
    alpha_choice_figure,
    count_axis,
    non_overlapping_labels,
    correlation_histogram,
    kernel_figure,
    layer_profile_figure,
    length_preview_figure,
    model_layer_heatmap,
    partition_bar_figure,
    spectrogram_figure,
    story_timecourse_figure,
    tsnr,
    waveform_figure,
    window_diagram,
)

__all__ = [
    "PROJECTOR",
    "SCREEN",
    "FigureStyle",
    "apply_style",
    "count_axis",
    "figure_style",
    "map_title",
    "nice_limit",
    "non_overlapping_labels",
    "region_style",
    "FOUR_VIEW_WIDTH_PX",
    "alpha_choice_figure",
    "BrainSurface",
    "FOUR_VIEWS",
    "HEMISPHERES",
    "N_VERTICES_FSAVERAGE5",
    "VIEWS",
    "correlation_histogram",
    "four_view_png",
    "fsaverage5_surface",
    "fsaverage_mesh",
    "fsaverage_sulcal_depth",
    "glass_brain_png",
    "import_plotting_libraries",
    "kernel_figure",
    "layer_profile_figure",
    "length_preview_figure",
    "model_layer_heatmap",
    "partition_bar_figure",
    "region_boundary",
    "spectrogram_figure",
    "split_hemispheres",
    "story_timecourse_figure",
    "surface_figure",
    "surface_picture",
    "surface_raster",
    "PICTURE_WIDTH_PX",
    "thresholded_map",
    "tsnr",
    "warm_up",
    "waveform_figure",
    "window_diagram",
]
