"""Speech-model features (issue 3): offline models, windows, pooling, batched extraction, cache."""
from __future__ import annotations

from encoding_core.features.cache import CacheEntryInfo, clear_cache, is_cached, list_cache_entries
from encoding_core.features.cost import CostEstimate, estimate_cost
from encoding_core.features.factory import FeatureExtractorFactory
from encoding_core.features.models import ModelFacts, model_facts
from encoding_core.features.speech import SpeechFeatureExtractor, StoryFeatures, window_end_times

__all__ = ["SpeechFeatureExtractor", "FeatureExtractorFactory", "StoryFeatures", "window_end_times",
           "model_facts", "ModelFacts", "estimate_cost", "CostEstimate", "list_cache_entries",
           "clear_cache", "is_cached", "CacheEntryInfo"]
