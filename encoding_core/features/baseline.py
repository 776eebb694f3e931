"""Baseline feature spaces from the transcript and the sound: phoneme rate, audio envelope, log-mel.

They are the low-level spaces a variance-partitioning study sets against a speech model:

- ``phonemerate`` (:class:`PhonemeRateFeatureExtractor`): phones per TR, counted from the
  TextGrid's phone tier like the word rate (phones whose START lies in ``[t - TR/2, t + TR/2)``),
  one row per TR time (``tr_aligned``);
- ``envelope`` (:class:`EnvelopeFeatureExtractor`): the RMS of the audio samples in each TR window
  ``[t - TR/2, t + TR/2)`` (samples ``k`` with ``k / sr`` in the window; a window beyond the audio
  is 0), one row per TR time;
- ``logmel`` (:class:`LogMelFeatureExtractor`): a log-mel spectrogram (``n_mels`` bands, 25 ms
  Hann frames every 10 ms, ``10 log10`` of the mel power), one row per frame at the frame's END
  time, downsampled to the TR grid by the pipeline like speech features.

All three are cached by content (TextGrid or audio sha256, TR times, settings) under
``<cache_dir>/baseline_features`` (:func:`~encoding_core.features.cache.load_or_compute_fields`).
Units: seconds for times, samples for audio, Hz for rates.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from encoding_core.common.errors import AudioError, ConfigError, InputError
from encoding_core.common.progress import CancelFlag, ProgressCallback
from encoding_core.features.base import StoryFeatures

CACHE_SUBDIR = "baseline_features"
FRAME_SECONDS = 0.025
"""Log-mel analysis frame (s): 400 samples at 16 kHz."""
HOP_SECONDS = 0.010
"""Log-mel hop between frames (s)."""
POWER_FLOOR = 1e-10
"""Mel power below this is clipped before the log (-100 dB)."""
NON_PHONES = frozenset({"sil", "sp", "spn", "br", "lg", "ls", "ns", "sentence_start", "sentence_end"})
"""Phone-tier labels that are not phones (silence, breath, LeBel markers); empty labels are skipped too."""


def _config_values(config: Any) -> dict:
    """A dict of settings from our FeatureConfig (its fields) or a plain dict."""
    if config is None:
        return {}
    if hasattr(config, "modality") and not isinstance(config, Mapping):
        return {name: getattr(config, name) for name in ("textgrid_dir", "phone_tier", "n_mels",
                                                         "target_sample_rate") if hasattr(config, name)}
    return dict(config)


def _story_tr(story: Any, tr: Optional[float]) -> float:
    """The TR (s): ``tr`` when given, else the median spacing of the story's TR times."""
    if tr is not None:
        return float(tr)
    times = np.asarray(story.tr_times, dtype=np.float64)
    if times.size < 2:
        raise InputError(f"Story {story.name!r} has one TR time; give tr= (seconds).")
    return float(np.median(np.diff(times)))


def _times_digest(times: np.ndarray) -> str:
    return hashlib.sha256(np.round(np.asarray(times, dtype=np.float64), 6).tobytes()).hexdigest()[:16]


def count_per_tr(onsets: Any, tr_times: Any, tr: float) -> np.ndarray:
    """(n_tr_times, 1) float64: how many ``onsets`` (s) lie in each ``[t - tr/2, t + tr/2)``."""
    onsets = np.sort(np.asarray(onsets, dtype=np.float64).reshape(-1))
    times = np.asarray(tr_times, dtype=np.float64).reshape(-1)
    starts = np.searchsorted(onsets, times - tr / 2.0, side="left")
    ends = np.searchsorted(onsets, times + tr / 2.0, side="left")
    return (ends - starts).astype(np.float64)[:, None]


def rms_per_tr(samples: Any, sample_rate: int, tr_times: Any, tr: float) -> np.ndarray:
    """(n_tr_times, 1) float64 RMS of the samples ``k`` with ``k / sample_rate`` in ``[t - tr/2, t + tr/2)``;
    0 where the window holds no sample. samples: (n_samples,) mono."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    times = np.asarray(tr_times, dtype=np.float64).reshape(-1)
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    first = np.clip(np.ceil((times - tr / 2.0) * sample_rate - 1e-9), 0, x.size).astype(np.int64)
    stop = np.clip(np.ceil((times + tr / 2.0) * sample_rate - 1e-9), 0, x.size).astype(np.int64)
    count = stop - first
    mean_square = np.divide(energy[stop] - energy[first], count, out=np.zeros(times.size), where=count > 0)
    return np.sqrt(np.maximum(mean_square, 0.0))[:, None]


def log_mel(samples: Any, sample_rate: int, n_mels: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel spectrogram: ((n_frames, n_mels) float32 in dB, (n_frames,) frame END times in s).

    Frames of ``FRAME_SECONDS`` (Hann window, no centring, no padding) every ``HOP_SECONDS``;
    mel power (Slaney mel filters, librosa defaults), ``10 log10(max(power, POWER_FLOOR))``.
    Audio shorter than one frame gives zero frames.
    """
    import librosa

    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    n_fft = int(round(FRAME_SECONDS * sample_rate))
    hop = int(round(HOP_SECONDS * sample_rate))
    if x.size < n_fft:
        return np.zeros((0, n_mels), dtype=np.float32), np.zeros(0)
    power = librosa.feature.melspectrogram(y=x, sr=sample_rate, n_fft=n_fft, hop_length=hop, win_length=n_fft,
                                           window="hann", center=False, power=2.0, n_mels=int(n_mels))
    decibels = 10.0 * np.log10(np.maximum(power, POWER_FLOOR))
    times = (np.arange(decibels.shape[1]) * hop + n_fft) / float(sample_rate)
    return np.ascontiguousarray(decibels.T, dtype=np.float32), times


def phone_onsets(path: Union[str, Path], tier: Union[str, int, None] = None) -> np.ndarray:
    """(n_phones,) float64 start times (s) of the phones of a TextGrid's phone tier.

    tier: a tier name or 0-based index among interval tiers; None: the tier named "phone" or
    "phones" (any case), else the first tier (LeBel's TextGrids keep the phones in tier 0).
    Silences and markers (``NON_PHONES``) and empty labels are skipped.
    """
    from encoding_core.assembly.textgrid import read_textgrid

    tiers = read_textgrid(path)
    names = list(tiers)
    if not names:
        raise InputError(f"TextGrid {path} has no interval tiers; the phoneme rate needs a phone tier.")
    if isinstance(tier, str) and tier:
        if tier not in tiers:
            raise InputError(f"TextGrid {path} has no tier {tier!r}; its tiers are {names}. Set features.phone_tier.")
        name = tier
    elif isinstance(tier, (int, np.integer)) and not isinstance(tier, bool):
        if not 0 <= int(tier) < len(names):
            raise InputError(f"TextGrid {path}: phone tier index {tier} is out of range; its tiers are {names}.")
        name = names[int(tier)]
    else:
        name = next((n for n in names if n.strip().lower() in ("phone", "phones")), names[0])
    onsets = [start for start, _end, label in tiers[name]
              if label.strip() and label.strip().strip("{}<>[]").lower() not in NON_PHONES]
    return np.asarray(onsets, dtype=np.float64)


class _Cached:
    """Shared cache plumbing of the baseline extractors."""

    modality = ""
    n_layers = 1

    def __init__(self, config: Any = None, cache_dir: Any = None) -> None:
        values = _config_values(config)
        self.textgrid_dir = str(values.get("textgrid_dir") or "")
        tier = values.get("phone_tier", "")
        self.phone_tier: Union[str, int, None] = tier if tier not in ("", None) else None
        self.n_mels = int(values.get("n_mels", 32) or 32)
        self.sample_rate = int(values.get("target_sample_rate", 16000) or 16000)
        if self.n_mels < 1:
            raise ConfigError(f"features.n_mels must be a positive number of mel bands, got {self.n_mels}.")
        self.cache_dir = cache_dir
        self.model_name = self.modality

    def _cached(self, fields: dict, source: str, compute: Any) -> StoryFeatures:
        from encoding_core.features.cache import load_or_compute_fields

        return load_or_compute_fields({"format": 1, "modality": self.modality, "model_name": self.modality, **fields},
                                      self.cache_dir, compute, subdir=CACHE_SUBDIR, source=source)

    def _audio_digest(self, story: Any) -> str:
        """The sha256 of the story's audio file (the cache key); AudioError when the story has none."""
        from encoding_core.features.cache import audio_content_hash

        if not story.audio_path:
            raise AudioError(f"Story {story.name!r} has no audio file; the {self.modality!r} feature space reads the "
                             "sound. Set assembly.audio_dir (or map the audio on the Audio page).")
        return audio_content_hash(story.audio_path)

    def _audio(self, story: Any) -> np.ndarray:
        """The story's sound, mono, at ``self.sample_rate``."""
        from encoding_core.assembly.audio import load_audio

        return load_audio(story.audio_path, self.sample_rate)


class PhonemeRateFeatureExtractor(_Cached):
    """Phones per TR from ``<textgrid_dir>/<story>.TextGrid`` (config ``textgrid_dir``, ``phone_tier``)."""

    modality = "phonemerate"

    def textgrid_path(self, story: Any) -> Path:
        if not self.textgrid_dir:
            raise ConfigError("The phonemerate feature space needs features.textgrid_dir: the folder of "
                              "<story>.TextGrid files with a phone tier (for a LeBel folder it is filled in).")
        path = Path(self.textgrid_dir).expanduser() / f"{story.name}.TextGrid"
        if not path.is_file():
            raise InputError(f"No TextGrid for story {story.name!r}: {path} is missing (features.textgrid_dir).")
        return path

    def extract_story(self, story: Any, progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelFlag] = None, tr: Optional[float] = None) -> StoryFeatures:
        """(n_tr_times, 1) phones per TR at the story's TR times (``tr_aligned``)."""
        from encoding_core.features.cache import audio_content_hash

        path = self.textgrid_path(story)
        tr = _story_tr(story, tr)
        times = np.asarray(story.tr_times, dtype=np.float64)

        def compute() -> tuple[np.ndarray, np.ndarray, dict]:
            onsets = phone_onsets(path, self.phone_tier)
            return count_per_tr(onsets, times, tr)[None], times, {"n_phones": int(onsets.size), "tr": tr}

        fields = {"textgrid_sha256": audio_content_hash(path), "phone_tier": self.phone_tier, "tr": tr,
                  "tr_times": _times_digest(times)}
        features = self._cached(fields, str(path), compute)
        features.tr_aligned = True
        return features


class EnvelopeFeatureExtractor(_Cached):
    """RMS of the sound per TR window (config ``target_sample_rate``)."""

    modality = "envelope"

    def extract_story(self, story: Any, progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelFlag] = None, tr: Optional[float] = None) -> StoryFeatures:
        """(n_tr_times, 1) RMS per TR at the story's TR times (``tr_aligned``)."""
        tr = _story_tr(story, tr)
        times = np.asarray(story.tr_times, dtype=np.float64)
        digest = self._audio_digest(story)

        def compute() -> tuple[np.ndarray, np.ndarray, dict]:
            return rms_per_tr(self._audio(story), self.sample_rate, times, tr)[None], times, {"tr": tr}

        fields = {"audio_sha256": digest, "sample_rate": self.sample_rate, "tr": tr, "tr_times": _times_digest(times)}
        features = self._cached(fields, str(story.audio_path), compute)
        features.tr_aligned = True
        return features


class LogMelFeatureExtractor(_Cached):
    """Log-mel spectrogram frames (config ``n_mels``, ``target_sample_rate``), downsampled by the pipeline."""

    modality = "logmel"

    def extract_story(self, story: Any, progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelFlag] = None) -> StoryFeatures:
        """(n_frames, n_mels) dB at frame end times (s)."""
        digest = self._audio_digest(story)

        def compute() -> tuple[np.ndarray, np.ndarray, dict]:
            rows, times = log_mel(self._audio(story), self.sample_rate, self.n_mels)
            return rows[None], times, {"frame_s": FRAME_SECONDS, "hop_s": HOP_SECONDS}

        fields = {"audio_sha256": digest, "sample_rate": self.sample_rate, "n_mels": self.n_mels,
                  "frame_s": FRAME_SECONDS, "hop_s": HOP_SECONDS}
        return self._cached(fields, str(story.audio_path), compute)
