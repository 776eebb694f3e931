"""The reference's factory: ``FeatureExtractorFactory.create_extractor(modality="speech", ...)``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from encoding_core.config import FeatureConfig
from encoding_core.common.errors import ConfigError
from encoding_core.features.speech import SpeechFeatureExtractor

SUPPORTED_MODALITIES = ("speech",)


class FeatureExtractorFactory:
    """Creates feature extractors by modality (only ``speech`` is implemented)."""

    @staticmethod
    def create_extractor(modality: str = "speech", model_name: Optional[str] = None,
                         config: Union[dict, FeatureConfig, None] = None,
                         cache_dir: Union[str, Path, None] = None) -> SpeechFeatureExtractor:
        """A SpeechFeatureExtractor; ``model_name`` fills config['model_name'] when absent there."""
        if modality != "speech":
            raise ConfigError(f"modality {modality!r} is not supported; supported: {SUPPORTED_MODALITIES}. "
                              "Fix: use modality='speech' (text/embedding features are not part of encoding_core).")
        if isinstance(config, FeatureConfig):
            if model_name is not None and model_name != config.model_name:
                raise ConfigError(f"model_name {model_name!r} differs from config.model_name "
                                  f"{config.model_name!r}; give one of them.")
            return SpeechFeatureExtractor(config, cache_dir=cache_dir)
        values = dict(config or {})
        if model_name is not None:
            if values.get("model_name", model_name) != model_name:
                raise ConfigError(f"model_name {model_name!r} differs from config['model_name'] "
                                  f"{values['model_name']!r}; give one of them.")
            values["model_name"] = model_name
        return SpeechFeatureExtractor(values, cache_dir=cache_dir)
