"""Setup: trimming (with a live length preview), FIR delays, downsampling, ridge, CV and statistics."""
from __future__ import annotations

import streamlit as st

from encoding_core import viz
from encoding_core.studio import (
    ALTERNATIVE_NAMES,
    ALTERNATIVES,
    BANDED_MODES,
    MODEL_SPACE,
    DOWNSAMPLE_METHODS,
    FOLD_TYPES,
    MODES,
    OUTER_FOLD_TYPES,
    REFERENCE_ALPHAS,
    SIGNIFICANCE_TESTS,
    TEST_NAMES,
    EncodingCoreError,
    TrimmingConfig,
    build_feature_spaces,
    demo_config,
    describe_planned_test,
    feature_space_choices,
    downsample_kernel,
    fdr_label,
    experiment_to_script,
    setup_warnings,
    statistics_warnings,
    trimming_preview,
)
from pages import _common as common

common.enter_through_app()  # a page URL opened directly: draw it through app.py's router

st.title("Setup")
cfg = common.config()
current = common.require_assembly()
if current is None:
    st.stop()
common.how_this_works("setup")

st.subheader("Trimming (TRs, Python slice bounds; empty = open end)")
lebel = TrimmingConfig()


def _reset_trimming(values: TrimmingConfig) -> None:
    cfg.alignment.trimming = values
    for name in list(st.session_state):
        if str(name).startswith("trim_"):
            del st.session_state[name]


b1, b2 = st.columns(2)
if b1.button("Reset to LeBel defaults", key="apply_lebel",
             help="Train features [10:-5], targets [0:]; test features [50:-5], targets [40:]."):
    _reset_trimming(TrimmingConfig())
if current.simulated and b2.button("Reset to the demo preset", key="apply_demo_trim"):
    with common.user_errors("Reading the demo preset"):
        _reset_trimming(demo_config().alignment.trimming)
trim = cfg.alignment.trimming
labels = {"train_features_start": "train features start", "train_features_end": "train features end",
          "train_targets_start": "train targets start", "train_targets_end": "train targets end",
          "test_features_start": "test features start", "test_features_end": "test features end",
          "test_targets_start": "test targets start", "test_targets_end": "test targets end"}
cols = st.columns(4)
for i, (field, label) in enumerate(labels.items()):
    value = cols[i % 4].number_input(label, value=getattr(trim, field), step=1, format="%d",
                                     help=f"LeBel default: {getattr(lebel, field)}", key=f"trim_{field}")
    setattr(trim, field, None if value is None else int(value))

rows = trimming_preview(current, trim, cfg.assembly.test_story or None, cfg.ridge.mode)
mismatched = [r for r in rows if not r["match"]]
common.chart(viz.length_preview_figure(rows), key="length_preview")
if mismatched:
    st.error("Features and targets differ in length for: " + "; ".join(
        f"{r['story']} ({r['role']}): features {r['features']} vs targets {r['targets']} TRs" for r in mismatched)
        + ". Change the feature or target bounds of that role so both lengths agree before training.")
else:
    st.success("Features and targets line up for every story.")

st.subheader("Alignment")
c1, c2 = st.columns(2)
delays_text = c1.text_input("FIR delays (TRs, comma-separated)",
                            value=", ".join(str(d) for d in cfg.alignment.fir_delays), key="fir_delays")
try:
    delays = [int(x) for x in delays_text.replace(" ", "").split(",") if x]
    if not delays or len(set(delays)) != len(delays):
        raise ValueError
    cfg.alignment.fir_delays = delays
except ValueError:
    c1.error("FIR delays must be distinct whole numbers of TRs, e.g. 1, 2, 3, 4.")
method = c2.selectbox("Downsampling method", DOWNSAMPLE_METHODS,
                      index=DOWNSAMPLE_METHODS.index(cfg.alignment.downsample_method), key="downsample_method")
cfg.alignment.downsample_method = method
with common.user_errors("Drawing the kernel"):
    t, w = downsample_kernel(method, current.tr, **cfg.alignment.downsample_kwargs)
    common.chart(viz.kernel_figure(t, w, method, current.tr), key="kernel", where=c2)

st.subheader("Ridge and cross-validation")
ridge = cfg.ridge
c1, c2, c3 = st.columns(3)
MODE_NAMES = {"train_test": "held-out test story", "cv": "all stories (CV)"}
OUTER_NAMES = {"story": "one story per fold (leave one story out)", "contiguous": "contiguous blocks",
               "trimmed": "contiguous blocks with a gap (trim size)"}
ridge.mode = c1.selectbox("Mode", MODES, index=MODES.index(ridge.mode), key="mode",
                          format_func=lambda m: MODE_NAMES.get(m, m),
                          help="Held-out test story: statistics on one story's TRs. All stories (CV): every story "
                               "is predicted by a model that never saw it, and the statistics use all of them.")
test = c1.selectbox("Test story", current.stories, index=current.stories.index(current.effective_test_story()),
                    key="setup_test_story", disabled=ridge.mode != "train_test")
cfg.assembly.test_story = test
ridge.fold_type = c2.selectbox("Inner fold type", FOLD_TYPES, index=FOLD_TYPES.index(ridge.fold_type),
                               key="fold_type")
ridge.n_inner_folds = int(c2.number_input("Inner folds", 2, 20, ridge.n_inner_folds, key="inner_folds"))
ridge.outer_fold_type = c2.selectbox("Outer folds (all stories)", OUTER_FOLD_TYPES,
                                     index=OUTER_FOLD_TYPES.index(ridge.outer_fold_type), key="outer_fold_type",
                                     format_func=lambda k: OUTER_NAMES.get(k, k), disabled=ridge.mode != "cv")
ridge.n_outer_folds = int(c2.number_input("Outer folds (blocks)", 2, 20, ridge.n_outer_folds, key="outer_folds",
                                          disabled=ridge.mode != "cv" or ridge.outer_fold_type == "story"))
ridge.chunk_length = int(c3.number_input("Chunk length (TRs)", 1, 500, ridge.chunk_length, key="chunk_length"))
ridge.single_alpha = c3.radio("Alpha", ["per voxel", "single"], index=int(ridge.single_alpha),
                              horizontal=True, key="single_alpha") == "single"
alpha_text = st.text_input("Alpha grid (comma-separated; the reference uses logspace(-1, 8, 10))",
                           value=", ".join(f"{a:g}" for a in ridge.alphas), key="alphas")
try:
    alphas = [float(a) for a in alpha_text.split(",") if a.strip()]
    if not alphas or min(alphas) <= 0:
        raise ValueError
    ridge.alphas = alphas
except ValueError:
    st.error(f"Alphas must be positive numbers separated by commas, e.g. {', '.join(f'{a:g}' for a in REFERENCE_ALPHAS[:4])}.")

for warning in setup_warnings(cfg, current):  # valid but probably wrong: said, not silently accepted
    st.warning(warning, icon=":material/warning:")

st.subheader("Statistics")
stats = cfg.stats
c1, c2, c3 = st.columns(3)
stats.test = c1.selectbox("Significance test", SIGNIFICANCE_TESTS, index=SIGNIFICANCE_TESTS.index(stats.test),
                          key="stats_test", format_func=lambda t: TEST_NAMES.get(t, t))
stats.alternative = c1.selectbox("Alternative", ALTERNATIVES, index=ALTERNATIVES.index(stats.alternative),
                                 key="stats_alternative", format_func=lambda a: ALTERNATIVE_NAMES.get(a, a),
                                 help="Encoding accuracy asks whether r > 0 (one-sided).")
stats.n_permutations = int(c2.number_input("Permutations (block permutation, and the null of the fallback "
                                           "threshold; 0 = none)", 0, 100000, stats.n_permutations, step=100,
                                           key="n_permutations"))
block = c2.number_input("Block length (TRs; empty = chosen from the data)", min_value=1, max_value=500,
                        value=stats.block_length, step=1, key="block_length")
stats.block_length = None if block is None else int(block)
stats.fdr_q = float(c3.number_input("Benjamini–Hochberg FDR q", 0.001, 0.5, float(stats.fdr_q), step=0.01,
                                    format="%.3f", key="fdr_q"))
with common.user_errors("Describing the test"):
    st.caption(f"p-values: {describe_planned_test(cfg)}; correction: {fdr_label({}, cfg)}.")
for warning in statistics_warnings(cfg, current):  # after the widgets: the values just chosen
    st.warning(warning, icon=":material/warning:")

st.subheader("Feature spaces")
several = st.checkbox("Fit several feature spaces (banded ridge and variance partitioning)",
                      value=bool(cfg.feature_spaces), key="use_feature_spaces",
                      help="Each space gets its own regularisation, chosen per voxel by nested CV; the variance "
                           "each space explains alone and the variance they share are mapped.")
if several:
    choices = feature_space_choices(cfg)
    current_names = [s.name for s in cfg.feature_spaces if s.name in choices]
    c1, c2 = st.columns([2, 1])
    picked = c1.multiselect("Spaces (2 to 4)", list(choices), default=current_names or [MODEL_SPACE, "wordrate"],
                            format_func=lambda name: choices[name], key="feature_space_pick")
    model_layer = next((s.layer for s in cfg.feature_spaces if s.name == MODEL_SPACE), 0)
    if MODEL_SPACE in picked and cfg.features.modality in ("speech", "language_model"):
        model_layer = int(c2.number_input("Layer of the model space", 0, 200, int(model_layer), key="model_space_layer"))
    cfg.banded.mode = st.radio("Fit", BANDED_MODES, index=BANDED_MODES.index(cfg.banded.mode), horizontal=True,
                               key="banded_mode",
                               format_func=lambda m: "joint (banded ridge + variance partitioning)" if m == "joint"
                               else "separate (one ridge per space)")
    if cfg.banded.mode == "joint":
        cfg.banded.stacked = st.checkbox("Also the stacked-encoding estimate", value=cfg.banded.stacked,
                                         key="banded_stacked")
    cfg.feature_spaces = build_feature_spaces(cfg, picked, model_layer)
    if cfg.ridge.mode != "train_test":
        st.warning("Feature spaces are fitted on the training stories and their variance partition is scored "
                   f"on the held-out test story; the mode above is \"{MODE_NAMES.get(cfg.ridge.mode)}\".",
                   icon=":material/warning:")
        st.button("Use the held-out test story", key="feature_spaces_train_test",
                  on_click=lambda: st.session_state.update(mode="train_test"))
    needs = 1 if cfg.banded.mode == "separate" else 2
    if not needs <= len(picked) <= 4:
        st.warning(f"Pick {needs} to 4 spaces for a {cfg.banded.mode} fit.")
    else:
        models = 2 ** len(picked) - 1 if cfg.banded.mode == "joint" and len(picked) <= 3 else len(picked)
        st.caption(f"{len(picked)} spaces: {models} ridge model(s) with nested CV will be fitted"
                   + (" (the joint model and every subset, for the partition)." if models > len(picked) else "."))
else:
    cfg.feature_spaces = []

st.subheader("Export")
cfg.name = st.text_input("Experiment name", value=cfg.name, key="experiment_name")
try:
    cfg.validate()
except EncodingCoreError as exc:
    st.error(f"The settings are not valid yet: {exc}")
else:
    c1, c2 = st.columns(2)
    c1.download_button("Download config (TOML)", cfg.to_toml(), file_name=f"{cfg.name}.toml",
                       mime="application/toml", key="download_toml")
    c1.caption(f"Run it with `python -m encoding_core sweep {cfg.name}.toml`.")
    with common.user_errors("Writing the Python script"):
        c2.download_button("Download Python script", experiment_to_script(cfg), file_name=f"{cfg.name}.py",
                           mime="text/x-python", key="download_script")
