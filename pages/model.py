"""Model & layer: the feature modality; for speech the model, layers, pooling, windows, device/precision,
cache and cost; for word rate, word embeddings, a language model or custom arrays, what each needs and its cost."""
from __future__ import annotations

import dataclasses

import streamlit as st

from encoding_core import viz
from encoding_core.studio import (
    CONTEXT_TYPES,
    MODALITIES,
    MODALITY_LABELS,
    MODALITY_NEEDS,
    OOV_HANDLING,
    custom_feature_files,
    estimate_word_feature_cost,
    language_model_facts,
    DEFAULT_MODEL,
    POOL_METHODS,
    PRECISIONS,
    EncodingCoreError,
    FeatureConfig,
    cache_entry_rows,
    clear_cache,
    compare_precisions,
    estimate_cost,
    format_bytes,
    format_seconds,
    is_cached,
    list_cache_entries,
    model_facts,
)
from pages import _common as common

common.enter_through_app()  # a page URL opened directly: draw it through app.py's router

PRESETS = [DEFAULT_MODEL, "openai/whisper-tiny", "openai/whisper-base", "openai/whisper-small",
           "facebook/hubert-base-ls960", "facebook/wav2vec2-base-960h", "microsoft/wavlm-base-plus"]
CUSTOM = "Custom id or local folder ..."
POOL_HELP = {
    "last": "last real audio frame: the encoder frame that the window's final audio sample reaches",
    "mean": "mean over the real audio frames of the window (padding excluded)",
    "last_padded": "reference behaviour: the final frame of Whisper's 30 s padded input (lies in the padding)",
    "mean_padded": "reference behaviour: mean over all frames, padding included",
}

st.title("Model & layer")
common.how_this_works("model")
cfg = common.config()
feat = cfg.features


@st.cache_data(show_spinner=False, max_entries=32)
def _lm_facts(name: str):
    return language_model_facts(name)


@st.cache_data(show_spinner=False, max_entries=16)
def _word_cost(word_counts: tuple[int, ...], feature_fields: tuple):
    return estimate_word_feature_cost(list(word_counts), FeatureConfig(**dict(feature_fields)))


def other_modality_section(feat: FeatureConfig) -> None:
    """Settings, needs and cost of the word-level and custom modalities (speech is the rest of the page)."""
    modality = feat.modality
    ready = True
    if modality == "wordrate":
        st.caption("One feature per TR: how many words start within it. No model, no layers.")
    elif modality == "embeddings":
        typed = st.text_input("Word-vector file (word2vec .bin / .w2v.txt, GloVe .txt)", value=feat.vector_path,
                              key="vector_path")
        resolved = common.user_path(typed, "Word-vector file") if typed.strip() else None
        ready = resolved is not None
        if resolved is not None:
            feat.vector_path = str(resolved)
            st.caption(f"{resolved.name}: {format_bytes(resolved.stat().st_size)}.")
        c1, c2 = st.columns(2)
        feat.lowercase = c1.checkbox("Lower-case words before lookup", value=feat.lowercase, key="lowercase")
        feat.oov_handling = c2.selectbox("Words without a vector", OOV_HANDLING,
                                         index=OOV_HANDLING.index(feat.oov_handling), key="oov_handling",
                                         help="zero: a zero vector (counted in a warning); copy_prev: the last "
                                              "known vector (the reference's default); skip: drop the word; "
                                              "error: stop.")
    elif modality == "language_model":
        typed = st.text_input("Causal language model: Hugging Face id in the local cache, or a local folder",
                              value="" if feat.model_name == DEFAULT_MODEL else feat.model_name, key="lm_name")
        name = typed.strip()
        if name.startswith(("/", "~", ".")) or common.looks_like_local_path(name):
            resolved = common.user_path(name, "Model folder")
            name = str(resolved) if resolved is not None else ""
        facts = None
        if name:
            try:
                with st.spinner(f"Reading {name} ..."):
                    facts = _lm_facts(name)
            except EncodingCoreError as exc:
                st.warning(f"**{name} is not usable here.** {exc}")
        ready = facts is not None
        if facts is not None:
            feat.model_name = name
            c = st.columns(4)
            c[0].metric("Layers", facts["n_layers"], help="0 = embeddings, l = output of block l-1")
            c[1].metric("Width", facts["hidden_size"])
            c[2].metric("Parameters", f"{facts['n_parameters'] / 1e6:.1f} M")
            c[3].metric("Kind", facts["kind"])
            all_layers = st.checkbox("All layers (a layer profile)", value=cfg.layers == "all", key="lm_all_layers")
            if all_layers:
                cfg.layers = "all"
            else:
                default = [x for x in (cfg.layers if isinstance(cfg.layers, list) else []) if x < facts["n_layers"]]
                picked = st.multiselect("Layers", list(range(facts["n_layers"])), key="lm_layer_pick",
                                        default=default or [min(9, facts["n_layers"] - 1)])
                cfg.layers = sorted(int(x) for x in picked) or cfg.layers
        c1, c2, c3 = st.columns(3)
        feat.lookback = int(c1.number_input("Lookback (tokens of context)", min_value=1, max_value=8192,
                                            value=int(feat.lookback), step=32, key="lookback"))
        feat.context_type = c2.selectbox("Context", CONTEXT_TYPES, index=CONTEXT_TYPES.index(feat.context_type),
                                         key="context_type")
        feat.last_token = c3.checkbox("Last token of the word", value=feat.last_token, key="last_token",
                                      help="Off: the mean over the context's tokens (BOS included).")
    elif modality in ("phonemerate", "envelope", "logmel"):
        st.caption({"phonemerate": "One feature per TR: how many phones start within it (TextGrid phone tier).",
                    "envelope": "One feature per TR: the RMS of the sound within it.",
                    "logmel": "Log-mel bands every 10 ms, resampled to the TRs like speech features."}[modality])
        if modality == "phonemerate":
            typed = st.text_input("Folder of <story>.TextGrid files (empty: the LeBel folder's TextGrids)",
                                  value=feat.textgrid_dir, key="textgrid_dir")
            resolved = common.user_path(typed, "TextGrid folder") if typed.strip() else None
            feat.textgrid_dir = str(resolved) if resolved is not None else ""
        if modality == "logmel":
            feat.n_mels = int(st.number_input("Mel bands", min_value=1, max_value=256, value=int(feat.n_mels),
                                              key="n_mels"))
    else:  # custom
        typed = st.text_input("Folder of <story>.npz files ('features' (n, dim), 'times' (n,) s)",
                              value=feat.custom_path, key="custom_path")
        resolved = common.user_path(typed, "Custom features folder") if typed.strip() else None
        ready = resolved is not None
        if resolved is not None:
            feat.custom_path = str(resolved)
    current = common.assembly()
    if current is None:
        st.info("Load an assembly to see its words and the cost estimate.")
        return
    if current.simulated:
        common.simulated_banner("assembly")
    if modality == "custom":
        if ready:
            rows = custom_feature_files(feat.custom_path, current.stories)
            st.write(f"**{sum(r['found'] for r in rows)} of {len(rows)}** stories have a file.")
            st.dataframe(rows, hide_index=True, height=180)
        return
    counts = tuple(len(words) for words in current.get_words())
    st.write(f"**{sum(counts):,} words** in {len(counts)} stories"
             + ("" if all(counts) else f"; {sum(1 for c in counts if not c)} stories have no words"))
    if not ready:
        return
    st.subheader("Cost")
    with common.user_errors("Estimating the cost"):
        estimate = _word_cost(counts, tuple(sorted(dataclasses.asdict(feat).items())))
        c = st.columns(2)
        c[0].metric("Words", f"{estimate.n_windows:,}")
        c[1].metric("Estimated time", format_seconds(estimate.seconds))
        for warning in estimate.warnings:
            st.warning(warning)


modality = st.radio("Features from", MODALITIES, index=MODALITIES.index(feat.modality), horizontal=True,
                    format_func=lambda m: MODALITY_LABELS[m], key="modality")
feat.modality = modality
st.caption(f"Needs: {MODALITY_NEEDS[modality]}.")
if modality != "speech":
    other_modality_section(feat)
    st.stop()

choice = st.selectbox("Speech model", PRESETS + [CUSTOM],
                      index=PRESETS.index(feat.model_name) if feat.model_name in PRESETS else len(PRESETS),
                      help="The bundled Whisper tiny.en works offline; others must be in the Hugging Face "
                           "cache or a local folder.", key="model_choice")
if choice == CUSTOM:
    custom = st.text_input("Hugging Face id or local folder", value="" if feat.model_name in PRESETS
                           else feat.model_name, key="model_custom")
    if custom.strip().startswith(("/", "~", ".")) or common.looks_like_local_path(custom):
        # a local folder (checked against the data roots, symlinks resolved)
        resolved = common.user_path(custom, "Model folder")
        model_name = str(resolved) if resolved is not None else None
    else:
        model_name = custom.strip() or None
else:
    model_name = choice


@st.cache_data(show_spinner=False, max_entries=32)
def _facts(name: str):
    return model_facts(name)


facts = None
if model_name:
    try:
        with st.spinner(f"Reading {model_name} ..."):
            facts = _facts(model_name)
    except EncodingCoreError as exc:
        st.warning(f"**{model_name} is not usable here.** {exc}")
    else:
        feat.model_name = model_name
        c = st.columns(4)
        c[0].metric("Encoder layers", facts.n_layers)
        c[1].metric("Width", facts.hidden_size)
        c[2].metric("Parameters", f"{facts.n_parameters / 1e6:.1f} M")
        c[3].metric("Kind", facts.kind)

if facts is not None:
    all_layers = st.checkbox("All layers (a layer profile)", value=cfg.layers == "all", key="all_layers")
    if all_layers:
        cfg.layers = "all"
    else:
        default = [x for x in (cfg.layers if isinstance(cfg.layers, list) else []) if x < facts.n_layers]
        picked = st.multiselect("Layers (0-based encoder blocks)", list(range(facts.n_layers)),
                                default=default or [min(3, facts.n_layers - 1)], key="layer_pick")
        if picked:
            cfg.layers = sorted(int(x) for x in picked)
        else:
            st.error("Pick at least one layer, or tick 'All layers'.")

st.subheader("Windows")
pool = st.radio("Pooling", POOL_METHODS, index=POOL_METHODS.index(feat.pool), horizontal=True,
                format_func=lambda p: p.replace("_", " "), key="pool")
feat.pool = pool
st.caption(POOL_HELP[pool])
c1, c2, c3 = st.columns(3)
feat.chunk_size = c1.number_input("Stride (s between window ends)", min_value=0.01, max_value=10.0,
                                  value=float(feat.chunk_size), step=0.05, key="stride")
feat.context_size = c2.number_input("Context (s of audio per window)", min_value=0.5, max_value=30.0,
                                    value=float(feat.context_size), step=1.0, key="context")
feat.include_early_windows = c3.checkbox("Early (shorter) windows", value=feat.include_early_windows,
                                         help="Also give features for the first context seconds "
                                              "(Huth-lab convention); the reference skips them.", key="early")
common.chart(viz.window_diagram(feat.chunk_size, feat.context_size, feat.include_early_windows),
             key="window_diagram")

c1, c2 = st.columns(2)
feat.device = c1.selectbox("Device", ["auto", "cpu", "cuda", "mps"],
                           index=["auto", "cpu", "cuda", "mps"].index(feat.device)
                           if feat.device in ("auto", "cpu", "cuda", "mps") else 0, key="device")
feat.precision = c2.selectbox("Precision", PRECISIONS, index=PRECISIONS.index(feat.precision),
                              format_func=lambda p: p if p == "fp32" else f"{p} (approximate)", key="precision")

CLEAR_REQUEST_KEY = "cache_clear_request"  # keys to delete (None = all) waiting for confirmation


def _entries(n: int) -> str:
    return f"{n} cache entr{'y' if n == 1 else 'ies'}"


def feature_cache_manager(cache_dir: str) -> None:
    """List the feature-cache entries (model, audio file, size) and clear some or all after a confirmation."""

    entries = []
    with common.user_errors("Reading the feature cache"):
        entries = list_cache_entries(cache_dir)
    total = sum(e.bytes for e in entries)
    with st.expander(f"Feature cache: {_entries(len(entries))}, {format_bytes(total)}",
                     expanded=CLEAR_REQUEST_KEY in st.session_state):
        st.caption(f"Folder `{cache_dir}`. Features are cached per (audio content, model, window settings); "
                   "a cleared entry is recomputed the next time a run needs it.")
        done = st.session_state.pop("cache_clear_done", None)
        if done:
            st.success(done)
        if not entries:
            st.caption("The cache is empty.")
            return
        rows = cache_entry_rows(entries)
        st.dataframe(rows, hide_index=True, column_order=["model", "audio file", "size", "windows", "layers",
                                                          "created"], key="cache_table")
        by_key = {row["key"]: row for row in rows}
        picked = st.multiselect("Entries to clear", list(by_key), key="cache_pick",
                                format_func=lambda k: f"{by_key[k]['model']} · {by_key[k]['audio file']} · "
                                                      f"{by_key[k]['size']}")
        c1, c2 = st.columns(2)
        if c1.button(f"Clear the {len(picked)} selected", disabled=not picked, key="cache_clear_selected"):
            st.session_state[CLEAR_REQUEST_KEY] = list(picked)
        if c2.button("Clear all", key="cache_clear_all"):
            st.session_state[CLEAR_REQUEST_KEY] = None
        if CLEAR_REQUEST_KEY not in st.session_state:
            return
        keys = st.session_state[CLEAR_REQUEST_KEY]
        doomed = [e for e in entries if keys is None or e.key in keys]
        busy = [j.job_id for j in common.jobs().list() if j.state in ("queued", "running")]
        st.warning(f"Delete {_entries(len(doomed))} ({format_bytes(sum(e.bytes for e in doomed))})? "
                   "They are recomputed when needed, which takes time."
                   + (f" Jobs {busy} are running and may be using them." if busy else ""))
        y, n = st.columns(2)
        if y.button("Yes, delete", type="primary", key="cache_clear_confirm"):
            del st.session_state[CLEAR_REQUEST_KEY]
            with common.user_errors("Clearing the feature cache"):
                removed = clear_cache(cache_dir, keys=None if keys is None else list(keys))
                st.session_state.pop("cache_pick", None)
                st.session_state["cache_clear_done"] = f"Removed {_entries(removed)}."
                st.rerun()
        if n.button("Cancel", key="cache_clear_cancel"):
            del st.session_state[CLEAR_REQUEST_KEY]
            st.rerun()


feature_cache_manager(cfg.cache_dir)

if facts is None:  # the chosen model cannot be used: no numbers of another model
    st.info(f"No cache state or cost estimate: the chosen model cannot be used here. The experiment still uses "
            f"`{feat.model_name}` until a usable model is chosen.")
    st.stop()

current = common.assembly()
if current is None:
    st.info("Load an assembly and map its audio to see the cache state and the cost estimate.")
    st.page_link(common.PAGES["Assembly"], label="Go to Assembly", icon=":material/folder_open:")
    st.stop()
if current.simulated:
    common.simulated_banner("assembly")

audio_paths = [p for p in current.get_audio_path() if p]
if not audio_paths:
    st.info("No story has audio yet; map it on the Audio page to see the cost.")
    st.page_link(common.PAGES["Audio"], label="Go to Audio", icon=":material/graphic_eq:")
    st.stop()


@st.cache_data(show_spinner=False, max_entries=16)
def _cost(paths: tuple[str, ...], feature_fields: tuple, cache_dir: str, cached_flags: tuple[bool, ...]):
    """The estimate for these stories and settings; ``cached_flags`` (which stories are cached now) is
    part of the key, so the estimate follows the cache."""
    return estimate_cost(list(paths), FeatureConfig(**dict(feature_fields)), cache_dir=cache_dir)


st.subheader("Cache and cost")
fields = tuple(sorted(dataclasses.asdict(feat).items()))
with common.user_errors("Checking the feature cache"):
    cached = {name: bool(p) and is_cached(p, feat, cfg.cache_dir)
              for name, p in zip(current.stories, current.get_audio_path())}
    st.write(f"**{sum(cached.values())} of {len(cached)}** stories are already cached for these settings.")
    st.dataframe([{"story": k, "cached": v} for k, v in cached.items()], hide_index=True, height=180)
with common.user_errors("Estimating the cost"):
    flags = tuple(cached[name] for name, p in zip(current.stories, current.get_audio_path()) if p)
    with st.spinner(f"Timing one window of {feat.model_name} on this machine (once; kept in the cache) ..."):
        estimate = _cost(tuple(audio_paths), fields, cfg.cache_dir, flags)
    c = st.columns(3)
    c[0].metric("Windows to compute", f"{estimate.n_windows:,}",
                help=f"{estimate.cached_stories} of {estimate.n_stories} stories are cached and cost nothing.")
    c[1].metric("Estimated time", format_seconds(estimate.seconds),
                help="Windows to compute x the measured time per window, plus loading the model once.")
    c[2].metric("Per window", f"{estimate.per_window_s * 1000:.0f} ms" if estimate.n_windows else "-",
                help=f"{estimate.model_name} ({estimate.precision}), one window timed on this machine.")
    if estimate.n_windows == 0:
        st.success("Every story is cached for these settings: a run needs no feature extraction.")
    else:
        st.caption(f"{format_seconds(estimate.seconds)} = {estimate.n_windows:,} windows x "
                   f"{estimate.per_window_s:.3f} s + {estimate.load_seconds:.1f} s to load "
                   f"{estimate.model_name} ({estimate.precision}); the per-window time was measured on this machine"
                   f"{' (earlier, kept in the cache)' if estimate.probe_from_disk else ''}. Other work on the machine "
                   "slows a run down.")
    for warning in estimate.warnings:
        st.warning(warning)


with common.user_errors("Comparing fp32 and bf16"):
    advice = compare_precisions(feat, cfg.cache_dir, measure=False)  # from earlier probes only (memory or disk)
    if advice is None:
        if st.button("Time fp32 against bf16 on this machine", key="compare_precisions",
                     help="One window in each precision (about as long as two windows of the run); kept in the "
                          "cache."):
            with st.spinner("Timing one window in fp32 and one in bf16 ..."):
                advice = compare_precisions(feat, cfg.cache_dir)
    if advice is not None:
        if advice.recommend == "bf16":
            st.info(f"**bf16 recommended here.** {advice.reason}")
        else:
            st.caption(f"**fp32 recommended here.** {advice.reason}")
        if feat.precision == "bf16" and advice.recommend != "bf16":
            st.warning("bf16 is selected but is not faster on this machine; fp32 is exact and at least as fast.")
