"""The reference's factory: ``FeatureExtractorFactory.create_extractor(modality, model_name, config, cache_dir)``.

Modalities: ``speech`` (:class:`~encoding_core.features.speech.SpeechFeatureExtractor`),
``wordrate`` (:class:`~encoding_core.features.lowlevel_features.WordRateFeatureExtractor`),
``embeddings`` (:class:`~encoding_core.features.embeddings.StaticEmbeddingFeatureExtractor`),
``language_model`` (:class:`~encoding_core.features.language_model.LanguageModelFeatureExtractor`)
and ours, ``custom`` (:class:`~encoding_core.features.custom.CustomFeatureExtractor`) and the
baseline spaces ``phonemerate``, ``envelope``, ``logmel`` (:mod:`~encoding_core.features.baseline`).
As the reference: when ``config`` has no ``model_name`` it takes ``model_name``; when both are
given and differ, the config's wins (with a warning here). The caller's dict is not changed.
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any, Optional, Union

from encoding_core.common.errors import ConfigError
from encoding_core.config import FeatureConfig

logger = logging.getLogger(__name__)

_REGISTRY: dict[str, str] = {
    "speech": "encoding_core.features.speech:SpeechFeatureExtractor",
    "wordrate": "encoding_core.features.lowlevel_features:WordRateFeatureExtractor",
    "embeddings": "encoding_core.features.embeddings:StaticEmbeddingFeatureExtractor",
    "language_model": "encoding_core.features.language_model:LanguageModelFeatureExtractor",
    "custom": "encoding_core.features.custom:CustomFeatureExtractor",
    "phonemerate": "encoding_core.features.baseline:PhonemeRateFeatureExtractor",
    "envelope": "encoding_core.features.baseline:EnvelopeFeatureExtractor",
    "logmel": "encoding_core.features.baseline:LogMelFeatureExtractor",
}
SUPPORTED_MODALITIES = tuple(_REGISTRY)
_MODEL_NAMED = ("speech", "language_model", "embeddings")  # modalities whose config carries model_name


def _class_of(path: Any) -> Any:
    if not isinstance(path, str):
        return path
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


class FeatureExtractorFactory:
    """Creates feature extractors by modality."""

    @classmethod
    def get_supported_modalities(cls) -> list[str]:
        return list(_REGISTRY)

    @classmethod
    def register_extractor(cls, modality: str, extractor_class: Any) -> None:
        """Add (or replace) a modality: ``extractor_class(config, cache_dir=...)`` builds it."""
        _REGISTRY[str(modality)] = extractor_class

    @classmethod
    def create_extractor(cls, modality: str = "speech", model_name: Optional[str] = None,
                         config: Union[dict, FeatureConfig, None] = None,
                         cache_dir: Union[str, Path, None] = "cache") -> Any:
        """An extractor for ``modality`` with ``config`` (the reference's keys of that modality)."""
        if modality not in _REGISTRY:
            raise ConfigError(f"Unsupported modality {modality!r}. Supported modalities: {list(_REGISTRY)}.")
        extractor_class = _class_of(_REGISTRY[modality])
        if isinstance(config, FeatureConfig):
            if model_name is not None and model_name != config.model_name:
                logger.warning("create_extractor: model_name %r differs from config.model_name %r; the config's "
                               "is used (as the reference).", model_name, config.model_name)
            return extractor_class(config, cache_dir=cache_dir)
        values = dict(config or {})
        if modality in _MODEL_NAMED and model_name is not None:
            if "model_name" not in values:
                values["model_name"] = model_name
            elif values["model_name"] != model_name:
                logger.warning("create_extractor: model_name %r differs from config['model_name'] %r; the config's "
                               "is used (as the reference).", model_name, values["model_name"])
        return extractor_class(values, cache_dir=cache_dir)
