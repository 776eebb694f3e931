"""The reference's module path ``encoding.features.speech_model``: our :class:`SpeechFeatureExtractor`."""
from __future__ import annotations

from encoding_core.features.speech import SpeechFeatureExtractor

__all__ = ["SpeechFeatureExtractor"]
