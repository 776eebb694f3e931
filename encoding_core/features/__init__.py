"""Features: speech models (windows, pooling, batched extraction), word rate, word embeddings,
language models and custom arrays, cached on disk. The reference's names are importable here."""
from __future__ import annotations

from encoding_core.features.cache import CacheEntryInfo, clear_cache, is_cached, list_cache_entries
from encoding_core.features.cost import CostEstimate, estimate_cost
from encoding_core.features.custom import CustomFeatureExtractor
from encoding_core.features.embeddings import StaticEmbeddingFeatureExtractor
from encoding_core.features.factory import FeatureExtractorFactory
from encoding_core.features.FIR_expander import FIR
from encoding_core.features.language_model import LanguageModelFeatureExtractor
from encoding_core.features.lowlevel_features import WordRateFeatureExtractor
from encoding_core.features.models import ModelFacts, model_facts
from encoding_core.features.speech import SpeechFeatureExtractor, StoryFeatures, window_end_times

__all__ = ["SpeechFeatureExtractor", "FeatureExtractorFactory", "LanguageModelFeatureExtractor",
           "StaticEmbeddingFeatureExtractor", "WordRateFeatureExtractor", "CustomFeatureExtractor", "FIR", "StoryFeatures", "window_end_times",
           "model_facts", "ModelFacts", "estimate_cost", "CostEstimate", "list_cache_entries",
           "clear_cache", "is_cached", "CacheEntryInfo"]
