"""The committed demo stimuli: audio, TextGrids and manifest agree with each other exactly."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from praatio import textgrid as praat_textgrid

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "demo"
MANIFEST = json.loads((ASSETS / "stories.json").read_text(encoding="utf-8"))
STORIES = MANIFEST["story_order"]
ENTRIES = {entry["name"]: entry for entry in MANIFEST["stories"]}


def test_assets_are_small_and_complete():
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total < 20 * 2**20, f"assets/demo is {total / 2**20:.1f} MB"
    assert (ASSETS / "CREDITS.md").is_file()
    credits = (ASSETS / "CREDITS.md").read_text(encoding="utf-8")
    assert "Townsend" in credits and "public domain" in credits.lower()
    assert len(STORIES) == 6 and MANIFEST["test_story"] == STORIES[-1]
    for name in STORIES:
        assert (ASSETS / f"{name}.flac").is_file() and (ASSETS / f"{name}.TextGrid").is_file()


def test_total_audio_fits_the_demo_budget():
    durations = [sf.info(str(ASSETS / f"{name}.flac")).duration for name in STORIES]
    assert all(70.0 <= d <= 105.0 for d in durations), durations
    assert 7.5 * 60 <= sum(durations) <= 9.0 * 60


@pytest.mark.parametrize("name", STORIES)
def test_audio_format_and_duration_match_the_pieces(name):
    info = sf.info(str(ASSETS / f"{name}.flac"))
    entry = ENTRIES[name]
    assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
    assert info.frames == entry["n_samples"]
    # The audio is the concatenation of the measured word pieces and pauses.
    pieces_s = (entry["word_samples"] + entry["pause_samples"]) / 16000
    assert abs(info.duration - pieces_s) <= 0.010


@pytest.mark.parametrize("name", STORIES)
def test_textgrid_words_are_exact_against_the_audio(name):
    """Read with praatio (independent of our reader): word intervals hold sound, pauses are silent."""
    audio, rate = sf.read(str(ASSETS / f"{name}.flac"), dtype="float64")
    duration = audio.size / rate
    grid = praat_textgrid.openTextgrid(str(ASSETS / f"{name}.TextGrid"), includeEmptyIntervals=True)
    assert list(grid.tierNames) == ["phones", "words"]
    entries = grid.getTier("words").entries
    assert abs(grid.maxTimestamp - duration) < 1e-9
    assert entries[0].start == 0.0 and abs(entries[-1].end - duration) < 1e-9
    starts = np.array([e.start for e in entries])
    ends = np.array([e.end for e in entries])
    assert np.allclose(starts[1:], ends[:-1])          # the tier tiles [0, duration]
    labels = [e.label for e in entries]
    # Every word is followed by a pause: sp, word, sp, word, ..., sp.
    assert set(labels[0::2]) == {"sp"} and "sp" not in labels[1::2]
    words = [(e.start, e.end, e.label) for e in entries if e.label != "sp"]
    assert all(end <= duration for _, end, _ in words)

    # Pauses were inserted as digital silence: every sample inside an sp interval is 0
    # (one sample of slack at each boundary for the time-to-sample rounding).
    for entry in entries:
        a, b = int(round(entry.start * rate)), int(round(entry.end * rate))
        segment = audio[a + 1:b - 1]
        if entry.label == "sp":
            assert np.all(segment == 0.0), (name, entry)
        else:
            # A word holds sound right after its onset and right before its offset (10 ms).
            head, tail = audio[a:a + 160], audio[b - 160:b]
            assert np.abs(head).max() > 0 and np.abs(tail).max() > 0, (name, entry)
            assert np.sqrt(np.mean(segment ** 2)) > 1e-3, (name, entry)


@pytest.mark.parametrize("name", STORIES)
def test_textgrid_words_match_the_text_and_our_reader(name):
    from encoding_core.assembly.textgrid import read_words

    entry = ENTRIES[name]
    expected = [w.lower() for w in re.findall(r"[A-Za-z]+(?:['\-][A-Za-z]+)*", f"{entry['title']} {entry['text']}")]
    words, onsets, offsets = read_words(ASSETS / f"{name}.TextGrid")
    assert words == expected
    assert len(words) == entry["n_words"]
    assert np.all(offsets > onsets) and np.all(onsets[1:] >= offsets[:-1])
    grid = praat_textgrid.openTextgrid(str(ASSETS / f"{name}.TextGrid"), includeEmptyIntervals=False)
    reference = [e for e in grid.getTier("words").entries if e.label != "sp"]
    np.testing.assert_array_equal(onsets, [e.start for e in reference])
    np.testing.assert_array_equal(offsets, [e.end for e in reference])
    # The coarse phones tier has one interval per word, at the same times.
    phones = [e for e in grid.getTier("phones").entries if e.label != "sp"]
    assert [(e.start, e.end) for e in phones] == [(e.start, e.end) for e in reference]
