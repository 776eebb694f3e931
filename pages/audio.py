"""Audio: map each story to its stimulus file, check durations, listen and look at it."""
from __future__ import annotations

import streamlit as st

from encoding_core import viz
from encoding_core.studio import (
    atomic_write_bytes,
    check_story_audio,
    check_upload_size,
    load_audio,
    load_settings,
    map_audio,
    safe_upload_name,
)
from pages import _common as common

common.enter_through_app()  # a page URL opened directly: draw it through app.py's router

AUDIO_SUFFIXES = [".wav", ".flac", ".mp3", ".ogg"]

st.title("Audio")
st.caption("Each story needs its stimulus audio; times are seconds from the sound onset.")
cfg = common.config()
current = common.require_assembly()
if current is None:
    st.stop()
common.how_this_works("audio")


def _remap() -> None:
    folder = cfg.assembly.audio_dir
    with common.user_errors("Mapping the audio"), st.spinner("Checking audio files ..."):
        common.set_audio_matches(map_audio(common.base_assembly(), folder, cfg.assembly.audio_pattern,
                                           overrides=cfg.assembly.audio_overrides or None))


FEEDBACK_KEY = "audio_override_feedback"


def _use_if_usable(story_name: str, path) -> None:
    """Check a file for one story like every mapped file; use it unless it is missing or unreadable,
    and say what the check found."""
    match = check_story_audio(current.story(story_name), path, current.tr)
    if match.status in ("missing", "unreadable"):
        st.error(f"Not used for {story_name}: {match.message}")
        return
    cfg.assembly.audio_overrides[story_name] = str(path)
    _remap()
    if match.status == "mismatch":
        feedback = ("warning", f"{path} is now the audio of {story_name}, but it does not fit the story: "
                               f"{match.message}")
    else:
        feedback = ("success", f"{path} is now the audio of {story_name}: {match.message}.")
    st.session_state[FEEDBACK_KEY] = feedback
    st.rerun()  # the table above is drawn again from the new mapping (never the old one next to the message)


def _show_feedback() -> None:
    """The result of the last override, once, under the buttons (it survives the rerun above)."""
    level, text = st.session_state.pop(FEEDBACK_KEY, (None, ""))
    if level == "warning":
        st.warning(text)
    elif level == "success":
        st.success(text)


left, right = st.columns(2)
folder_text = left.text_input("Audio folder", value=cfg.assembly.audio_dir, key="audio_folder",
                              placeholder="/data/ds003020/stimuli")
pattern = right.text_input("File name pattern ({story} is replaced)", value=cfg.assembly.audio_pattern,
                           key="audio_pattern")
if st.button("Map audio", type="primary", key="map_audio"):
    if "{story}" not in pattern:
        st.error("The pattern must contain {story}, e.g. {story}.wav.")
    else:
        folder = common.user_path(folder_text, "Audio folder")
        if folder is not None and not folder.is_dir():
            st.error(f"Audio folder: {folder} is a file, not a folder; type the folder that holds the audio.")
        elif folder is not None:
            cfg.assembly.audio_dir, cfg.assembly.audio_pattern = str(folder), pattern
            _remap()

matches = common.audio_matches()
if matches is None and any(current.get_audio_path()):
    st.info("Audio paths come with the assembly; they are checked below like a mapped folder. Map a folder to "
            "change them.")
    with common.user_errors("Checking the audio"):
        matches = map_audio(current, None)  # the assembly's own files, checked (headers only)
if matches is None:
    st.info("No audio is mapped yet: type the audio folder and click **Map audio**.")
else:
    counts = {status: sum(m.status == status for m in matches) for status in ("found", "missing", "mismatch",
                                                                              "unreadable")}
    st.write(" · ".join(f"**{n}** {status}" for status, n in counts.items()))
    st.dataframe([{"story": m.story, "status": m.status, "file": m.path or "", "duration (s)": m.duration_s,
                   "TR span (s)": m.tr_span_s, "sample rate": m.sample_rate, "message": m.message}
                  for m in matches], hide_index=True)
    bad = [m for m in matches if m.status != "found"]
    if bad:
        st.warning(f"{len(bad)} stories need attention: " + "; ".join(f"{m.story}: {m.message}" for m in bad))

st.subheader("Fix one story")
story = st.selectbox("Story", current.stories, key="audio_story")
over_col, up_col = st.columns(2)
with over_col:
    override = st.text_input("Use this file instead (path)", value=cfg.assembly.audio_overrides.get(story, ""),
                             key="audio_override")
    if st.button("Set override", key="set_override") and override:
        path = common.user_path(override, f"Audio for {story}")
        if path is not None:
            _use_if_usable(story, path)
    _show_feedback()
with up_col:
    settings = load_settings()
    upload = st.file_uploader(f"Upload the audio for {story} (at most {settings.max_upload_mb:g} MB)",
                              type=[s.lstrip(".") for s in AUDIO_SUFFIXES], key="audio_upload")
    if upload is not None and st.button("Use the upload", key="use_upload"):
        with common.user_errors("Saving the upload"):
            check_upload_size(upload.name, upload.size, settings.max_upload_mb)
            name = safe_upload_name(upload.name, AUDIO_SUFFIXES)
            target = common.dirs().uploads / "audio" / name
            atomic_write_bytes(target, upload.getvalue())
            _use_if_usable(story, target)

current = common.assembly()
audio_path = current.story(story).audio_path
if audio_path:
    with common.user_errors(f"Reading {audio_path}"), st.spinner("Decoding audio ..."):
        st.audio(audio_path)
        samples = load_audio(audio_path, target_sr=16000)
        kind = st.radio("Show", ["waveform", "spectrogram"], horizontal=True, key="audio_view")
        s = current.story(story)
        draw = viz.waveform_figure if kind == "waveform" else viz.spectrogram_figure
        common.chart(draw(samples, 16000, s.word_onsets, s.words, s.tr_times), key="audio_figure")
        st.caption("Red ticks: every word onset (labels thinned so that none overlaps; hover a tick for its word). "
                   "Blue ticks: TR times.")
else:
    st.caption(f"{story} has no audio file yet.")
