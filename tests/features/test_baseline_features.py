"""Baseline feature spaces (phoneme rate, audio envelope, log-mel) against hand computations on a short clip."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
from scipy.signal import get_window

from encoding_core.assembly.data_model import Story
from encoding_core.common.errors import AudioError, ConfigError, InputError
from encoding_core.config import ExperimentConfig, FeatureConfig
from encoding_core.features.baseline import (EnvelopeFeatureExtractor, LogMelFeatureExtractor,
                                             PhonemeRateFeatureExtractor, log_mel)
from encoding_core.features.factory import FeatureExtractorFactory

RATE = 16000
TR = 1.0
TR_TIMES = np.arange(5) * TR + TR / 2  # 0.5 ... 4.5 s: the last two TRs lie (partly) beyond the 3.2 s clip

# (start, end, label) of a made-up phone tier; "sil" and "" are not phones
PHONES = [(0.0, 0.2, "sil"), (0.2, 0.35, "DH"), (0.35, 0.5, "AH0"), (0.5, 0.95, "K"), (0.95, 1.0, ""),
          (1.0, 1.4, "AE1"), (1.4, 2.1, "T"), (2.1, 2.5, "sp"), (2.5, 2.6, "S"), (2.6, 3.2, "IH1")]
WORDS = [(0.0, 0.2, ""), (0.2, 0.5, "the"), (0.5, 2.1, "cat"), (2.1, 2.5, "sp"), (2.5, 3.2, "sits")]


def long_textgrid(tiers: dict, xmax: float) -> str:
    """A long-format Praat TextGrid written out by hand (no code of ours)."""
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {xmax}",
             "tiers? <exists>", f"size = {len(tiers)}", "item []:"]
    for number, (name, intervals) in enumerate(tiers.items(), start=1):
        lines += [f"    item [{number}]:", '        class = "IntervalTier"', f'        name = "{name}"',
                  "        xmin = 0", f"        xmax = {xmax}", f"        intervals: size = {len(intervals)}"]
        for k, (start, end, label) in enumerate(intervals, start=1):
            lines += [f"        intervals [{k}]:", f"            xmin = {start}", f"            xmax = {end}",
                      f'            text = "{label}"']
    return "\n".join(lines) + "\n"


@pytest.fixture
def clip_story(tmp_path):
    """A 3.2 s clip: a 200 Hz tone of amplitude 0.1, 0.5, 0.25 and 0.8 in its four stretches, and its TextGrid."""
    t = np.arange(int(3.2 * RATE)) / RATE
    amplitude = np.select([t < 1.0, t < 2.0, t < 3.0], [0.1, 0.5, 0.25], 0.8)
    samples = (amplitude * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    wav = tmp_path / "clip.wav"
    soundfile.write(wav, samples, RATE, subtype="FLOAT")
    grids = tmp_path / "grids"
    grids.mkdir()
    (grids / "clip.TextGrid").write_text(long_textgrid({"phone": PHONES, "word": WORDS}, 3.2), encoding="utf-8")
    story = Story(name="clip", brain_data=np.zeros((5, 2), dtype=np.float32), tr_times=TR_TIMES,
                  words=["the", "cat", "sits"], word_onsets=[0.2, 0.5, 2.5], word_offsets=[0.5, 2.1, 3.2],
                  audio_path=str(wav))
    return story, samples, grids


def test_phoneme_rate_counts_phone_starts_per_tr(clip_story, tmp_path):
    story, _, grids = clip_story
    extractor = PhonemeRateFeatureExtractor({"textgrid_dir": str(grids)}, cache_dir=tmp_path / "cache")
    features = extractor.extract_story(story)
    # by hand: TR [0,1): DH 0.2, AH0 0.35, K 0.5 -> 3; [1,2): AE1 1.0, T 1.4 -> 2; [2,3): S 2.5, IH1 2.6 -> 2; then 0, 0
    np.testing.assert_array_equal(features.layer(0)[:, 0], [3, 2, 2, 0, 0])
    assert features.tr_aligned
    np.testing.assert_allclose(features.times, TR_TIMES)
    again = extractor.extract_story(story)
    assert again.from_cache and again.tr_aligned
    np.testing.assert_array_equal(again.layer(0), features.layer(0))
    by_index = PhonemeRateFeatureExtractor({"textgrid_dir": str(grids), "phone_tier": "word"}, cache_dir=None)
    np.testing.assert_array_equal(by_index.extract_story(story).layer(0)[:, 0], [2, 0, 1, 0, 0])  # the, cat | sits


def test_envelope_is_rms_per_tr_window(clip_story, tmp_path):
    story, samples, _ = clip_story
    features = EnvelopeFeatureExtractor({}, cache_dir=tmp_path / "cache").extract_story(story)
    expected = []
    for t in TR_TIMES:  # a plain loop over the TR windows [t - TR/2, t + TR/2)
        window = samples[int(round((t - TR / 2) * RATE)):int(round((t + TR / 2) * RATE))].astype(np.float64)
        expected.append(np.sqrt(np.mean(window ** 2)) if window.size else 0.0)
    np.testing.assert_allclose(features.layer(0)[:, 0], expected, rtol=1e-5, atol=1e-7)
    # a sine of amplitude A over whole periods has RMS A / sqrt(2)
    np.testing.assert_allclose(features.layer(0)[:3, 0], np.array([0.1, 0.5, 0.25]) / np.sqrt(2), rtol=1e-4)
    assert features.layer(0)[4, 0] == 0.0  # [4, 5) s holds no sample of the 3.2 s clip
    assert features.tr_aligned


def test_log_mel_matches_a_numpy_spectrogram(clip_story, tmp_path):
    import librosa

    story, samples, _ = clip_story
    features = LogMelFeatureExtractor({"n_mels": 32}, cache_dir=tmp_path / "cache").extract_story(story)
    n_fft, hop = 400, 160
    n_frames = 1 + (samples.size - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = samples.astype(np.float64)[index] * get_window("hann", n_fft, fftbins=True)[None, :]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2                       # (frames, n_fft/2 + 1)
    mel = power @ librosa.filters.mel(sr=RATE, n_fft=n_fft, n_mels=32).T   # the filter bank only
    expected = 10 * np.log10(np.maximum(mel, 1e-10))
    assert features.layer(0).shape == (n_frames, 32)
    np.testing.assert_allclose(features.layer(0), expected, atol=2e-3)
    np.testing.assert_allclose(features.times, (np.arange(n_frames) * hop + n_fft) / RATE)
    assert not features.tr_aligned
    # the 200 Hz tone: the loudest band is the one whose filter peaks nearest 200 Hz, in every frame
    centres = librosa.mel_frequencies(n_mels=34, fmax=RATE / 2)[1:-1]
    assert np.all(np.argmax(features.layer(0), axis=1) == np.argmin(np.abs(centres - 200)))
    assert LogMelFeatureExtractor({"n_mels": 32}, cache_dir=tmp_path / "cache").extract_story(story).from_cache


def test_short_audio_and_missing_inputs(clip_story, tmp_path):
    story, _, grids = clip_story
    rows, times = log_mel(np.zeros(100, dtype=np.float32), RATE)
    assert rows.shape == (0, 32) and times.shape == (0,)
    no_audio = Story(name="clip", brain_data=np.zeros((5, 2)), tr_times=TR_TIMES)
    with pytest.raises(AudioError, match="audio_dir"):
        EnvelopeFeatureExtractor({}, cache_dir=None).extract_story(no_audio)
    with pytest.raises(ConfigError, match="textgrid_dir"):
        PhonemeRateFeatureExtractor({}, cache_dir=None).extract_story(story)
    with pytest.raises(InputError, match="no tier 'phones'"):
        PhonemeRateFeatureExtractor({"textgrid_dir": str(grids), "phone_tier": "phones"}, None).extract_story(story)
    with pytest.raises(ConfigError, match="n_mels"):
        ExperimentConfig(features=FeatureConfig(modality="logmel", n_mels=0)).validate()


def test_factory_and_config_know_the_baseline_spaces(tmp_path):
    for modality, cls in (("phonemerate", PhonemeRateFeatureExtractor), ("envelope", EnvelopeFeatureExtractor),
                          ("logmel", LogMelFeatureExtractor)):
        extractor = FeatureExtractorFactory.create_extractor(modality, config=FeatureConfig(modality=modality, n_mels=8),
                                                             cache_dir=tmp_path)
        assert isinstance(extractor, cls)
        config = ExperimentConfig(features=FeatureConfig(modality=modality, n_mels=8))
        assert ExperimentConfig.from_toml(config.to_toml()).features.modality == modality
