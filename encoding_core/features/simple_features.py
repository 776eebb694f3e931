"""The reference's older module name for the word rate (``encoding.features.simple_features``)."""
from __future__ import annotations

from encoding_core.features.lowlevel_features import WordRateFeatureExtractor

__all__ = ["WordRateFeatureExtractor"]
