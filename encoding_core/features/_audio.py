"""Audio reading for feature extraction: mono float32 at a target rate, durations from headers."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Union

import numpy as np

from ..errors import AudioError

logger = logging.getLogger(__name__)


def audio_duration(path: Union[str, Path]) -> float:
    """Duration in seconds from the file header (no decoding)."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"Audio file {path} does not exist. Fix: check the story's audio path.")
    try:
        info = sf.info(str(path))
        return float(info.frames) / float(info.samplerate)
    except (RuntimeError, sf.LibsndfileError):
        pass
    try:
        import librosa

        return float(librosa.get_duration(path=str(path)))
    except Exception as exc:  # librosa/audioread raise many types for unreadable files
        raise AudioError(f"Cannot read the header of audio file {path}: {exc}. "
                         "Fix: convert it to WAV or FLAC (e.g. sox in.mp3 out.wav).") from None


def read_audio(path: Union[str, Path], target_sr: int) -> np.ndarray:
    """Decode an audio file to mono float32 samples at ``target_sr`` Hz, shape (n_samples,)."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"Audio file {path} does not exist. Fix: check the story's audio path.")
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError):
        try:
            import librosa

            mono, rate = librosa.load(str(path), sr=None, mono=True)
            samples = mono[:, None]
        except Exception as exc:  # librosa/audioread raise many types for unreadable files
            raise AudioError(f"Cannot decode audio file {path}: {exc}. "
                             "Fix: convert it to WAV or FLAC (e.g. sox in.mp3 out.wav).") from None
    if samples.shape[0] == 0:
        raise AudioError(f"Audio file {path} is empty (0 samples). Fix: re-export the audio.")
    mono = samples.mean(axis=1).astype(np.float32)
    if int(rate) != int(target_sr):
        import soxr

        mono = soxr.resample(mono, int(rate), int(target_sr), quality="HQ").astype(np.float32)
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"Audio file {path} contains NaN or infinite samples. Fix: re-export the audio.")
    return mono
