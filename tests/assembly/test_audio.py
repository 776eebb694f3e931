"""Audio decoding, header inspection and story-to-file mapping."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
from scipy.signal import resample_poly

from encoding_core.assembly import Assembly, Story
from encoding_core.assembly.audio import apply_audio_map, audio_info, load_audio, map_audio
from encoding_core.common.errors import AudioError, InputError


def tone(seconds, rate, freq=440.0, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t)
    return mono if channels == 1 else np.stack([mono, 0.25 * mono], axis=1)


def test_load_resamples_like_scipy_and_mixes_to_mono(tmp_path):
    rate = 22050
    signal = tone(1.0, rate, channels=2)
    path = tmp_path / "a.wav"
    soundfile.write(path, signal, rate, subtype="FLOAT")
    samples = load_audio(path, target_sr=16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    reference = resample_poly(signal.mean(axis=1), 320, 441)  # 22050 * 320 / 441 = 16000
    assert abs(samples.size - reference.size) <= 1
    n = min(samples.size, reference.size)
    core = slice(200, n - 200)  # edges differ between filters
    np.testing.assert_allclose(samples[:n][core], reference[:n][core], atol=2e-3)
    same_rate = load_audio(path, target_sr=rate)
    np.testing.assert_allclose(same_rate, signal.mean(axis=1), atol=1e-6)


def test_flac_and_info_header(tmp_path):
    path = tmp_path / "b.flac"
    soundfile.write(path, tone(2.5, 16000, channels=2), 16000)
    info = audio_info(path)
    assert (info.duration_s, info.sample_rate, info.channels) == (2.5, 16000, 2)
    assert load_audio(path).shape == (40000,)


def _bad_files(tmp_path):
    good = tmp_path / "good.wav"
    soundfile.write(good, tone(1.0, 16000), 16000, subtype="PCM_16")
    data = good.read_bytes()
    zero = tmp_path / "zero_tmp.wav"
    soundfile.write(zero, np.zeros(0), 16000, subtype="PCM_16")
    files = {
        "zero_length": (zero.read_bytes(), "zero length|no samples"),
        "empty": (b"", "empty"),
        "header_only": (data[:44], "truncated"),
        "truncated": (data[: len(data) // 2], "truncated"),
        "text": (b"this is not audio at all\n" * 20, "not audio|not a supported|Cannot"),
        "broken_header": (data[:30], "not a supported|Cannot"),
    }
    paths = {}
    for name, (content, message) in files.items():
        path = tmp_path / f"{name}.wav"
        path.write_bytes(content)
        paths[name] = (path, message)
    return paths


def test_bad_audio_raises_audio_error_naming_file(tmp_path):
    for name, (path, message) in _bad_files(tmp_path).items():
        for reader in (load_audio, audio_info):
            with pytest.raises(AudioError, match=message) as info:
                reader(path)
            assert str(path) in str(info.value), (name, reader)
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(InputError, match="target_sr"):
        load_audio(tmp_path / "missing.wav", target_sr=0)


def test_truncated_flac_refused(tmp_path):
    path = tmp_path / "t.flac"
    soundfile.write(path, np.random.default_rng(0).standard_normal(16000) * 0.1, 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert str(path) in str(info.value)


def make_assembly(tr=2.0):
    stories = [Story(name, np.zeros((n, 3)), np.arange(n) * tr + start)
               for name, n, start in (("Alpha", 10, 0.0), ("beta", 10, 0.0), ("gamma", 15, -10.0),
                                      ("delta", 10, 0.0), ("eps", 10, 0.0))]
    return Assembly("S1", tr, stories)


def test_map_audio_statuses_and_apply(tmp_path):
    assembly = make_assembly()
    folder = tmp_path / "audio"
    folder.mkdir()
    soundfile.write(folder / "ALPHA.WAV", np.zeros(8000 * 20), 8000)       # case-insensitive, 20 s = 10 TRs
    soundfile.write(folder / "beta.flac", np.zeros(8000 * 30), 8000)       # other extension, too long
    soundfile.write(folder / "gamma.wav", np.zeros(8000 * 19), 8000)       # span from 0: 14*2-10+2 = 20 s
    (folder / "delta.wav").write_text("not audio")                         # unreadable
    matches = {m.story: m for m in map_audio(assembly, folder)}
    assert [m for m in matches] == assembly.stories
    assert matches["Alpha"].status == "found" and matches["Alpha"].path == str(folder / "ALPHA.WAV")
    assert matches["Alpha"].duration_s == 20.0 and matches["Alpha"].sample_rate == 8000
    assert matches["beta"].status == "mismatch" and "30.0 s" in matches["beta"].message
    assert matches["gamma"].tr_span_s == 20.0 and matches["gamma"].status == "found"
    assert matches["delta"].status == "unreadable" and "delta.wav" in matches["delta"].message
    assert matches["eps"].status == "missing" and matches["eps"].path is None
    apply_audio_map(assembly, list(matches.values()))
    assert assembly.story("Alpha").audio_path == str(folder / "ALPHA.WAV")
    assert assembly.story("beta").audio_path == str(folder / "beta.flac")
    assert assembly.story("delta").audio_path is None and assembly.story("eps").audio_path is None


def test_map_audio_pattern_and_overrides(tmp_path):
    assembly = make_assembly()
    (tmp_path / "sub").mkdir()
    soundfile.write(tmp_path / "sub" / "stim_eps.ogg", np.zeros(8000 * 20), 8000)
    soundfile.write(tmp_path / "other.wav", np.zeros(8000 * 20), 8000)
    matches = {m.story: m for m in map_audio(assembly, tmp_path, pattern="sub/stim_{story}.wav",
                                             overrides={"delta": "other.wav", "beta": "nope.wav"})}
    assert matches["eps"].status == "found" and matches["eps"].path.endswith("stim_eps.ogg")
    assert matches["delta"].status == "found" and matches["delta"].path == str(tmp_path / "other.wav")
    assert matches["beta"].status == "missing" and "nope.wav" in matches["beta"].message
    with pytest.raises(InputError, match="not in the assembly"):
        map_audio(assembly, tmp_path, overrides={"zeta": "x.wav"})
    with pytest.raises(InputError, match="pattern"):
        map_audio(assembly, tmp_path, pattern="{name}.wav")
    with pytest.raises(InputError, match="does not exist"):
        map_audio(assembly, tmp_path / "nowhere")


# --------------------------------------------------------------------------- the duration check
def test_audio_fit_accepts_a_scan_tail_and_refuses_the_wrong_story():
    from encoding_core.assembly.audio import MAX_SCAN_TAIL_S, audio_fit

    # the demo: the scan goes on 10-12 s after each story's sound (HRF tail)
    assert audio_fit(81.19, 92.0, 2.0, last_word_end_s=80.19)[0] == "found"
    # LeBel-like: the TRs span the sound within one TR
    assert audio_fit(19.0, 20.0, 2.0)[0] == "found"
    # a longer story's file: the sound would outlast the scan
    status, message = audio_fit(99.6, 92.0, 2.0, last_word_end_s=80.19)
    assert status == "mismatch" and "outlast the scan" in message
    # a shorter story's file: it ends before the transcript does
    status, message = audio_fit(81.19, 110.0, 2.0, last_word_end_s=98.63)
    assert status == "mismatch" and "last word ends at 98.6 s" in message
    # no transcript, but far more scan than any response lasts
    status, message = audio_fit(50.0, 50.0 + MAX_SCAN_TAIL_S + 1, 2.0)
    assert status == "mismatch" and "after the sound" in message
    # boundaries, by hand: one TR over, and exactly the allowed tail
    assert audio_fit(22.0, 20.0, 2.0)[0] == "found" and audio_fit(22.01, 20.0, 2.0)[0] == "mismatch"
    assert audio_fit(30.0, 30.0 + MAX_SCAN_TAIL_S, 2.0)[0] == "found"


def test_overrides_and_own_paths_are_checked_like_a_folder(tmp_path):
    from encoding_core.assembly.audio import check_story_audio

    words = [f"w{i}" for i in range(10)]
    onsets = np.linspace(0.5, 38.0, 10)
    story = Story("s", np.zeros((25, 2)), np.arange(25) * 2.0, words, onsets, onsets + 0.4)  # span 50 s
    assembly = Assembly("S1", 2.0, [story])
    good, short = tmp_path / "good.wav", tmp_path / "short.wav"
    soundfile.write(good, np.zeros(8000 * 40), 8000)       # 40 s: 10 s of scan after the sound
    soundfile.write(short, np.zeros(8000 * 20), 8000)      # ends before the transcript
    renamed = tmp_path / "notes.h5"
    renamed.write_text("a text file renamed .h5")
    assert check_story_audio(story, good, 2.0).status == "found"
    assert check_story_audio(story, short, 2.0).status == "mismatch"
    unreadable = check_story_audio(story, renamed, 2.0)
    assert unreadable.status == "unreadable" and "notes.h5" in unreadable.message
    assert check_story_audio(story, tmp_path / "nope.wav", 2.0).status == "missing"
    # no folder: the stories' own paths, checked the same way
    story.audio_path = str(short)
    assert [m.status for m in map_audio(assembly, None)] == ["mismatch"]
    story.audio_path = None
    assert [m.status for m in map_audio(assembly, "")] == ["missing"]
    # an override without a folder is used as given
    assert [m.status for m in map_audio(assembly, None, overrides={"s": str(good)})] == ["found"]
